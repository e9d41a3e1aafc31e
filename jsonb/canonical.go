package jsonb

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Canonical returns the text PostgreSQL's jsonb output gives for the
// document b once stored (jsonb_out): object keys sorted by length, then
// bytes, a duplicate key keeping its last value; ", " and ": " between
// members; numbers as numeric writes them (1e2 as 100, 1.50 as 1.50, -0 as
// 0); strings with only ", \, the named control escapes and \u00XX for other
// control characters escaped. It refuses (an error) a document the server
// would refuse, and one it is not sure to render as the server does. It
// reads b once, without reflection: the sink runs it on every value it
// writes.
func Canonical(b []byte) (string, error) {
	var c Canonicalizer
	out, err := c.Append(nil, b)
	return string(out), err
}

// errCanonical is what Canonical says of a document it does not render.
var errCanonical = errors.New("not a JSON document jsonb stores")

// A Canonicalizer renders documents as Canonical does, appending to a
// buffer and reusing its own between calls: the sink runs it on every
// value it writes. Its zero value is ready; it is not safe for concurrent
// use.
type Canonicalizer struct {
	in    []byte
	pos   int
	depth []level // scratch per nesting level, reused
	str   []byte  // a string's decoded bytes
}

// level is the scratch of the objects at one nesting level: the decoded
// keys and the rendered values of the object being read, and its members.
type level struct {
	keys, vals []byte
	members    []span
}

// span is one member: its key in keys, its value in vals.
type span struct{ k0, k1, v0, v1 int }

// Append appends the canonical text of the document b to dst.
func (c *Canonicalizer) Append(dst, b []byte) ([]byte, error) {
	if !utf8.Valid(b) {
		return dst, ErrUTF8
	}
	c.in, c.pos = b, 0
	out, err := c.value(dst, 0)
	if err != nil {
		return dst, err
	}
	c.space()
	if c.pos != len(c.in) {
		return dst, errors.New("more than one JSON value")
	}
	return out, nil
}

func (c *Canonicalizer) space() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// value appends the canonical text of the next value to out.
func (c *Canonicalizer) value(out []byte, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return nil, ErrDepth
	}
	c.space()
	if c.pos >= len(c.in) {
		return nil, errCanonical
	}
	switch ch := c.in[c.pos]; {
	case ch == '{':
		return c.object(out, depth)
	case ch == '[':
		c.pos++
		out = append(out, '[')
		c.space()
		if c.pos < len(c.in) && c.in[c.pos] == ']' {
			c.pos++
			return append(out, ']'), nil
		}
		for first := true; ; first = false {
			if !first {
				out = append(out, ", "...)
			}
			var err error
			if out, err = c.value(out, depth+1); err != nil {
				return nil, err
			}
			c.space()
			if c.pos >= len(c.in) {
				return nil, errCanonical
			}
			if c.in[c.pos] == ']' {
				c.pos++
				return append(out, ']'), nil
			}
			if c.in[c.pos] != ',' {
				return nil, errCanonical
			}
			c.pos++
		}
	case ch == '"':
		return c.stringValue(out)
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number(out)
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(c.in)-c.pos >= len(lit) && string(c.in[c.pos:c.pos+len(lit)]) == lit {
				c.pos += len(lit)
				return append(out, lit...), nil
			}
		}
		return nil, errCanonical
	}
}

