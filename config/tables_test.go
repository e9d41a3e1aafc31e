package config

import (
	"errors"
	"path"
	"reflect"
	"strings"
	"testing"
)

func TestTableRules(t *testing.T) {
	// Each case is a tables list and the entries Load must return for it,
	// written out in full: what the file says, and the documented defaults
	// for what it leaves out.
	tests := []struct {
		name string
		yaml string // the tables list and any top-level keys
		env  map[string]string
		want []Table
	}{
		{
			name: "every key",
			yaml: `
tables:
  - name: public.users
    exclude: [password_hash, updated_at]
    mask: [email, phone]
    mask_style: redact
    diff: changes
    actions: [insert, update]
    retention: 7y
    skip_unchanged_updates: false
`,
			want: []Table{{
				Name:                 "public.users",
				Exclude:              []string{"password_hash", "updated_at"},
				Mask:                 []string{"email", "phone"},
				MaskStyle:            MaskStyle{Default: "redact"},
				Diff:                 "changes",
				Actions:              []string{"insert", "update"},
				Retention:            "7y",
				SkipUnchangedUpdates: ptr(false),
			}},
		},
		{
			name: "mask_style as a map: the columns it leaves out use hash",
			yaml: `
tables:
  - name: billing.invoice_*
    mask: [card_number, email]
    mask_style: {card_number: redact}
    diff: full
    actions: [truncate, delete]
    retention: 18m
masking:
  secret: ` + testSecret + `
`,
			want: []Table{{
				Name:                 "billing.invoice_*",
				Mask:                 []string{"card_number", "email"},
				MaskStyle:            MaskStyle{Default: "hash", PerColumn: map[string]string{"card_number": "redact"}},
				Diff:                 "full",
				Actions:              []string{"truncate", "delete"},
				Retention:            "18m",
				SkipUnchangedUpdates: ptr(true),
			}},
		},
		{
			name: "mask_style map keys keep the spelling of mask",
			// The file's map keys reach Load lowercased; mixed-case
			// column names (quoted identifiers) must survive.
			yaml: `
tables:
  - name: public.accounts
    mask: [createdAt, IBAN, note]
    mask_style: {createdAt: hash, IBAN: redact, note: redact}
masking:
  secret: ` + testSecret + `
`,
			want: []Table{func() Table {
				tb := loaded("public.accounts")
				tb.Mask = []string{"createdAt", "IBAN", "note"}
				tb.MaskStyle.PerColumn = map[string]string{"createdAt": "hash", "IBAN": "redact", "note": "redact"}
				return tb
			}()},
		},
		{
			name: "mask_style map column names that are also keys",
			// Column names in the map are not checked as config keys.
			yaml: `
tables:
  - name: public.t
    mask: [name, diff, bogus]
    mask_style: {name: redact, diff: redact, bogus: redact}
`,
			want: []Table{func() Table {
				tb := loaded("public.t")
				tb.Mask = []string{"name", "diff", "bogus"}
				tb.MaskStyle.PerColumn = map[string]string{"name": "redact", "diff": "redact", "bogus": "redact"}
				return tb
			}()},
		},
		{
			name: "top-level skip_unchanged_updates is inherited, overrides kept",
			yaml: `
skip_unchanged_updates: false
tables:
  - name: public.a
  - name: public.b
    skip_unchanged_updates: true
  - name: public.c
    skip_unchanged_updates: false
`,
			want: func() []Table {
				a, b, c := loaded("public.a"), loaded("public.b"), loaded("public.c")
				a.SkipUnchangedUpdates = ptr(false)
				c.SkipUnchangedUpdates = ptr(false)
				return []Table{a, b, c}
			}(),
		},
		{
			name: "WALSCRIBE_SKIP_UNCHANGED_UPDATES is inherited too",
			yaml: `
tables:
  - name: public.a
  - name: public.b
    skip_unchanged_updates: true
`,
			env: map[string]string{"WALSCRIBE_SKIP_UNCHANGED_UPDATES": "false"},
			want: func() []Table {
				a, b := loaded("public.a"), loaded("public.b")
				a.SkipUnchangedUpdates = ptr(false)
				return []Table{a, b}
			}(),
		},
		{
			name: "entries for patterns and names side by side",
			yaml: `
tables:
  - name: public.*
    exclude: [updated_at]
  - name: public.users
  - name: "*.audit_log"
    actions: [insert]
`,
			want: func() []Table {
				all, users, logs := loaded("public.*"), loaded("public.users"), loaded("*.audit_log")
				all.Exclude = []string{"updated_at"}
				logs.Actions = []string{"insert"}
				return []Table{all, users, logs}
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			setEnv(t, tt.env)
			cfg, err := Load(writeConfig(t, "source:\n  dsn: "+testDSN+"\n"+tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Tables, tt.want) {
				t.Errorf("tables:\n got %s\nwant %s", showTables(cfg.Tables), showTables(tt.want))
			}
			// A loaded Config validates again unchanged.
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate of the loaded config: %v", err)
			}
		})
	}
}

