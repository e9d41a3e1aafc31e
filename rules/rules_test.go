package rules

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"path"
	"regexp"
	"strings"
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

// testKey is a masking key as config decodes it: 32 random bytes.
var testKey = []byte{
	0x79, 0xe0, 0x88, 0x3b, 0x2d, 0x64, 0x36, 0xf9, 0x37, 0x76, 0x0a, 0xa7, 0x2c, 0xfc, 0xd2, 0xf8,
	0xe1, 0x45, 0x22, 0x77, 0x09, 0x02, 0x55, 0x92, 0x05, 0x99, 0xd8, 0xf6, 0xb2, 0xfb, 0x89, 0x31,
}

func TestMasking(t *testing.T) {
	s, err := New(Config{Secret: testKey, Tables: []TableConfig{{Name: "t", Mask: map[string]Style{"a": Hash, "b": Redact}}}})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := s.For("public", "t")
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte("4111"))
	want := `"` + hex.EncodeToString(m.Sum(nil)) + `"`
	if got := string(tr.AppendMasked(nil, Hash, []byte("4111"))); got != want {
		t.Errorf("hash: %s, want %s", got, want)
	}
	if got := string(tr.AppendMasked([]byte("x"), Redact, []byte("4111"))); got != `x"[redacted]"` {
		t.Errorf("redact: %s", got)
	}
	if HMAC(testKey, []byte("4111")) != want[1:len(want)-1] {
		t.Error("HMAC differs from the masked value")
	}
}

// TestGlobToRegexp: the regular expression the database matches new tables
// with agrees with the decoder's matching (MatchName: path.Match, a slash
// in a name being any other character).
func TestGlobToRegexp(t *testing.T) {
	globs := []string{"*", "invoice_*", "invoice_2?2?", "[ab]*", "[!a]x", "[^a]x", "a.b", `x\*y`, "*_log", "a+b", "(x)"}
	names := []string{"", "invoice_", "invoice_2024", "invoice_x", "alpha", "beta", "gamma", "bx", "ax", "a.b", "axb", "x*y", "xzy", "audit_log", "a+b", "aab", "(x)", "x",
		"q1/2024", "invoice_a/b", "a/x", "/", "a/b_log"}
	for _, g := range globs {
		re := regexp.MustCompile(GlobToRegexp(g))
		if _, err := path.Match(g, ""); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		for _, n := range names {
			want := MatchName(g, n)
			if got := re.MatchString(n); got != want {
				t.Errorf("glob %q (regexp %s) on %q: %v, MatchName says %v", g, re, n, got, want)
			}
		}
	}
	// A table whose name holds a slash gets its pattern's rules (its masks),
	// not the defaults.
	set, err := New(Config{Secret: testKey, Tables: []TableConfig{{Name: "public.*", Mask: map[string]Style{"card": Redact}}}})
	if err != nil {
		t.Fatal(err)
	}
	if tb, ok := set.For("public", "q1/2024"); !ok || tb.Mask["card"] != Redact {
		t.Errorf("public.\"q1/2024\": %+v, %v; want the rules of public.*", tb, ok)
	}
}

func TestDescribeHidesTheSecret(t *testing.T) {
	s, _ := New(Config{Secret: testKey, Tables: []TableConfig{{Name: "t", Mask: map[string]Style{"c": Hash}, Diff: Changes}}})
	d := string(s.Describe())
	for _, form := range []string{hex.EncodeToString(testKey), base64.StdEncoding.EncodeToString(testKey), string(testKey)} {
		if strings.Contains(d, form[:12]) {
			t.Fatalf("the secret is in the record: %s", d)
		}
	}
	for _, want := range []string{`"masking_key_id":"` + KeyID(testKey) + `"`, `"mask":{"c":"hash"}`, `"diff":"changes"`} {
		if !strings.Contains(d, want) {
			t.Errorf("record lacks %s: %s", want, d)
		}
	}
	noKey, _ := New(Config{Tables: []TableConfig{{Name: "t", Mask: map[string]Style{"c": Redact}}}})
	if d := string(noKey.Describe()); strings.Contains(d, "masking_key_id") {
		t.Errorf("a key id without a key: %s", d)
	}
}

// TestKeyID: the key id is the documented HMAC of a fixed label, not a
// plain hash of the key, and tells keys apart.
func TestKeyID(t *testing.T) {
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte("walscribe masking key id v1"))
	want := hex.EncodeToString(m.Sum(nil))[:16]
	got := KeyID(testKey)
	if got != want {
		t.Errorf("KeyID = %s, want %s: the first 16 hex digits of HMAC-SHA256(key, \"walscribe masking key id v1\")", got, want)
	}
	// Neither the hash of the key's bytes nor of its hex text, as
	// masking.secret holds it.
	for _, text := range [][]byte{testKey, []byte(hex.EncodeToString(testKey))} {
		sum := sha256.Sum256(text)
		if strings.HasPrefix(hex.EncodeToString(sum[:]), got) {
			t.Errorf("KeyID %s is a prefix of SHA-256(%q)", got, text)
		}
	}
	other := bytes.Clone(testKey)
	other[0] ^= 1
	if KeyID(other) == got {
		t.Errorf("two keys, one id %s", got)
	}
	if KeyID(nil) != "" {
		t.Errorf("KeyID(nil) = %q, want \"\"", KeyID(nil))
	}
}