func (c *Canonicalizer) object(out []byte, depth int) ([]byte, error) {
	c.pos++ // {
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
		return append(out, "{}"...), nil
	}
	for len(c.depth) <= depth {
		c.depth = append(c.depth, level{})
	}
	lv := c.depth[depth]
	lv.keys, lv.vals, lv.members = lv.keys[:0], lv.vals[:0], lv.members[:0]
	for {
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			return nil, errCanonical
		}
		key, err := c.decode()
		if err != nil {
			return nil, err
		}
		var m span
		m.k0 = len(lv.keys)
		lv.keys = append(lv.keys, key...)
		m.k1 = len(lv.keys)
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != ':' {
			return nil, errCanonical
		}
		c.pos++
		m.v0 = len(lv.vals)
		if lv.vals, err = c.value(lv.vals, depth+1); err != nil {
			return nil, err
		}
		m.v1 = len(lv.vals)
		lv.members = append(lv.members, m)
		c.space()
		if c.pos >= len(c.in) {
			return nil, errCanonical
		}
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		if c.in[c.pos] != ',' {
			return nil, errCanonical
		}
		c.pos++
	}
	c.depth[depth] = lv // keep what the buffers grew to
	// Sorted by length, then bytes; of equal keys the last stays (a stable
	// sort keeps them in input order).
	key := func(m span) []byte { return lv.keys[m.k0:m.k1] }
	slices.SortStableFunc(lv.members, func(a, b span) int {
		if la, lb := a.k1-a.k0, b.k1-b.k0; la != lb {
			return la - lb
		}
		return bytes.Compare(key(a), key(b))
	})
	out = append(out, '{')
	written := 0
	for i, m := range lv.members {
		if i+1 < len(lv.members) && bytes.Equal(key(lv.members[i+1]), key(m)) {
			continue
		}
		if written > 0 {
			out = append(out, ", "...)
		}
		out = appendQuoted(out, key(m))
		out = append(out, ": "...)
		out = append(out, lv.vals[m.v0:m.v1]...)
		written++
	}
	return append(out, '}'), nil
}

// stringValue appends a string value: as it is in the input when it has no
// escape (it then needs none), else decoded and escaped again.
func (c *Canonicalizer) stringValue(out []byte) ([]byte, error) {
	start := c.pos
	for i := c.pos + 1; i < len(c.in); i++ {
		ch := c.in[i]
		if ch == '"' {
			c.pos = i + 1
			return append(out, c.in[start:i+1]...), nil
		}
		if ch == '\\' || ch < 0x20 {
			break
		}
	}
	s, err := c.decode()
	if err != nil {
		return nil, err
	}
	return appendQuoted(out, s), nil
}