// showTables prints entries with their pointers followed.
func showTables(tables []Table) string {
	var b strings.Builder
	for _, t := range tables {
		skip := "nil"
		if t.SkipUnchangedUpdates != nil {
			skip = map[bool]string{true: "true", false: "false"}[*t.SkipUnchangedUpdates]
		}
		b.WriteString("\n  ")
		b.WriteString(strings.Join([]string{
			t.Name, strings.Join(t.Exclude, ","), strings.Join(t.Mask, ","),
			t.MaskStyle.Default, mapString(t.MaskStyle.PerColumn), t.Diff,
			strings.Join(t.Actions, ","), t.Retention, skip,
		}, " | "))
	}
	return b.String()
}

func mapString(m map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+":"+m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestStyleOf(t *testing.T) {
	tests := []struct {
		name  string
		style MaskStyle
		want  map[string]string // column → style
	}{
		{"zero means hash", MaskStyle{}, map[string]string{"a": "hash"}},
		{"one word", MaskStyle{Default: "redact"}, map[string]string{"a": "redact", "b": "redact"}},
		{"map over hash", MaskStyle{Default: "hash", PerColumn: map[string]string{"a": "redact"}}, map[string]string{"a": "redact", "b": "hash"}},
		{"map without default", MaskStyle{PerColumn: map[string]string{"a": "redact"}}, map[string]string{"a": "redact", "b": "hash"}},
		{"map over redact", MaskStyle{Default: "redact", PerColumn: map[string]string{"a": "hash"}}, map[string]string{"a": "hash", "b": "redact"}},
		{"column names match exactly", MaskStyle{PerColumn: map[string]string{"Email": "redact"}}, map[string]string{"Email": "redact", "email": "hash"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for col, want := range tt.want {
				if got := tt.style.StyleOf(col); got != want {
					t.Errorf("StyleOf(%q) = %q, want %q", col, got, want)
				}
			}
		})
	}
}

func TestHasHashMask(t *testing.T) {
	tests := []struct {
		name   string
		tables []Table
		want   bool
	}{
		{"no masks", []Table{{Name: "public.a", Exclude: []string{"x"}}}, false},
		{"hash by default", []Table{{Name: "public.a"}, {Name: "public.b", Mask: []string{"x"}}}, true},
		{"redact for all", []Table{{Name: "public.a", Mask: []string{"x", "y"}, MaskStyle: MaskStyle{Default: "redact"}}}, false},
		{"map redacts every masked column", []Table{{Name: "public.a", Mask: []string{"x"}, MaskStyle: MaskStyle{Default: "hash", PerColumn: map[string]string{"x": "redact"}}}}, false},
		{"map leaves one column to hash", []Table{{Name: "public.a", Mask: []string{"x", "y"}, MaskStyle: MaskStyle{PerColumn: map[string]string{"x": "redact"}}}}, true},
		{"map hashes one column over redact", []Table{{Name: "public.a", Mask: []string{"x", "y"}, MaskStyle: MaskStyle{Default: "redact", PerColumn: map[string]string{"y": "hash"}}}}, true},
		{"style without masked columns", []Table{{Name: "public.a", MaskStyle: MaskStyle{Default: "hash"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Tables: tt.tables}
			if got := c.HasHashMask(); got != tt.want {
				t.Errorf("HasHashMask() = %v, want %v", got, tt.want)
			}
			// Validate agrees: a secret is required exactly when a column
			// is hashed.
			c = Default()
			c.Source.DSN = testDSN
			c.Tables = tt.tables
			err := c.Validate()
			if asks := err != nil && strings.Contains(err.Error(), "masking.secret: required"); asks != tt.want {
				t.Errorf("Validate without a secret: %v; want the secret asked for: %v", err, tt.want)
			}
		})
	}
}

func TestPatternSyntax(t *testing.T) {
	// Every accepted pattern must be one path.Match accepts, and every
	// pattern path.Match rejects must be rejected: the standard library is
	// the judge of the syntax. Some patterns path.Match accepts are still
	// rejected, because no unquoted lowercase name can match them.
	tests := []struct {
		name  string
		valid bool
	}{
		{"public.*", true},
		{"*.*", true},
		{"billing.invoice_*", true},
		{"*.audit_log", true},
		{"public.invoice_20??", true},
		{"public.invoice_[0-9]*", true},
		{"public.[a-m]*", true},
		{"public.[^x]*", true},
		{"app_?.orders", true},
		{"public.invoice_[0-9", false},
		{"public.invoice_[]", false},
		{"public.[a-]", false},
		{"public.[-a]", false},
		{"public.invoice]", false}, // path.Match takes ] as itself, no table has one
		{`public.invoice\*`, false},
		{"public.Invoice*", false},
		{"public.invoice-*", false},
		{"public.in voice*", false},
		{"public.invoice_^*", false},
		{"public.a.*", false},
		{"*.", false},
		{".*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			schema, table := Table{Name: tt.name}.Split()
			stdlibOK := true
			for _, p := range []string{schema, table} {
				if _, err := path.Match(p, ""); errors.Is(err, path.ErrBadPattern) {
					stdlibOK = false
				}
			}
			msg := checkTableName(tt.name)
			if got := msg == ""; got != tt.valid {
				t.Errorf("checkTableName(%q) = %q, want valid %v", tt.name, msg, tt.valid)
			}
			if msg == "" && !stdlibOK {
				t.Errorf("%q is accepted, but path.Match rejects it", tt.name)
			}
			if msg != "" && !strings.Contains(msg, "e.g.") {
				t.Errorf("checkTableName(%q) = %q: want an example of a valid name", tt.name, msg)
			}
		})
	}
}

func TestMaskedColumn(t *testing.T) {
	tests := []struct {
		col   string
		mask  []string
		want  string
		found bool
	}{
		{"email", []string{"email"}, "email", true},
		{"createdat", []string{"createdAt"}, "createdAt", true},
		{"createdat", []string{"createdat", "createdAt"}, "createdat", true},
		{"iban", []string{"IBAN", "Iban"}, "", false}, // two columns differ only in case
		{"createdAt", []string{"createdat"}, "", false},
		{"phone", []string{"email"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.col+" in "+strings.Join(tt.mask, ","), func(t *testing.T) {
			got, found := maskedColumn(tt.col, tt.mask)
			if got != tt.want || found != tt.found {
				t.Errorf("maskedColumn(%q, %q) = %q, %v, want %q, %v", tt.col, tt.mask, got, found, tt.want, tt.found)
			}
		})
	}
}
