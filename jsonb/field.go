package jsonb

import (
	"bytes"
	"unicode/utf8"
)

// AppendField appends the document b's canonical text (Canonical), written
// as record_out and array_out write a field: in double quotes, with double
// quotes and backslashes doubled, unless it has neither those nor a
// separator's space. It does it in one pass, and only for a document
// already in canonical form, but for the white space around its
// punctuation: object keys in jsonb's order (by length, then bytes), no
// duplicate key, no escape in a key, strings escaped as jsonb writes them,
// numbers as numeric writes them. That is how walscribe's decoder renders
// rows (and how jsonb writes its own values). For anything else it
// returns dst unchanged and false: Canonical (and quoting its result) gives
// the text then.
func AppendField(dst, b []byte) ([]byte, bool) {
	if !utf8.Valid(b) {
		return dst, false
	}
	f := fieldWriter{in: b, out: append(dst, '"')}
	f.space()
	if !f.value(0) {
		return dst, false
	}
	if f.space(); f.pos != len(f.in) {
		return dst, false
	}
	if !f.special {
		// A number, a literal, [], {} or [1]: no quotes.
		n := copy(f.out[len(dst):], f.out[len(dst)+1:])
		return f.out[:len(dst)+n], true
	}
	return append(f.out, '"'), true
}

// fieldWriter is AppendField's state: the input, where it is, and the
// output so far.
type fieldWriter struct {
	in      []byte
	pos     int
	out     []byte
	special bool // the output holds a quote or a space: it goes in quotes
}

func (f *fieldWriter) space() {
	for f.pos < len(f.in) {
		switch f.in[f.pos] {
		case ' ', '\t', '\n', '\r':
			f.pos++
		default:
			return
		}
	}
}

// next skips white space and reports whether the next byte is c (and
// then skips it too).
func (f *fieldWriter) next(c byte) bool {
	f.space()
	if f.pos < len(f.in) && f.in[f.pos] == c {
		f.pos++
		return true
	}
	return false
}

func (f *fieldWriter) value(depth int) bool {
	if depth > MaxDepth || f.pos >= len(f.in) {
		return false
	}
	switch ch := f.in[f.pos]; {
	case ch == '{':
		return f.object(depth)
	case ch == '[':
		f.pos++
		f.out = append(f.out, '[')
		if f.next(']') {
			f.out = append(f.out, ']')
			return true
		}
		for {
			f.space()
			if !f.value(depth + 1) {
				return false
			}
			if f.next(']') {
				f.out = append(f.out, ']')
				return true
			}
			if !f.next(',') {
				return false
			}
			f.out = append(f.out, ", "...)
			f.special = true
		}
	case ch == '"':
		return f.str()
	case ch == '-' || ch >= '0' && ch <= '9':
		return f.number()
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(f.in)-f.pos >= len(lit) && string(f.in[f.pos:f.pos+len(lit)]) == lit {
				f.pos += len(lit)
				f.out = append(f.out, lit...)
				return true
			}
		}
		return false
	}
}

func (f *fieldWriter) object(depth int) bool {
	f.pos++ // {
	f.out = append(f.out, '{')
	if f.next('}') {
		f.out = append(f.out, '}')
		return true
	}
	var prev []byte
	for {
		f.space()
		if f.pos >= len(f.in) || f.in[f.pos] != '"' {
			return false
		}
		start := f.pos + 1
		end := start
		for end < len(f.in) && f.in[end] != '"' {
			if c := f.in[end]; c == '\\' || c < 0x20 {
				return false // an escape in a key: Canonical decodes it
			}
			end++
		}
		if end == len(f.in) {
			return false
		}
		key := f.in[start:end]
		if prev != nil && (len(key) < len(prev) || len(key) == len(prev) && bytes.Compare(key, prev) <= 0) {
			return false // not in jsonb's order, or a duplicate
		}
		prev = key
		f.pos = end + 1
		f.out = append(f.out, '"', '"')
		f.out = append(f.out, key...)
		f.out = append(f.out, '"', '"', ':', ' ')
		f.special = true
		if !f.next(':') {
			return false
		}
		f.space()
		if !f.value(depth + 1) {
			return false
		}
		if f.next('}') {
			f.out = append(f.out, '}')
			return true
		}
		if !f.next(',') {
			return false
		}
		f.out = append(f.out, ", "...)
	}
}

// str copies a string whose escapes are those jsonb writes (escape_json),
// its quotes and backslashes doubled.
func (f *fieldWriter) str() bool {
	f.special = true
	f.out = append(f.out, '"', '"')
	from := f.pos + 1
	for i := from; i < len(f.in); i++ {
		c := f.in[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		if c != '\\' {
			if c != '"' {
				return false // a raw control character: jsonb refuses it
			}
			f.out = append(f.out, f.in[from:i]...)
			f.out = append(f.out, '"', '"')
			f.pos = i + 1
			return true
		}
		f.out = append(f.out, f.in[from:i]...)
		if i+1 >= len(f.in) {
			return false
		}
		switch e := f.in[i+1]; e {
		case '"':
			f.out = append(f.out, '\\', '\\', '"', '"')
			i++
		case '\\', 'b', 'f', 'n', 'r', 't':
			f.out = append(f.out, '\\', '\\', e)
			if e == '\\' {
				f.out = append(f.out, '\\')
			}
			i++
		case 'u':
			// Only a control character without a short escape is
			// written \u00XX, in lower case.
			if i+6 > len(f.in) || f.in[i+2] != '0' || f.in[i+3] != '0' {
				return false
			}
			h, l := f.in[i+4], f.in[i+5]
			if h != '0' && h != '1' || !(l >= '0' && l <= '9' || l >= 'a' && l <= 'f') {
				return false
			}
			switch v := (h-'0')<<4 | hexValue(l); v {
			case 0, '\b', '\f', '\n', '\r', '\t':
				return false
			}
			f.out = append(f.out, '\\', '\\')
			f.out = append(f.out, f.in[i+1:i+6]...)
			i += 5
		default:
			return false // \/ and the like: jsonb writes them otherwise
		}
		from = i + 1
	}
	return false
}

func hexValue(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// number copies a number numeric writes as it is: digits without a
// leading zero and maybe a fraction, no exponent, and no minus sign on a
// zero.
func (f *fieldWriter) number() bool {
	start := f.pos
	neg := f.in[f.pos] == '-'
	if neg {
		f.pos++
	}
	intStart := f.pos
	nonZero := false
	digits := func() int {
		n := 0
		for f.pos < len(f.in) && f.in[f.pos] >= '0' && f.in[f.pos] <= '9' {
			nonZero = nonZero || f.in[f.pos] != '0'
			f.pos++
			n++
		}
		return n
	}
	if n := digits(); n == 0 || n > 1 && f.in[intStart] == '0' {
		return false
	}
	if f.pos < len(f.in) && f.in[f.pos] == '.' {
		f.pos++
		if digits() == 0 {
			return false
		}
	}
	if f.pos < len(f.in) && (f.in[f.pos] == 'e' || f.in[f.pos] == 'E') {
		return false
	}
	if neg && (!nonZero || !NumberFits(string(f.in[start:f.pos]))) {
		return false
	}
	f.out = append(f.out, f.in[start:f.pos]...)
	return true
}
