package jsonb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// canonicalCases are documents whose stored text is easy to get wrong.
var canonicalCases = []string{
	`{"b": 1, "a": 2, "aa": 3, "B": 4, "é": 5, "": 6}`, `{"a":1,"a":2}`, `{"a": {"z": 1, "y": [1, {"b": 2, "a": 1}]}}`,
	`[1.50, 1e2, 1E+2, 1.5e1, 150e-2, 1e-3, 1.0e-5, -0, -0.0, 0.000, 0, -1, 123456789012345678901234567890.123456789]`,
	`[12345678901234567890123.000, 0.1e1, 10e-1, 5e0, 5E-0, 2.5e+3, 1e20, 1e-20, -1.5e-7, 007e0]`,
	`["\u0001\u001f\u007f\"\\/\b\f\n\r\t", "é😀\u00e9\ud83d\ude00", "<>&'", ""]`,
	`"just a string"`, `12.30`, `null`, `true`, `false`, `[]`, `{}`, `[[], {}, [[]]]`, ` { "sp" : [ 1 , 2 ] } `,
	`{"k": "\u2028\u2029"}`,
}

// TestCanonicalAgainstTheServer: Canonical gives what the server's jsonb
// output gives, for the cases above and for generated documents.
func TestCanonicalAgainstTheServer(t *testing.T) {
	conn := pgtest.Connect(t, srv.DSN("postgres")+"&client_encoding=UTF8")
	docs := append(append([]string{}, canonicalCases...), cases...)
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		docs = append(docs, genJSON(r, 0))
	}
	if got, err := Canonical([]byte(`{"b": 1, "a": 2, "aa": 3e1, "a": 1.50}`)); err != nil || got != `{"a": 1.50, "b": 1, "aa": 30}` {
		t.Fatalf("Canonical: %s, %v", got, err)
	}
	compared := 0
	for _, d := range docs {
		got, err := Canonical([]byte(d))
		var want string
		serr := conn.QueryRow(context.Background(), `SELECT $1::text::jsonb::text`, d).Scan(&want)
		switch {
		case serr != nil && err == nil:
			t.Errorf("%.200s: the server refuses it (%v), Canonical gives %.200s", d, serr, got)
		case serr == nil && err != nil:
			t.Errorf("%.200s: Canonical refuses it (%v), the server stores it as %.200s", d, err, want)
		case serr == nil && got != want:
			t.Errorf("%.200s:\n  Canonical  %.300s\n  the server %.300s", d, got, want)
		case serr == nil:
			compared++
		}
	}
	if compared < 3000 {
		t.Errorf("only %d documents compared with the server", compared)
	}
}

// genJSON is a random document: nested objects and arrays, numbers of
// every form, strings with escapes, control characters and non-ASCII, and
// duplicate keys.
func genJSON(r *rand.Rand, depth int) string {
	switch k := r.IntN(10); {
	case k < 2 && depth < 4:
		var parts []string
		for range r.IntN(5) {
			parts = append(parts, genJSON(r, depth+1))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case k < 4 && depth < 4:
		keys := []string{"a", "b", "aa", "é", "", "k1", "K", "zz", "\\u0041", "a\\nb"}
		var parts []string
		for range r.IntN(6) {
			parts = append(parts, fmt.Sprintf(`"%s": %s`, keys[r.IntN(len(keys))], genJSON(r, depth+1)))
		}
		return "{" + strings.Join(parts, ",") + "}"
	case k < 7:
		return genNumber(r)
	case k < 9:
		pieces := []string{"a", "é", "😀", `\"`, `\\`, `\/`, `\n`, `\t`, `\u0001`, `\u001f`, `\u007f`, "\u007f", `\u00e9`, `\ud83d\ude00`, " ", "<", "'"}
		var b strings.Builder
		for range r.IntN(6) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return `"` + b.String() + `"`
	default:
		return []string{"true", "false", "null"}[r.IntN(3)]
	}
}

func genNumber(r *rand.Rand) string {
	var b strings.Builder
	if r.IntN(3) == 0 {
		b.WriteByte('-')
	}
	if r.IntN(4) == 0 {
		b.WriteByte('0')
	} else {
		b.WriteByte(byte('1' + r.IntN(9)))
		for range r.IntN(25) {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
	}
	if r.IntN(2) == 0 {
		b.WriteByte('.')
		for range 1 + r.IntN(12) {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
	}
	if r.IntN(3) == 0 {
		b.WriteString([]string{"e", "E", "e+", "e-", "E-"}[r.IntN(5)])
		fmt.Fprint(&b, r.IntN(40))
	}
	return b.String()
}