// decode reads a string, its escapes decoded, into c.str. It refuses what
// jsonb refuses: \u0000, lone surrogates, raw control characters (Append
// has checked the document is UTF-8).
func (c *Canonicalizer) decode() ([]byte, error) {
	c.pos++ // "
	buf := c.str[:0]
	for c.pos < len(c.in) {
		ch := c.in[c.pos]
		switch {
		case ch == '"':
			c.pos++
			c.str = buf
			return buf, nil
		case ch < 0x20:
			return nil, errCanonical
		case ch != '\\':
			buf = append(buf, ch)
			c.pos++
			continue
		}
		if c.pos+1 >= len(c.in) {
			return nil, errCanonical
		}
		esc := c.in[c.pos+1]
		c.pos += 2
		switch esc {
		case '"', '\\', '/':
			buf = append(buf, esc)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := c.hex4()
			if !ok || r == 0 {
				return nil, ErrNUL
			}
			if utf16.IsSurrogate(r) {
				if r >= 0xdc00 || c.pos+1 >= len(c.in) || c.in[c.pos] != '\\' || c.in[c.pos+1] != 'u' {
					return nil, ErrSurrogate
				}
				c.pos += 2
				r2, ok := c.hex4()
				if !ok || r2 < 0xdc00 || r2 > 0xdfff {
					return nil, ErrSurrogate
				}
				r = utf16.DecodeRune(r, r2)
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return nil, errCanonical
		}
	}
	c.str = buf
	return nil, errCanonical
}

// hex4 reads the four hex digits of a \u escape.
func (c *Canonicalizer) hex4() (rune, bool) {
	if c.pos+4 > len(c.in) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(c.in[c.pos:c.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	c.pos += 4
	return rune(v), true
}

// number reads a number and appends it as numeric_out writes it.
func (c *Canonicalizer) number(out []byte) ([]byte, error) {
	start := c.pos
	if c.in[c.pos] == '-' {
		c.pos++
	}
	digits := func() int {
		n := 0
		for c.pos < len(c.in) && c.in[c.pos] >= '0' && c.in[c.pos] <= '9' {
			c.pos++
			n++
		}
		return n
	}
	intStart := c.pos
	if digits() == 0 || c.in[intStart] == '0' && c.pos-intStart > 1 {
		return nil, errCanonical
	}
	plain := true
	if c.pos < len(c.in) && c.in[c.pos] == '.' {
		c.pos++
		if digits() == 0 {
			return nil, errCanonical
		}
	}
	if c.pos < len(c.in) && (c.in[c.pos] == 'e' || c.in[c.pos] == 'E') {
		plain = false
		c.pos++
		if c.pos < len(c.in) && (c.in[c.pos] == '+' || c.in[c.pos] == '-') {
			c.pos++
		}
		if digits() == 0 {
			return nil, errCanonical
		}
	}
	n := string(c.in[start:c.pos])
	if plain && n[0] != '-' {
		// Digits and a fraction, no leading zero: numeric writes them as
		// they are.
		return append(out, n...), nil
	}
	if !NumberFits(n) {
		return nil, ErrNumber
	}
	t, err := numericText(n)
	if err != nil {
		return nil, err
	}
	return append(out, t...), nil
}

// appendQuoted appends s quoted as jsonb_out does (escape_json).
func appendQuoted(out, s []byte) []byte {
	out = append(out, '"')
	from := 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 0x20 && ch != '"' && ch != '\\' {
			continue
		}
		out = append(out, s[from:i]...)
		from = i + 1
		switch ch {
		case '"':
			out = append(out, `\"`...)
		case '\\':
			out = append(out, `\\`...)
		case '\b':
			out = append(out, `\b`...)
		case '\f':
			out = append(out, `\f`...)
		case '\n':
			out = append(out, `\n`...)
		case '\r':
			out = append(out, `\r`...)
		case '\t':
			out = append(out, `\t`...)
		default:
			const hexDigits = "0123456789abcdef"
			out = append(out, '\\', 'u', '0', '0', hexDigits[ch>>4], hexDigits[ch&0xf])
		}
	}
	out = append(out, s[from:]...)
	return append(out, '"')
}

// numericText is the JSON number n as numeric_out writes it once numeric_in
// has read it: no exponent, every digit, as many after the point as the
// number had after it less its exponent (at least none), no leading zeros,
// and no minus sign on zero.
func numericText(n string) (string, error) {
	neg := strings.HasPrefix(n, "-")
	n = strings.TrimPrefix(n, "-")
	mant, exp := n, 0
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		mant = n[:i]
		e, err := strconv.Atoi(strings.TrimPrefix(n[i+1:], "+"))
		if err != nil || e > maxExponent || e < -maxExponent {
			return "", ErrNumber
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	// The value is digits × 10^(exp - len(frac)); the scale shown is
	// len(frac) - exp, at least 0.
	scale := max(0, len(frac)-exp)
	point := len(intPart) + exp // digits before the point, of digits
	var whole, fraction string
	switch {
	case point <= 0:
		whole, fraction = "0", strings.Repeat("0", -point)+digits
	case point >= len(digits):
		whole, fraction = digits+strings.Repeat("0", point-len(digits)), ""
	default:
		whole, fraction = digits[:point], digits[point:]
	}
	if len(fraction) < scale {
		fraction += strings.Repeat("0", scale-len(fraction))
	}
	fraction = fraction[:scale] // what is cut is zeros: scale covers every digit given
	whole = strings.TrimLeft(whole, "0")
	if whole == "" {
		whole = "0"
	}
	out := whole
	if scale > 0 {
		out += "." + fraction
	}
	if neg && strings.Trim(whole+fraction, "0") != "" {
		out = "-" + out
	}
	return out, nil
}
