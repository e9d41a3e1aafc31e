package integrity

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/walscribe/walscribe/jsonb"
)

// A RowBuilder writes, from an entry's values as the writer sends them, the
// text RowSQL makes the server give for the stored row: so that the writer
// can hash its leaves itself, without the server computing them again.
// Values are added in Columns order. Where it cannot be sure to write what
// the server would (a JSON document it does not render), the row is
// inexact, and its leaf must come from the server.
type RowBuilder struct {
	b     []byte
	field []byte
	n     int
	exact bool
	json  jsonb.Canonicalizer
}

// Reset starts a new row.
func (r *RowBuilder) Reset() {
	// The leaf's prefix leads the buffer: the hash is one call, without
	// allocating.
	r.b = append(append(r.b[:0], leafPrefix...), '(')
	r.n, r.exact = 0, true
}

// Row returns the row's text, and whether it is exact.
func (r *RowBuilder) Row() (string, bool) {
	return string(r.b[len(leafPrefix):]) + ")", r.exact && r.n == len(columns)
}

// LeafHash returns the leaf hash of the row (LeafHash of Row's text), and
// whether the row is exact.
func (r *RowBuilder) LeafHash() (tlog.Hash, bool) {
	r.b = append(r.b, ')')
	h := sha256.Sum256(r.b)
	r.b = r.b[:len(r.b)-1]
	return tlog.Hash(h), r.exact && r.n == len(columns)
}

// leafPrefix is RecordHash's leaf prefix (RFC 6962) and the header.
var leafPrefix = []byte("\x00" + leafHeader)

// Null adds a NULL: nothing between the commas.
func (r *RowBuilder) Null() { r.sep() }

// Int adds an integer.
func (r *RowBuilder) Int(v int64) { r.sep(); r.b = strconv.AppendInt(r.b, v, 10) }

// LSN adds a pg_lsn.
func (r *RowBuilder) LSN(v uint64) {
	r.sep()
	from := len(r.b)
	r.b = strconv.AppendUint(r.b, v>>32, 16)
	r.b = append(r.b, '/')
	r.b = strconv.AppendUint(r.b, v&0xffffffff, 16)
	for i := from; i < len(r.b); i++ {
		if c := r.b[i]; c >= 'a' && c <= 'f' {
			r.b[i] = c - 'a' + 'A'
		}
	}
}

// Micros adds a timestamptz as RowSQL projects it: its microseconds since
// the Unix epoch, as sent (truncated as the writer sends them).
func (r *RowBuilder) Micros(t time.Time) { r.Int(t.UnixMicro()) }

// Text adds a text value.
func (r *RowBuilder) Text(s string) { r.sep(); r.quotedString(s) }

// quotedString is quoted for a string, without copying it when it needs no
// quotes.
func (r *RowBuilder) quotedString(s string) {
	r.field = append(r.field[:0], s...)
	r.quoted(r.field)
}

// bytesField adds a text value given as bytes.
func (r *RowBuilder) bytesField(s []byte) { r.sep(); r.quoted(s) }

// TextOrNull adds a text value, or NULL when s is empty.
func (r *RowBuilder) TextOrNull(s string) {
	if s == "" {
		r.Null()
		return
	}
	r.Text(s)
}

// JSON adds a jsonb value as the server writes it (nil: NULL).
func (r *RowBuilder) JSON(doc []byte) {
	if doc == nil {
		r.Null()
		return
	}
	// A document in jsonb's canonical form (as walscribe's decoder writes
	// rows) is copied in one pass; others are rendered first.
	mark, n := len(r.b), r.n
	r.sep()
	var ok bool
	if r.b, ok = jsonb.AppendField(r.b, doc); ok {
		return
	}
	r.b, r.n = r.b[:mark], n
	var err error
	r.field, err = r.json.Append(r.field[:0], doc)
	if err != nil {
		r.exact = false
	}
	r.bytesField(r.field)
}

// TextArray adds a one-dimensional text[] without NULLs (nil: NULL), as
// array_out writes it.
func (r *RowBuilder) TextArray(a []string) {
	if a == nil {
		r.Null()
		return
	}
	f := append(r.field[:0], '{')
	for i, s := range a {
		if i > 0 {
			f = append(f, ',')
		}
		if !arrayNeedsQuotes(s) {
			f = append(f, s...)
			continue
		}
		f = append(f, '"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				f = append(f, '\\')
			}
			f = append(f, s[j])
		}
		f = append(f, '"')
	}
	r.field = append(f, '}')
	r.bytesField(r.field)
}

