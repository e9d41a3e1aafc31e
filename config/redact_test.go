package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRedactedDSN(t *testing.T) {
	// Each DSN holds the secret s3cret (or none). The redacted form must not
	// show it, and must still connect to the same place as the same user:
	// pgconn, which walscribe connects with, is the judge.
	tests := []struct {
		name       string
		dsn        string
		secret     bool   // the DSN holds a password
		sslkeyPass string // sslpassword in the DSN, if any
	}{
		{name: "URL with password", dsn: "postgres://walscribe:s3cret@db.internal:5432/app?sslmode=disable", secret: true},
		{name: "postgresql scheme", dsn: "postgresql://walscribe:s3cret@db.internal/app", secret: true},
		{name: "URL with escaped password", dsn: "postgres://walscribe:s3cret%40%2F%3A@db.internal/app", secret: true},
		{name: "URL password in the query", dsn: "postgres://walscribe@db.internal/app?password=s3cret&sslmode=require", secret: true},
		{name: "URL with several hosts", dsn: "postgres://walscribe:s3cret@db1:5432,db2:5433/app", secret: true},
		{name: "URL with sslpassword", dsn: "postgres://walscribe@db.internal/app?sslpassword=s3cret", sslkeyPass: "s3cret"},
		{name: "URL without password", dsn: "postgres://walscribe@db.internal:5432/app?sslmode=disable"},
		{name: "key=value", dsn: "host=db.internal port=5432 dbname=app user=walscribe password=s3cret", secret: true},
		{name: "key=value, password first", dsn: "password=s3cret host=db.internal dbname=app user=walscribe", secret: true},
		{name: "key=value, quoted password with spaces", dsn: "host=db.internal dbname=app user=walscribe password='s3cret and more'", secret: true},
		{name: "key=value, quoted password with a quote", dsn: `host=db.internal dbname=app user=walscribe password='s3cret\'s'`, secret: true},
		{name: "key=value, spaces around =", dsn: "host=db.internal dbname=app user=walscribe password = s3cret", secret: true},
		{name: "key=value, tab before password", dsn: "host=db.internal dbname=app user=walscribe\tpassword=s3cret", secret: true},
		{name: "key=value with sslpassword", dsn: "host=db.internal dbname=app user=walscribe sslpassword=s3cret", sslkeyPass: "s3cret"},
		{name: "key=value without password", dsn: "host=db.internal dbname=app user=walscribe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig, err := pgconn.ParseConfig(tt.dsn)
			if err != nil {
				t.Fatalf("the test DSN does not parse: %v", err)
			}
			if tt.secret && !strings.Contains(orig.Password, "s3cret") {
				t.Fatalf("the test DSN has password %q, want one with s3cret", orig.Password)
			}

			c := Config{Source: Source{DSN: tt.dsn}, Sink: Sink{DSN: tt.dsn}}
			r := c.Redacted()
			for _, section := range []string{"source", "sink"} {
				got := r[section].(map[string]any)["dsn"].(string)
				if strings.Contains(got, "s3cret") {
					t.Errorf("%s.dsn redacted to %q: the password shows", section, got)
				}
				red, err := pgconn.ParseConfig(got)
				if err != nil {
					t.Fatalf("%s.dsn redacted to %q, which does not parse: %v", section, got, err)
				}
				if red.Host != orig.Host || red.Port != orig.Port || red.User != orig.User || red.Database != orig.Database {
					t.Errorf("%s.dsn redacted to %q: %s@%s:%d/%s, want %s@%s:%d/%s", section, got,
						red.User, red.Host, red.Port, red.Database, orig.User, orig.Host, orig.Port, orig.Database)
				}
				if len(red.Fallbacks) != len(orig.Fallbacks) {
					t.Errorf("%s.dsn redacted to %q: %d hosts, want %d", section, got, len(red.Fallbacks)+1, len(orig.Fallbacks)+1)
				}
				wantPassword := ""
				if tt.secret {
					wantPassword = redactedPassword
				}
				if red.Password != wantPassword {
					t.Errorf("%s.dsn redacted to %q: password %q, want %q", section, got, red.Password, wantPassword)
				}
				if tt.sslkeyPass != "" && !strings.Contains(got, "sslpassword="+redactedPassword) {
					t.Errorf("%s.dsn redacted to %q: want sslpassword=%s", section, got, redactedPassword)
				}
				if !tt.secret && tt.sslkeyPass == "" && got != tt.dsn {
					t.Errorf("%s.dsn without password changed to %q", section, got)
				}
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Source.DSN = "postgres://walscribe:s3cret@db.internal:5432/app"
	c.Sink.BatchMaxWait = 250 * time.Millisecond
	c.Source.RecreateLostSlot = true
	c.Spool.Dir = "/var/lib/walscribe/spool"
	c.Spool.TxnMemory = 64_000_000
	c.Masking.Secret = "s3cret-masking-key-0123456789"
	c.ExcludeTables = []string{"public.sessions"}
	c.SkipUnchangedUpdates = false
	c.Tables = []Table{
		{Name: "public.orders"},
		{
			Name:                 "billing.invoice_*",
			Exclude:              []string{"notes"},
			Mask:                 []string{"card_number", "email"},
			MaskStyle:            MaskStyle{PerColumn: map[string]string{"card_number": "redact"}},
			Diff:                 "changes",
			Actions:              []string{"insert", "update"},
			Retention:            "7y",
			SkipUnchangedUpdates: ptr(true),
		},
	}
	r := c.Redacted()

	if s := fmt.Sprint(r); strings.Contains(s, "s3cret") {
		t.Errorf("Redacted() shows a secret: %s", s)
	}
	// Every key of the file is in the map, under the same name.
	for _, l := range leaves("", reflect.ValueOf(c)) {
		section, key, nested := strings.Cut(l.key, ".")
		if !nested {
			if _, ok := r[section]; !ok {
				t.Errorf("Redacted() has no %s", l.key)
			}
			continue
		}
		m, ok := r[section].(map[string]any)
		if !ok {
			t.Errorf("Redacted() has no section %s", section)
			continue
		}
		// A subsection (export.s3) is a map in its section's.
		for sub, rest, deeper := strings.Cut(key, "."); deeper; sub, rest, deeper = strings.Cut(rest, ".") {
			if m, ok = m[sub].(map[string]any); !ok {
				break
			}
			key = rest
		}
		if _, ok := m[key]; !ok {
			t.Errorf("Redacted() has no %s", l.key)
		}
	}
	tables, ok := r["tables"].([]map[string]any)
	if !ok || len(tables) != 2 {
		t.Fatalf("Redacted() tables = %#v, want two entries", r["tables"])
	}
	// Every key of a tables entry is there, under the same name.
	for i := range reflect.TypeFor[Table]().NumField() {
		key := tag(reflect.TypeFor[Table]().Field(i))
		for j, entry := range tables {
			if _, ok := entry[key]; !ok {
				t.Errorf("Redacted() tables[%d] has no %s", j, key)
			}
		}
	}
	tests := []struct {
		key  string
		got  any
		want any
	}{
		{"sink.batch_max_wait", r["sink"].(map[string]any)["batch_max_wait"], "250ms"},
		{"source.status_interval", r["source"].(map[string]any)["status_interval"], "10s"},
		{"source.recreate_lost_slot", r["source"].(map[string]any)["recreate_lost_slot"], true},
		{"spool.dir", r["spool"].(map[string]any)["dir"], "/var/lib/walscribe/spool"},
		{"spool.txn_memory", r["spool"].(map[string]any)["txn_memory"], "64MB"},
		{"spool.txn_memory default", ptr(Default()).Redacted()["spool"].(map[string]any)["txn_memory"], "8MiB"},
		{"sink.dsn", r["sink"].(map[string]any)["dsn"], ""},
		{"masking.secret", r["masking"].(map[string]any)["secret"], "xxxxx"},
		{"exclude_tables", r["exclude_tables"], []string{"public.sessions"}},
		{"skip_unchanged_updates", r["skip_unchanged_updates"], false},
		// An entry built by hand shows the defaults in force.
		{"tables[0]", tables[0], map[string]any{
			"name": "public.orders", "exclude": []string{}, "mask": []string{},
			"mask_style": map[string]string{}, "diff": "full",
			"actions":   []string{"insert", "update", "delete", "truncate"},
			"retention": "", "skip_unchanged_updates": false,
		}},
		// mask_style shows the style of every masked column.
		{"tables[1]", tables[1], map[string]any{
			"name": "billing.invoice_*", "exclude": []string{"notes"}, "mask": []string{"card_number", "email"},
			"mask_style": map[string]string{"card_number": "redact", "email": "hash"}, "diff": "changes",
			"actions": []string{"insert", "update"}, "retention": "7y", "skip_unchanged_updates": true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("Redacted() %s = %#v, want %#v", tt.key, tt.got, tt.want)
			}
		})
	}

	t.Run("no secret", func(t *testing.T) {
		c.Masking.Secret = ""
		if got := c.Redacted()["masking"].(map[string]any)["secret"]; got != "" {
			t.Errorf("Redacted() masking.secret = %#v without a secret, want \"\"", got)
		}
	})
	t.Run("a copy", func(t *testing.T) {
		// Changing the map for a log must not change the Config.
		r["exclude_tables"].([]string)[0] = "changed"
		tables[1]["actions"].([]string)[0] = "changed"
		if c.ExcludeTables[0] != "public.sessions" || c.Tables[1].Actions[0] != "insert" {
			t.Errorf("changing Redacted() changed the Config: %v, %v", c.ExcludeTables, c.Tables[1].Actions)
		}
	})
}
