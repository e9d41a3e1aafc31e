// Package jsonb knows what PostgreSQL's jsonb accepts, which is less than
// JSON allows: no \u0000, no lone UTF-16 surrogate escapes, numbers within
// numeric's range (at most 131072 digits before the decimal point and 16383
// after it), nesting within the server's stack depth, valid UTF-8. Check
// tells whether a document is storable as it is; Sanitize re-encodes one
// that is not into one that is, keeping all it can.
package jsonb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of numeric, which jsonb stores its numbers as, and of nesting: the
// server's parser refuses a few thousand levels at its default
// max_stack_depth; walscribe keeps well below.
const (
	MaxWeight = 131072 // digits before the decimal point
	MaxScale  = 16383  // digits after it
	MaxDepth  = 1000
	// MaxBytes is the largest document walscribe stores as it is; jsonb
	// itself takes no more than 256 MiB, and a row holds several values.
	MaxBytes = 64 << 20
	// maxExponent: numeric refuses an exponent this large (in absolute
	// value), even of zero.
	maxExponent = 1073741823
)

// NUL is what a NUL character becomes in sanitized text: the six characters
// of its JSON escape, visible, and storable.
const NUL = `\u0000`

// Errors Check returns.
var (
	ErrInvalid   = errors.New("not valid JSON")
	ErrUTF8      = errors.New("not valid UTF-8")
	ErrNUL       = errors.New(`holds \u0000, which jsonb refuses`)
	ErrSurrogate = errors.New("holds a lone UTF-16 surrogate escape, which jsonb refuses")
	ErrNumber    = errors.New("holds a number beyond numeric's range")
	ErrDepth     = errors.New("nested too deep")
	ErrSize      = errors.New("larger than walscribe stores")
)

// Check reports whether jsonb accepts b as it is, and why not.
func Check(b []byte) error {
	if len(b) > MaxBytes {
		return ErrSize
	}
	if !utf8.Valid(b) {
		return ErrUTF8
	}
	if !json.Valid(b) {
		return ErrInvalid
	}
	return scan(b)
}

// scan checks valid JSON for what jsonb refuses beyond JSON's rules.
func scan(b []byte) error {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '[' || c == '{':
			if depth++; depth > MaxDepth {
				return ErrDepth
			}
		case c == ']' || c == '}':
			depth--
		case c == '"':
			j, err := scanString(b, i+1)
			if err != nil {
				return err
			}
			i = j
		case c == '-' || c >= '0' && c <= '9':
			j := i + 1
			for j < len(b) && strings.IndexByte("0123456789.eE+-", b[j]) >= 0 {
				j++
			}
			if !NumberFits(string(b[i:j])) {
				return ErrNumber
			}
			i = j - 1
		}
	}
	return nil
}

// scanString checks the string whose content starts at b[i], and returns
// the index of its closing quote.
func scanString(b []byte, i int) (int, error) {
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i, nil
		case '\\':
			if b[i+1] != 'u' {
				i++
				continue
			}
			r := hex4(b[i+2 : i+6])
			switch {
			case r == 0:
				return 0, ErrNUL
			case r >= 0xD800 && r < 0xDC00: // high: a low one must follow
				if i+12 > len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
					return 0, ErrSurrogate
				}
				if lo := hex4(b[i+8 : i+12]); lo < 0xDC00 || lo >= 0xE000 {
					return 0, ErrSurrogate
				}
				i += 11
			case r >= 0xDC00 && r < 0xE000: // low, not after a high
				return 0, ErrSurrogate
			default:
				i += 5
			}
		}
	}
	return i, nil
}

func hex4(b []byte) rune {
	v, _ := strconv.ParseUint(string(b), 16, 32)
	return rune(v)
}

// NumberFits reports whether the JSON number n is within numeric's range.
func NumberFits(n string) bool {
	n = strings.TrimPrefix(n, "-")
	mant, exp := n, 0
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		mant = n[:i]
		e, err := strconv.Atoi(strings.TrimPrefix(n[i+1:], "+"))
		if err != nil || e >= maxExponent || e <= -maxExponent {
			return false // the server refuses such an exponent whatever the digits
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	// The value is digits × 10^(exp − len(frac)).
	weight := len(digits) + exp - len(frac) // digits before the decimal point
	scale := len(frac) - exp                // digits after it
	return (digits == "" || weight <= MaxWeight) && scale <= MaxScale
}

// Sanitize returns b unchanged when jsonb accepts it, and otherwise a
// document jsonb accepts, with changed true: a NUL in a string becomes the
// text \u0000, a lone surrogate U+FFFD, an out-of-range number a string of
// its digits; a document that is not JSON, not UTF-8 or nested too deep
// becomes one JSON string of its text; one larger than MaxBytes, its Stub.
func Sanitize(b []byte) (out []byte, changed bool) {
	err := Check(b)
	if err == nil {
		return b, false
	}
	if err == ErrSize {
		return Stub(b), true
	}
	if err == ErrNUL || err == ErrSurrogate || err == ErrNumber {
		if out, ok := reencode(b); ok {
			return out, true
		}
	}
	return String(string(b)), true
}

// stubHead is how much of a value its Stub keeps, as text.
const stubHead = 256

// Stub stands for a value too large to keep: its size, SHA-256 and
// beginning, as {"walscribe_truncated": {"bytes": …, "sha256": …, "head": …}}.
func Stub(b []byte) []byte {
	sum := sha256.Sum256(b)
	head := Text(strings.ToValidUTF8(string(b[:min(len(b), stubHead)]), ""))
	out, _ := json.Marshal(map[string]any{"walscribe_truncated": map[string]any{
		"bytes": len(b), "sha256": hex.EncodeToString(sum[:]), "head": head}})
	return out
}

// String is s as a JSON string that jsonb accepts: invalid UTF-8 replaced by
// U+FFFD, NUL by the text \u0000.
func String(s string) []byte {
	s = Text(s)
	out, _ := json.Marshal(s)
	return out
}

// Text is s as text PostgreSQL stores: invalid UTF-8 replaced by U+FFFD,
// NUL by the six characters \u0000.
func Text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", NUL)
}

// reencode rewrites valid JSON token by token: strings through Text (Go's
// decoder has already turned lone surrogates into U+FFFD), numbers beyond
// numeric's range as strings.
func reencode(b []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out bytes.Buffer
	type frame struct {
		obj bool
		n   int // values (in an object: keys and values) written
	}
	var stack []frame
	sep := func() {
		if len(stack) == 0 {
			return
		}
		f := &stack[len(stack)-1]
		switch {
		case f.obj && f.n%2 == 1:
			out.WriteByte(':')
		case f.n > 0:
			out.WriteByte(',')
		}
		f.n++
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF && len(stack) == 0 {
				return out.Bytes(), true
			}
			return nil, false
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '[', '{':
				sep()
				if len(stack) >= MaxDepth {
					return nil, false
				}
				stack = append(stack, frame{obj: v == '{'})
				out.WriteByte(byte(v))
			default:
				stack = stack[:len(stack)-1]
				out.WriteByte(byte(v))
			}
		case string:
			sep()
			s, _ := json.Marshal(Text(v))
			out.Write(s)
		case json.Number:
			sep()
			if NumberFits(string(v)) {
				out.WriteString(string(v))
			} else {
				s, _ := json.Marshal(string(v))
				out.Write(s)
			}
		case bool:
			sep()
			out.WriteString(strconv.FormatBool(v))
		case nil:
			sep()
			out.WriteString("null")
		}
	}
}
