package restore

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Statement is one SQL statement in two forms that do the same thing.
type Statement struct {
	// SQL is the statement with parameters ($1, $2, ...), as Apply runs it
	// with Args.
	SQL  string
	Args []any
	// Text is the statement with each parameter written as a quoted
	// literal, quoted as PostgreSQL's quote_literal quotes, identifiers as
	// quote_ident would: it can be pasted into psql. It may hold any
	// character a name holds, control characters included: escape it for
	// a terminal or a page (html/template does).
	Text string
}

// stmt builds a Statement's two forms at once.
type stmt struct {
	sql, text strings.Builder
	args      []any
	err       error
}

// raw appends SQL that is the same in both forms.
func (s *stmt) raw(parts ...string) *stmt {
	for _, p := range parts {
		s.sql.WriteString(p)
		s.text.WriteString(p)
	}
	return s
}

// jsonb appends a jsonb parameter: $n::pg_catalog.jsonb in the SQL, the
// quoted document in the text.
func (s *stmt) jsonb(doc string) *stmt {
	lit, err := QuoteLiteral(doc)
	if err != nil && s.err == nil {
		s.err = err
	}
	s.args = append(s.args, doc)
	s.sql.WriteString("$" + strconv.Itoa(len(s.args)) + "::pg_catalog.jsonb")
	s.text.WriteString(lit + "::pg_catalog.jsonb")
	return s
}

func (s *stmt) done() (Statement, error) {
	return Statement{SQL: s.sql.String(), Args: slices.Clip(s.args), Text: s.text.String()}, s.err
}

// errNUL: PostgreSQL text holds no NUL, so no literal can carry one.
var errNUL = errors.New("a value holds a NUL character, which no PostgreSQL literal can hold")

// QuoteLiteral quotes s as a string literal exactly as PostgreSQL's
// quote_literal does: single quotes doubled and, when s holds a
// backslash, backslashes doubled and the literal written as an escape
// string (E'...'), which the server reads the same way whatever
// standard_conforming_strings says. In UTF-8 no byte of a multi-byte
// character is a quote or a backslash, so nothing in s ends the literal.
// s must not hold NUL.
func QuoteLiteral(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", errNUL
	}
	var b strings.Builder
	b.Grow(len(s) + 3)
	if strings.IndexByte(s, '\\') >= 0 {
		b.WriteByte('E')
	}
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\'' || c == '\\' {
			b.WriteByte(c)
		}
		b.WriteByte(c)
	}
	b.WriteByte('\'')
	return b.String(), nil
}

// appendJSONString appends s as a JSON string, escaped as jsonb's output
// escapes it: quote, backslash and control characters.
func appendJSONString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// jsonObject writes the columns cols of vals (raw JSON values) as a JSON
// object, keys in the order jsonb keeps them (shorter first, then by
// bytes), spaced as jsonb's text is: the document reads like the trail's.
func jsonObject(cols []string, vals func(string) []byte) string {
	keys := slices.Clone(cols)
	slices.SortFunc(keys, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	keys = slices.Compact(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		appendJSONString(&b, k)
		b.WriteString(": ")
		b.Write(vals(k))
	}
	b.WriteByte('}')
	return b.String()
}
