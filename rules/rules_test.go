package rules

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"regexp"
	"testing"

	"github.com/walscribe/walscribe/audit"
)

func TestForPicksTheMostSpecificEntry(t *testing.T) {
	s, err := New(Config{
		Tables: []TableConfig{
			{Name: "public.*"},
			{Name: "*.*"},
			{Name: "billing.invoice_*"},
			{Name: "billing.invoice_2*"},
			{Name: "billing.invoice_2024"},
			{Name: "orders"}, // public.orders
			{Name: "sales.[ab]*"},
		},
		ExcludeTables:        []string{"public.tmp_*", "billing.invoice_2024"},
		SkipUnchangedUpdates: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		schema, table string
		entry         string // "" with excluded false: no entry, defaults
		excluded      bool
	}{
		{"public", "orders", "orders", false},
		{"public", "users", "public.*", false},
		{"public", "tmp_load", "", true},
		{"billing", "invoice_2025", "billing.invoice_2*", false},
		{"billing", "invoice_x", "billing.invoice_*", false},
		{"billing", "invoice_2024", "", true}, // an exclusion beats an exact name
		{"billing", "payments", "*.*", false},
		{"sales", "alpha", "sales.[ab]*", false},
		{"sales", "gamma", "*.*", false},
	}
	for _, c := range cases {
		tr, ok := s.For(c.schema, c.table)
		if ok == c.excluded {
			t.Errorf("%s.%s: tracked %v, want %v", c.schema, c.table, ok, !c.excluded)
			continue
		}
		if ok && tr.Entry != c.entry {
			t.Errorf("%s.%s: entry %q, want %q", c.schema, c.table, tr.Entry, c.entry)
		}
	}
	// Equally specific patterns: the first listed wins.
	s2, _ := New(Config{Tables: []TableConfig{{Name: "a.x*"}, {Name: "a.*y"}}})
	if tr, _ := s2.For("a", "xy"); tr.Entry != "a.x*" {
		t.Errorf("tie: entry %q, want the first listed", tr.Entry)
	}
	// A table no entry names gets every change, with the top-level skip.
	s3, _ := New(Config{Tables: []TableConfig{{Name: "a.b"}}, SkipUnchangedUpdates: true})
	if tr, ok := s3.For("c", "d"); !ok || tr.Entry != "" || tr.Actions != AllActions || !tr.SkipUnchangedUpdates || s3.Tracked("c", "d") {
		t.Errorf("an unnamed table: %+v %v", tr, ok)
	}
	var nilSet *Set
	if tr, ok := nilSet.For("a", "b"); !ok || tr != All {
		t.Error("a nil Set must record everything")
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{Tables: []TableConfig{{Name: "public.[x"}}}); err == nil {
		t.Error("a bad pattern was accepted")
	}
	if _, err := New(Config{Tables: []TableConfig{{Name: "t", Mask: map[string]Style{"c": Hash}}}}); err == nil {
		t.Error("hash masking without a secret was accepted")
	}
	if _, err := Actions(audit.Action("upsert")); err == nil {
		t.Error("an unknown action was accepted")
	}
}

func TestMasking(t *testing.T) {
	s, err := New(Config{Secret: []byte("k"), Tables: []TableConfig{{Name: "t", Mask: map[string]Style{"a": Hash, "b": Redact}}}})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := s.For("public", "t")
	m := hmac.New(sha256.New, []byte("k"))
	m.Write([]byte("4111"))
	want := `"` + hex.EncodeToString(m.Sum(nil)) + `"`
	if got := string(tr.AppendMasked(nil, Hash, []byte("4111"))); got != want {
		t.Errorf("hash: %s, want %s", got, want)
	}
	if got := string(tr.AppendMasked([]byte("x"), Redact, []byte("4111"))); got != `x"[redacted]"` {
		t.Errorf("redact: %s", got)
	}
	if HMAC([]byte("k"), []byte("4111")) != want[1:len(want)-1] {
		t.Error("HMAC differs from the masked value")
	}
}

// TestGlobToRegexp: the regular expression the database matches new tables
// with agrees with path.Match.
func TestGlobToRegexp(t *testing.T) {
	globs := []string{"*", "invoice_*", "invoice_2?2?", "[ab]*", "[!a]x", "[^a]x", "a.b", `x\*y`, "*_log", "a+b", "(x)"}
	names := []string{"", "invoice_", "invoice_2024", "invoice_x", "alpha", "beta", "gamma", "bx", "ax", "a.b", "axb", "x*y", "xzy", "audit_log", "a+b", "aab", "(x)", "x"}
	for _, g := range globs {
		re := regexp.MustCompile(GlobToRegexp(g))
		for _, n := range names {
			want, err := path.Match(g, n)
			if err != nil {
				t.Fatalf("%s: %v", g, err)
			}
			if got := re.MatchString(n); got != want {
				t.Errorf("glob %q (regexp %s) on %q: %v, path.Match says %v", g, re, n, got, want)
			}
		}
	}
}

func TestDescribeHidesTheSecret(t *testing.T) {
	s, _ := New(Config{Secret: []byte("super secret value"), Tables: []TableConfig{{Name: "t", Mask: map[string]Style{"c": Hash}, Diff: Changes}}})
	d := string(s.Describe())
	if regexp.MustCompile(`super secret`).MatchString(d) {
		t.Fatalf("the secret is in the record: %s", d)
	}
	for _, want := range []string{`"masking_key_id"`, `"mask":{"c":"hash"}`, `"diff":"changes"`} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(d) {
			t.Errorf("record lacks %s: %s", want, d)
		}
	}
}
