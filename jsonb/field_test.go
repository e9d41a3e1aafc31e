package jsonb

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// recordQuote is record_out's quoting of one field, written plainly: the
// reference AppendField is compared with.
func recordQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, "\"\\(), \t\n\r\v\f") {
		return s
	}
	return `"` + strings.NewReplacer(`"`, `""`, `\`, `\\`).Replace(s) + `"`
}

// compact drops the space after the commas and colons between members and
// elements of a canonical text, as walscribe's decoder writes documents.
func compact(s string) string {
	var b strings.Builder
	in, esc := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		b.WriteByte(c)
		switch {
		case in && esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case !in && (c == ',' || c == ':') && i+1 < len(s) && s[i+1] == ' ':
			i++
		}
	}
	return b.String()
}

// checkField compares AppendField with Canonical, quoted, for doc, and
// returns whether AppendField took it.
func checkField(t *testing.T, doc string) bool {
	t.Helper()
	prefix := []byte("(1,")
	got, ok := AppendField(prefix, []byte(doc))
	if !ok {
		if string(got) != string(prefix) {
			t.Fatalf("%.200s: refused, but dst became %q", doc, got)
		}
		return false
	}
	want, err := Canonical([]byte(doc))
	if err != nil {
		t.Fatalf("%.200s: AppendField takes it (%s), Canonical refuses it: %v", doc, got, err)
	}
	if string(got) != string(prefix)+recordQuote(want) {
		t.Fatalf("%.200s:\n  AppendField %.300s\n  quoted      %.300s", doc, got[len(prefix):], recordQuote(want))
	}
	return true
}

// TestAppendField: whatever AppendField takes, it writes as Canonical
// then record_out's quoting do; and it takes every canonical text (and its
// compact form) whose keys have no escapes.
func TestAppendField(t *testing.T) {
	docs := append(append([]string{}, canonicalCases...), cases...)
	docs = append(docs, `{"a": 1, "b": [1, 2, {"aa": "x,y", "ab": "(\")"}], "bb": null}`, `[-0.5, -10, 0.10, 0]`,
		`"a\\b\"c\u001fd\u0001"`, `{"a":1,"b":2}`, `[1]`, `[]`, `{}`, `""`, `"x"`, `1`, `-0`, `-0.0`, `1e2`, `"\/"`,
		`"\u00e9"`, `"\u000a"`, `"\u001F"`, `{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a\n":1}`, "[1,\n2]", `[1,]`, `{"a" 1}`, `tru`,
		`{"a": 1`, `"abc`, "\"a\x01\"", `01`, `1.`, `-`, `{"a": 1}x`, `"\u0000"`, `"\ud83d\ude00"`, "\xff")
	r := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		docs = append(docs, genJSON(r, 0))
	}
	taken := 0
	for _, d := range docs {
		if checkField(t, d) {
			taken++
		}
		canon, err := Canonical([]byte(d))
		if err != nil || keyEscaped(canon) {
			continue
		}
		for _, form := range []string{canon, compact(canon), " " + compact(canon) + "\n"} {
			if !checkField(t, form) {
				t.Fatalf("AppendField refuses the canonical text %.300s", form)
			}
		}
	}
	t.Logf("AppendField took %d of %d documents as they were", taken, len(docs))
	if taken < 1000 {
		t.Errorf("AppendField took only %d of %d documents as they were", taken, len(docs))
	}
}

// keyEscaped reports whether an object key of the canonical text canon
// holds an escape (AppendField leaves those to Canonical).
func keyEscaped(canon string) bool {
	for i := 0; i < len(canon); i++ {
		if canon[i] != '"' {
			continue
		}
		escaped := false
		j := i + 1
		for ; canon[j] != '"'; j++ {
			if canon[j] == '\\' {
				escaped = true
				j++
			}
		}
		if escaped && strings.HasPrefix(canon[j+1:], ":") {
			return true
		}
		i = j
	}
	return false
}

func FuzzAppendField(f *testing.F) {
	for _, d := range append(append([]string{}, canonicalCases...), cases...) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, doc string) { checkField(t, doc) })
}