// Inet adds an inet as inet_out writes it (invalid: NULL): the address, and
// /bits unless they cover it all.
func (r *RowBuilder) Inet(p netip.Prefix) {
	if !p.IsValid() {
		r.Null()
		return
	}
	a := p.Addr()
	var s string
	if a.Is4() {
		s = a.String()
		if p.Bits() != 32 {
			s += "/" + strconv.Itoa(p.Bits())
		}
	} else {
		s = ipv6Text(a.As16())
		if p.Bits() != 128 {
			s += "/" + strconv.Itoa(p.Bits())
		}
	}
	r.Text(s)
}

// sep starts the next field.
func (r *RowBuilder) sep() {
	if r.n > 0 {
		r.b = append(r.b, ',')
	}
	r.n++
}

// quoted writes s as record_out does: in quotes, with quotes and
// backslashes doubled, when it is empty or holds a quote, backslash,
// parenthesis, comma or white space.
func (r *RowBuilder) quoted(s []byte) {
	need, doubled := len(s) == 0, 0
	for _, c := range s {
		if recordSpecial[c] {
			need = true
			if c == '"' || c == '\\' {
				doubled++
			}
		}
	}
	if !need {
		r.b = append(r.b, s...)
		return
	}
	at := len(r.b)
	r.b = slices.Grow(r.b, len(s)+doubled+2)[:at+len(s)+doubled+2]
	out := r.b[at:]
	out[0] = '"'
	j := 1
	from := 0
	for i, c := range s {
		if c == '"' || c == '\\' {
			j += copy(out[j:], s[from:i+1])
			from = i // the character again: doubled
		}
	}
	j += copy(out[j:], s[from:])
	out[j] = '"'
}

// recordSpecial are the bytes record_out quotes a value for.
var recordSpecial = func() (t [256]bool) {
	for _, c := range []byte{'"', '\\', '(', ')', ',', ' ', '\t', '\n', '\r', '\v', '\f'} {
		t[c] = true
	}
	return t
}()

// arrayNeedsQuotes reports whether array_out quotes the element s: empty,
// NULL in any case, or holding a brace, comma, quote, backslash or white
// space.
func arrayNeedsQuotes(s string) bool {
	if s == "" || strings.EqualFold(s, "NULL") {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{', '}', ',', '"', '\\', ' ', '\t', '\n', '\r', '\v', '\f':
			return true
		}
	}
	return false
}

// ipv6Text is the address as PostgreSQL writes an IPv6 inet (its
// inet_net_ntop, after BIND): the longest run of two or more zero words
// (the first of equals) as ::, words in lower-case hex, and the last 32
// bits in dotted form after ::ffff: or six zero words.
func ipv6Text(a [16]byte) string {
	var w [8]uint16
	for i := range w {
		w[i] = uint16(a[2*i])<<8 | uint16(a[2*i+1])
	}
	bestBase, bestLen, curBase, curLen := -1, 0, -1, 0
	for i := range w {
		if w[i] == 0 {
			if curBase == -1 {
				curBase, curLen = i, 1
			} else {
				curLen++
			}
			continue
		}
		if curBase != -1 {
			if bestBase == -1 || curLen > bestLen {
				bestBase, bestLen = curBase, curLen
			}
			curBase = -1
		}
	}
	if curBase != -1 && (bestBase == -1 || curLen > bestLen) {
		bestBase, bestLen = curBase, curLen
	}
	if bestBase != -1 && bestLen < 2 {
		bestBase = -1
	}
	var b strings.Builder
	for i := 0; i < 8; i++ {
		if bestBase != -1 && i >= bestBase && i < bestBase+bestLen {
			if i == bestBase {
				b.WriteByte(':')
			}
			continue
		}
		if i != 0 {
			b.WriteByte(':')
		}
		if i == 6 && bestBase == 0 && (bestLen == 6 || bestLen == 5 && w[5] == 0xffff) {
			fmt.Fprintf(&b, "%d.%d.%d.%d", a[12], a[13], a[14], a[15])
			return b.String()
		}
		b.WriteString(strconv.FormatUint(uint64(w[i]), 16))
	}
	if bestBase != -1 && bestBase+bestLen == 8 {
		b.WriteByte(':')
	}
	return b.String()
}
