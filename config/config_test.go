package config

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walscribe/walscribe/integrity"
)

// isolateEnv unsets every WALSCRIBE_ variable for the length of the test, so
// that the environment of whoever runs the tests cannot change what Load
// sees. t.Setenv restores the old values afterwards.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix+"_") {
			t.Setenv(name, "")
			if err := os.Unsetenv(name); err != nil {
				t.Fatalf("unset %s: %v", name, err)
			}
		}
	}
}

// writeConfig writes a config file for one test and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "walscribe.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// setEnv sets the test's environment variables.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// minimal is the smallest valid file: the two keys that have no default.
const minimal = `
source:
  dsn: postgres://walscribe@localhost:5432/app?sslmode=disable
tables:
  - name: public.orders
`

const testDSN = "postgres://walscribe@localhost:5432/app?sslmode=disable"

// testSecret is a valid masking key: 32 random bytes in hex, as walscribe
// keygen prints them.
const testSecret = "79e0883b2d6436f937760aa72cfcd2f8e1452277090255920599d8f6b2fb8931"

// loaded is a tables entry for name as Load returns it when the file gives
// only the name: the documented defaults filled in.
func loaded(name string) Table {
	skip := true
	return Table{
		Name:                 name,
		MaskStyle:            MaskStyle{Default: "hash"},
		Diff:                 "full",
		Actions:              []string{"insert", "update", "delete", "truncate"},
		SkipUnchangedUpdates: &skip,
	}
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

func TestLoadDefaults(t *testing.T) {
	// Every key but source.dsn and tables is absent, null or in an empty
	// section: each must take its default.
	tests := []struct {
		name string
		yaml string
	}{
		{"keys absent", minimal},
		{"empty sections", minimal + "sink: {}\nspool: {}\ncontext: {}\nmasking: {}\nhttp: {}\nlog: {}\n"},
		{"null sections", minimal + "sink:\nspool:\ncontext:\nmasking:\nexclude_tables:\nhttp:\nlog:\n"},
		{"null entry keys", minimal + "    exclude:\n    mask:\n    mask_style:\n    diff:\n    actions:\n    retention:\n    skip_unchanged_updates:\n"},
		{"null keys", minimal + `
masking:
  secret:
exclude_tables:
skip_unchanged_updates:
sink:
  dsn:
  schema:
  batch_max_entries:
  batch_max_wait:
spool:
  dir:
  txn_memory:
context:
  prefix:
http:
  listen:
log:
  level:
  format:
`},
		{"keys in another case", strings.ReplaceAll(strings.ReplaceAll(minimal, "source:", "Source:"), "dsn:", "DSN:")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			cfg, err := Load(writeConfig(t, tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			want.Source.DSN = testDSN
			want.Tables = []Table{loaded("public.orders")}
			if !reflect.DeepEqual(*cfg, want) {
				t.Errorf("Load:\n got %+v\nwant %+v", *cfg, want)
			}
		})
	}
}

func TestLoadNoFile(t *testing.T) {
	isolateEnv(t)
	setEnv(t, map[string]string{
		"WALSCRIBE_SOURCE_DSN": testDSN,
		"WALSCRIBE_TABLES":     "public.orders",
	})
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Source.DSN = testDSN
	want.Tables = []Table{loaded("public.orders")}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("Load(\"\"):\n got %+v\nwant %+v", *cfg, want)
	}
}

func TestTableNames(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string // the tables section
		env   string // WALSCRIBE_TABLES, when not ""
		want  []string
		split [][2]string // Split of each loaded table
	}{
		{
			name: "no schema means public",
			yaml: "tables:\n  - name: orders\n",
			want: []string{"public.orders"},
		},
		{
			name: "schema kept",
			yaml: "tables:\n  - name: billing.invoices\n  - name: orders\n  - name: public.customers\n",
			want: []string{"billing.invoices", "public.orders", "public.customers"},
		},
		{
			name: "environment, no schema means public",
			yaml: "tables:\n  - name: ignored\n",
			env:  "orders, billing.invoices",
			want: []string{"public.orders", "billing.invoices"},
		},
		{
			name: "patterns",
			yaml: "tables:\n  - name: public.*\n  - name: billing.invoice_*\n  - name: \"*.audit_log\"\n  - name: invoice_[0-9][0-9]?\n  - name: app_[^t]*.log\n",
			want: []string{"public.*", "billing.invoice_*", "*.audit_log", "public.invoice_[0-9][0-9]?", "app_[^t]*.log"},
		},
		{
			name: "patterns from the environment",
			yaml: "tables:\n  - name: ignored\n",
			env:  "public.*, *.audit_log,invoice_*",
			want: []string{"public.*", "*.audit_log", "public.invoice_*"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			if tt.env != "" {
				t.Setenv("WALSCRIBE_TABLES", tt.env)
			}
			cfg, err := Load(writeConfig(t, "source:\n  dsn: "+testDSN+"\n"+tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tb := range cfg.Tables {
				got = append(got, tb.Name)
				schema, table := tb.Split()
				if schema+"."+table != tb.Name || schema == "" || table == "" {
					t.Errorf("%q.Split() = %q, %q", tb.Name, schema, table)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("tables = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct{ name, schema, table string }{
		{"orders", "public", "orders"},
		{"public.orders", "public", "orders"},
		{"billing.invoices", "billing", "invoices"},
		{"public.*", "public", "*"},
		{"*", "public", "*"},
		{"*.audit_log", "*", "audit_log"},
		{"billing.invoice_[0-9]*", "billing", "invoice_[0-9]*"},
		{"invoice_?", "public", "invoice_?"},
		{"app.public.orders", "app", "public.orders"}, // at the first dot; Validate rejects it
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			schema, table := Table{Name: tt.name}.Split()
			if schema != tt.schema || table != tt.table {
				t.Errorf("Split() = %q, %q, want %q, %q", schema, table, tt.schema, tt.table)
			}
		})
	}
}

func TestSinkDSN(t *testing.T) {
	const auditDSN = "postgres://walscribe@audit-db:5432/audit"
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want string
	}{
		{"absent: the source", minimal, nil, testDSN},
		{"empty: the source", minimal + "sink:\n  dsn: \"\"\n", nil, testDSN},
		{"set in the file", minimal + "sink:\n  dsn: " + auditDSN + "\n", nil, auditDSN},
		{"set in the environment", minimal, map[string]string{"WALSCRIBE_SINK_DSN": auditDSN}, auditDSN},
		{"emptied by the environment", minimal + "sink:\n  dsn: " + auditDSN + "\n", map[string]string{"WALSCRIBE_SINK_DSN": ""}, testDSN},
		{"source from the environment", minimal, map[string]string{"WALSCRIBE_SOURCE_DSN": auditDSN}, auditDSN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			setEnv(t, tt.env)
			cfg, err := Load(writeConfig(t, tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.SinkDSN(); got != tt.want {
				t.Errorf("SinkDSN() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	// file sets every key the cases override, to values the environment
	// then replaces: the environment wins over the file.
	const file = `
source:
  dsn: postgres://file@file-host:5432/file
  status_interval: 5s
  recreate_lost_slot: true
sink:
  batch_max_entries: 100
  batch_max_wait: 200ms
spool:
  txn_memory: 1MiB
masking:
  secret: c029b92d5b6c6b09da680bf2b7835dce0d08a3b9bf1c5c42d232b205a1e785d6
exclude_tables:
  - public.from_file_tmp
skip_unchanged_updates: false
tables:
  - name: public.from_file
    mask: [email]
http:
  listen: 0.0.0.0:9187
log:
  level: warn
`
	tests := []struct {
		name  string
		env   map[string]string
		got   func(*Config) any
		want  any
		other func(*Config) any // a key the environment does not touch
		keeps any               // its value in the file
	}{
		{
			name:  "WALSCRIBE_SOURCE_DSN",
			env:   map[string]string{"WALSCRIBE_SOURCE_DSN": testDSN},
			got:   func(c *Config) any { return c.Source.DSN },
			want:  testDSN,
			other: func(c *Config) any { return c.Source.StatusInterval },
			keeps: 5 * time.Second,
		},
		{
			name:  "WALSCRIBE_SOURCE_STATUS_INTERVAL",
			env:   map[string]string{"WALSCRIBE_SOURCE_STATUS_INTERVAL": "30s"},
			got:   func(c *Config) any { return c.Source.StatusInterval },
			want:  30 * time.Second,
			other: func(c *Config) any { return c.Source.DSN },
			keeps: "postgres://file@file-host:5432/file",
		},
		{
			name:  "WALSCRIBE_SOURCE_RECREATE_LOST_SLOT",
			env:   map[string]string{"WALSCRIBE_SOURCE_RECREATE_LOST_SLOT": "false"},
			got:   func(c *Config) any { return c.Source.RecreateLostSlot },
			want:  false,
			other: func(c *Config) any { return c.Spool.TxnMemory },
			keeps: 1 * MiB,
		},
		{
			name:  "WALSCRIBE_SPOOL_TXN_MEMORY with a unit",
			env:   map[string]string{"WALSCRIBE_SPOOL_TXN_MEMORY": "64MB"},
			got:   func(c *Config) any { return c.Spool.TxnMemory },
			want:  ByteSize(64_000_000),
			other: func(c *Config) any { return c.Source.RecreateLostSlot },
			keeps: true,
		},
		{
			name:  "WALSCRIBE_SPOOL_TXN_MEMORY in bytes",
			env:   map[string]string{"WALSCRIBE_SPOOL_TXN_MEMORY": "262144"},
			got:   func(c *Config) any { return c.Spool.TxnMemory },
			want:  ByteSize(256 * 1024),
			other: func(c *Config) any { return c.Spool.Dir },
			keeps: "",
		},
		{
			name:  "WALSCRIBE_SINK_BATCH_MAX_WAIT",
			env:   map[string]string{"WALSCRIBE_SINK_BATCH_MAX_WAIT": "1s"},
			got:   func(c *Config) any { return c.Sink.BatchMaxWait },
			want:  time.Second,
			other: func(c *Config) any { return c.Sink.BatchMaxEntries },
			keeps: 100,
		},
		{
			name:  "WALSCRIBE_SINK_BATCH_MAX_ENTRIES",
			env:   map[string]string{"WALSCRIBE_SINK_BATCH_MAX_ENTRIES": "20000"},
			got:   func(c *Config) any { return c.Sink.BatchMaxEntries },
			want:  20000,
			other: func(c *Config) any { return c.Sink.BatchMaxWait },
			keeps: 200 * time.Millisecond,
		},
		{
			name:  "WALSCRIBE_TABLES replaces the list",
			env:   map[string]string{"WALSCRIBE_TABLES": "public.orders, billing.invoices,,customers"},
			got:   func(c *Config) any { return tableNames(c) },
			want:  []string{"public.orders", "billing.invoices", "public.customers"},
			other: func(c *Config) any { return c.Log.Level },
			keeps: "warn",
		},
		{
			name:  "WALSCRIBE_EXCLUDE_TABLES replaces the list",
			env:   map[string]string{"WALSCRIBE_EXCLUDE_TABLES": "public.tmp_*, audit_log,,*.scratch"},
			got:   func(c *Config) any { return c.ExcludeTables },
			want:  []string{"public.tmp_*", "public.audit_log", "*.scratch"},
			other: func(c *Config) any { return tableNames(c) },
			keeps: []string{"public.from_file"},
		},
		{
			name:  "empty WALSCRIBE_EXCLUDE_TABLES empties the list",
			env:   map[string]string{"WALSCRIBE_EXCLUDE_TABLES": ""},
			got:   func(c *Config) any { return len(c.ExcludeTables) },
			want:  0,
			other: func(c *Config) any { return c.SkipUnchangedUpdates },
			keeps: false,
		},
		{
			name:  "WALSCRIBE_SKIP_UNCHANGED_UPDATES",
			env:   map[string]string{"WALSCRIBE_SKIP_UNCHANGED_UPDATES": "true"},
			got:   func(c *Config) any { return c.SkipUnchangedUpdates },
			want:  true,
			other: func(c *Config) any { return c.ExcludeTables },
			keeps: []string{"public.from_file_tmp"},
		},
		{
			name:  "WALSCRIBE_MASKING_SECRET",
			env:   map[string]string{"WALSCRIBE_MASKING_SECRET": testSecret},
			got:   func(c *Config) any { return c.Masking.Secret },
			want:  testSecret,
			other: func(c *Config) any { return c.Tables[0].Mask },
			keeps: []string{"email"},
		},
		{
			name:  "empty WALSCRIBE_HTTP_LISTEN turns http off",
			env:   map[string]string{"WALSCRIBE_HTTP_LISTEN": ""},
			got:   func(c *Config) any { return c.HTTP.Listen },
			want:  "",
			other: func(c *Config) any { return c.Log.Level },
			keeps: "warn",
		},
		{
			name:  "WALSCRIBE_HTTP_LISTEN",
			env:   map[string]string{"WALSCRIBE_HTTP_LISTEN": ":0"},
			got:   func(c *Config) any { return c.HTTP.Listen },
			want:  ":0",
			other: func(c *Config) any { return tableNames(c) },
			keeps: []string{"public.from_file"},
		},
		{
			name:  "WALSCRIBE_LOG_LEVEL",
			env:   map[string]string{"WALSCRIBE_LOG_LEVEL": "debug"},
			got:   func(c *Config) any { return c.Log.Level },
			want:  "debug",
			other: func(c *Config) any { return c.HTTP.Listen },
			keeps: "0.0.0.0:9187",
		},
		{
			name:  "WALSCRIBE_SOURCE_SLOT over the default",
			env:   map[string]string{"WALSCRIBE_SOURCE_SLOT": "walscribe_eu"},
			got:   func(c *Config) any { return c.Source.Slot },
			want:  "walscribe_eu",
			other: func(c *Config) any { return c.Source.Publication },
			keeps: Default().Source.Publication,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			path := writeConfig(t, file)

			// Without the variable the file's value holds.
			before, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(tt.got(before), tt.want) {
				t.Fatalf("the file already gives %v: the case proves nothing", tt.want)
			}

			setEnv(t, tt.env)
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(cfg); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("with %v: got %v, want %v", tt.env, got, tt.want)
			}
			if got := tt.other(cfg); !reflect.DeepEqual(got, tt.keeps) {
				t.Errorf("with %v: a key from the file changed to %v, want %v", tt.env, got, tt.keeps)
			}
		})
	}
}

// tableNames lists the names of the tables entries.
func tableNames(c *Config) []string {
	var names []string
	for _, t := range c.Tables {
		names = append(names, t.Name)
	}
	return names
}

func TestEnvVarNames(t *testing.T) {
	// Every key is read from WALSCRIBE_<SECTION>_<KEY>: set each to a value
	// that differs from its default and is valid, and see it arrive.
	values := map[string]string{
		"source.dsn":                testDSN,
		"source.slot":               "slot_b",
		"source.publication":        "pub_b",
		"source.status_interval":    "42s",
		"source.recreate_lost_slot": "true",
		"sink.dsn":                  "host=audit-db dbname=audit user=walscribe",
		"sink.schema":               "audit_b",
		"sink.batch_max_entries":    "123",
		"sink.batch_max_wait":       "250ms",
		"spool.dir":                 t.TempDir(),
		"spool.txn_memory":          "16MiB",
		"context.prefix":            "app",
		"context.max_field_bytes":   "2KiB",
		"context.max_json_bytes":    "16KiB",
		"context.max_event_bytes":   "1MiB",
		"masking.secret":            testSecret,
		"roles.owner":               "audit_owner",
		"roles.reader":              "audit_reader",
		"roles.app":                 "audit_app",
		"roles.revoke_emit_message": "false",
		"skip_unchanged_updates":    "false",
		"http.listen":               "[::1]:9999",
		"http.pprof":                "true",
		"log.level":                 "error",
		"log.format":                "console",
	}
	signer, _, err := integrity.GenerateKey("example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	values["integrity.enabled"] = "true"
	values["integrity.signer_key"] = signer
	values["integrity.signer_key_file"] = ""
	values["integrity.checkpoint_interval"] = "5s"
	values["integrity.checkpoint_dir"] = t.TempDir()
	values["integrity.leaf_hashing"] = "both"
	values["retention.default"] = "400d"
	values["retention.schedule"] = "12h0m0s"
	values["retention.delete_batch"] = "1000"
	values["retention.archive"] = "true"
	values["export.to"] = "s3://audit/walscribe"
	values["export.format"] = "csv"
	values["export.schedule"] = "daily"
	values["export.s3.endpoint"] = "minio.internal:9000"
	values["export.s3.region"] = "eu-west-1"
	values["export.s3.access_key"] = "AKIAEXAMPLE"
	values["export.s3.secret_key"] = "secret-example"
	values["export.s3.insecure"] = "true"
	values["export.s3.part_size"] = "32MiB"
	values["sink.ip_index"] = "true"
	values["api.listen"] = "0.0.0.0:8443"
	values["api.dsn"] = "postgres://reader@replica/app"
	values["api.events_dsn"] = "postgres://app@db/app"
	values["api.restore_dsn"] = "postgres://restorer@db/app"
	values["api.tls_cert_file"] = "/etc/walscribe/tls.crt"
	values["api.tls_key_file"] = "/etc/walscribe/tls.key"
	values["api.secure_cookies"] = "true"
	values["api.pool_size"] = "8"
	values["api.statement_timeout"] = "30s"
	values["api.rate_limit"] = "50"
	values["api.session_ttl"] = "1h0m0s"
	values["watch.webhook_secret"] = "0123456789abcdef0123"
	values["watch.queue_size"] = "64"
	isolateEnv(t)
	t.Setenv("WALSCRIBE_TABLES", "public.orders")
	for _, l := range leaves("", reflect.ValueOf(Default())) {
		v, ok := values[l.key]
		if !ok {
			t.Fatalf("no test value for %s: add one", l.key)
		}
		t.Setenv(envVar(l.key), v)
	}
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range values {
		t.Run(key, func(t *testing.T) {
			got := fieldByKey(t, reflect.ValueOf(*cfg), key)
			if !sameValue(t, got, want) {
				t.Errorf("%s from %s = %v, want %s", key, envVar(key), got.Interface(), want)
			}
		})
	}
}

// fieldByKey returns the field of the Config value v that key, such as
// "sink.batch_max_wait", is read into.
func fieldByKey(t *testing.T, v reflect.Value, key string) reflect.Value {
	t.Helper()
	for name := range strings.SplitSeq(key, ".") {
		found := false
		for i := range v.NumField() {
			if tag(v.Type().Field(i)) == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			t.Fatalf("Config has no key %s", key)
		}
	}
	return v
}

// sameValue reports whether the field holds the value that text (as written
// in a file or the environment) means.
func sameValue(t *testing.T, field reflect.Value, text string) bool {
	t.Helper()
	switch v := field.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		return v == d
	case bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		return v == b
	case ByteSize:
		b, err := ParseByteSize(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		return v == b
	case int:
		n, err := strconv.Atoi(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		return v == n
	case string:
		return v == text
	default:
		t.Fatalf("no comparison for %T", v)
		return false
	}
}

func TestLoadErrors(t *testing.T) {
	const dsn = "source:\n  dsn: " + testDSN + "\n"
	const tables = "tables:\n  - name: public.orders\n"
	const valid = dsn + tables
	const secret = "masking:\n  secret: " + testSecret + "\n"
	tests := []struct {
		name    string
		yaml    string            // the file; nofile for a path that does not exist
		env     map[string]string // set for the test
		want    []string          // substrings of the error
		notWant []string          // what the error must not show
		count   int               // problems reported, when more than one
	}{
		// Strictness: unknown keys are named, with the key meant.
		{
			name: "unknown top-level key",
			yaml: valid + "htpp:\n  listen: :9187\n",
			want: []string{"htpp: unknown key", "did you mean http?"},
		},
		{
			name: "unknown top-level key, nothing close",
			yaml: valid + "colour: red\n",
			want: []string{"colour: unknown key", "the keys here are source, sink, spool, context, masking, roles, integrity, retention, export, exclude_tables, skip_unchanged_updates, tables, http, api, watches, watch, log"},
		},
		{
			name: "role names",
			yaml: valid + "roles:\n  owner: Walscribe-Owner\n  reader: walscribe_owner\n",
			want: []string{`roles.owner: "Walscribe-Owner" is not a plain identifier`, "e.g. walscribe_owner"},
		},
		{
			name: "reader is the owner",
			yaml: valid + "roles:\n  reader: walscribe_owner\n",
			want: []string{`roles.reader: "walscribe_owner" is also roles.owner`},
		},
		{
			name: "app group is the reader",
			yaml: valid + "roles:\n  app: walscribe_reader\n",
			want: []string{`roles.app: "walscribe_reader" is also roles.owner or roles.reader`},
		},
		{
			name: "unknown nested key",
			yaml: valid + "sink:\n  batch_max_entrys: 100\n",
			want: []string{"sink.batch_max_entrys: unknown key", "did you mean batch_max_entries?"},
		},
		{
			name: "unknown key in a table entry",
			yaml: valid + "  - name: public.customers\n    masks: [email]\n",
			want: []string{"tables[1].masks: unknown key", "did you mean mask?"},
		},
		{
			name: "unknown key in a table entry, nothing close",
			yaml: valid + "  - name: public.customers\n    colour: red\n",
			want: []string{"tables[1].colour: unknown key", "the keys here are name, exclude, mask, mask_style, diff, actions, retention, skip_unchanged_updates"},
		},
		{
			name:  "misspelt name in a table entry",
			yaml:  dsn + "tables:\n  - nmae: public.orders\n",
			want:  []string{"tables[0].nmae: unknown key", "did you mean name?", "tables[0].name: required"},
			count: 2,
		},

		// Values of the wrong shape.
		{
			name: "scalar for a section",
			yaml: valid + "sink: audit\n",
			want: []string{"sink: cannot use \"audit\"", "want a section of keys"},
		},
		{
			name: "scalar for the tables list",
			yaml: dsn + "tables: public.orders\n",
			want: []string{"tables: cannot use \"public.orders\"", "want a list of entries like `- name: public.orders`"},
		},
		{
			name: "bare names in the tables list",
			yaml: dsn + "tables: [public.orders]\n",
			want: []string{"tables[0]: cannot use \"public.orders\"", "want an entry like `name: public.orders`"},
		},

		// source.
		{
			name: "missing source.dsn",
			yaml: tables,
			want: []string{"source.dsn: required", "WALSCRIBE_SOURCE_DSN", "postgres://"},
		},
		{
			name:    "unparsable source.dsn keeps its password out",
			yaml:    tables + "source:\n  dsn: postgres://walscribe:s3cret@localhost:99999/app\n",
			want:    []string{"source.dsn: not a valid connection string", "invalid port"},
			notWant: []string{"s3cret"},
		},
		{
			name:    "unparsable key=value source.dsn keeps its password out",
			yaml:    tables + "source:\n  dsn: host=localhost password=s3cret sslmode=sometimes\n",
			want:    []string{"source.dsn: not a valid connection string", "sslmode is invalid", "host=localhost dbname=app"},
			notWant: []string{"s3cret"},
		},
		{
			name: "slot name with capitals and a dash",
			yaml: tables + "source:\n  dsn: " + testDSN + "\n  slot: Walscribe-1\n",
			want: []string{"source.slot: \"Walscribe-1\" is not a valid replication slot name", "lowercase letters, digits and underscores"},
		},
		{
			name: "slot name too long",
			yaml: tables + "source:\n  dsn: " + testDSN + "\n  slot: " + strings.Repeat("s", 64) + "\n",
			want: []string{"source.slot:", "1 to 63"},
		},
		{
			name: "empty slot name",
			yaml: tables + "source:\n  dsn: " + testDSN + "\n  slot: \"\"\n",
			want: []string{"source.slot: \"\" is not a valid replication slot name"},
		},
		{
			name: "publication not an identifier",
			yaml: tables + "source:\n  dsn: " + testDSN + "\n  publication: my-pub\n",
			want: []string{"source.publication: \"my-pub\" is not a plain identifier", "e.g. walscribe"},
		},
		{
			name: "status_interval below range",
			yaml: tables + "source:\n  dsn: " + testDSN + "\n  status_interval: 500ms\n",
			want: []string{"source.status_interval: 500ms is out of range", "from 1s to 60s"},
		},

		// Durations.
		{
			name: "duration without unit",
			yaml: valid + "sink:\n  batch_max_wait: 100\n",
			want: []string{"sink.batch_max_wait: 100 has no unit", "such as 100ms"},
		},
		{
			name: "quoted duration without unit",
			yaml: valid + "sink:\n  batch_max_wait: \"100\"\n",
			want: []string{"sink.batch_max_wait: \"100\" is not a duration", "with a unit, such as 100ms"},
		},
		{
			name: "duration in words",
			yaml: valid + "sink:\n  batch_max_wait: soon\n",
			want: []string{"sink.batch_max_wait: \"soon\" is not a duration", "such as 100ms"},
		},
		{
			name: "duration without unit from the environment",
			yaml: valid,
			env:  map[string]string{"WALSCRIBE_SINK_BATCH_MAX_WAIT": "100"},
			want: []string{"sink.batch_max_wait: \"100\" is not a duration", "with a unit"},
		},
		{
			name: "zero wait",
			yaml: valid + "sink:\n  batch_max_wait: 0s\n",
			want: []string{"sink.batch_max_wait: 0s is out of range", "above 0 and at most 1m"},
		},
		{
			name: "wait above range",
			yaml: valid + "sink:\n  batch_max_wait: 2m\n",
			want: []string{"sink.batch_max_wait: 2m0s is out of range", "at most 1m"},
		},

		// Batch size.
		{
			name: "batch size zero",
			yaml: valid + "sink:\n  batch_max_entries: 0\n",
			want: []string{"sink.batch_max_entries: 0 is out of range", "use 1 to 1000000"},
		},
		{
			name: "batch size negative",
			yaml: valid + "sink:\n  batch_max_entries: -5\n",
			want: []string{"sink.batch_max_entries: -5 is out of range", "use 1 to 1000000"},
		},
		{
			name: "batch size above range",
			yaml: valid + "sink:\n  batch_max_entries: 1000001\n",
			want: []string{"sink.batch_max_entries: 1000001 is out of range", "use 1 to 1000000"},
		},
		{
			name: "batch size with a fraction",
			yaml: valid + "sink:\n  batch_max_entries: 2500.5\n",
			want: []string{"sink.batch_max_entries: cannot use 2500.5", "want a whole number"},
		},
		{
			name: "batch size true",
			yaml: valid + "sink:\n  batch_max_entries: true\n",
			want: []string{"sink.batch_max_entries: cannot use true", "want a whole number"},
		},
		{
			name: "batch size in words from the environment",
			yaml: valid,
			env:  map[string]string{"WALSCRIBE_SINK_BATCH_MAX_ENTRIES": "lots"},
			want: []string{"sink.batch_max_entries: cannot use \"lots\"", "want a whole number"},
		},

		// sink and context identifiers.
		{
			name:    "unparsable sink.dsn",
			yaml:    valid + "sink:\n  dsn: postgres://walscribe:s3cret@audit-db:port/audit\n",
			want:    []string{"sink.dsn: not a valid connection string"},
			notWant: []string{"s3cret"},
		},
		{
			name: "schema with capitals",
			yaml: valid + "sink:\n  schema: Audit\n",
			want: []string{"sink.schema: \"Audit\" is not a plain identifier", "e.g. audit"},
		},
		{
			name: "empty context prefix",
			yaml: valid + "context:\n  prefix: \"\"\n",
			want: []string{"context.prefix: must not be empty", "such as audit"},
		},

		// Tables.
		{
			name: "no tables",
			yaml: dsn,
			want: []string{"tables: no tables to audit", "- name: public.orders", "WALSCRIBE_TABLES=public.orders"},
		},
		{
			name: "empty WALSCRIBE_TABLES",
			yaml: valid,
			env:  map[string]string{"WALSCRIBE_TABLES": " , "},
			want: []string{"tables: no tables to audit"},
		},
		{
			name: "duplicate table",
			yaml: valid + "  - name: public.customers\n  - name: orders\n",
			want: []string{"tables[2].name: public.orders is listed twice (also tables[0])", "remove one"},
		},
		{
			name: "duplicate table from the environment",
			yaml: valid,
			env:  map[string]string{"WALSCRIBE_TABLES": "public.a,public.b,a"},
			want: []string{"tables[2].name: public.a is listed twice (also tables[0])"},
		},
		{
			name: "table name with capitals",
			yaml: dsn + "tables:\n  - name: public.Orders\n",
			want: []string{"tables[0].name: \"public.Orders\" is not a table name", "lowercase unquoted identifiers, e.g. public.orders"},
		},
		{
			name: "table name with three parts",
			yaml: dsn + "tables:\n  - name: app.public.orders\n",
			want: []string{"tables[0].name: \"app.public.orders\" is not a table name", "write schema.table"},
		},
		{
			name: "table name without table",
			yaml: dsn + "tables:\n  - name: public.\n",
			want: []string{"tables[0].name: \"public.\" is not a table name"},
		},
		{
			name: "table without name",
			yaml: dsn + "tables:\n  - name: \"\"\n",
			want: []string{"tables[0].name: required", "e.g. public.orders"},
		},

		// Table patterns and exclude_tables.
		{
			name: "pattern with an unclosed bracket",
			yaml: dsn + "tables:\n  - name: billing.invoice_[0-9\n",
			want: []string{"tables[0].name: \"billing.invoice_[0-9\" is not a valid pattern", "close every [ with ]"},
		},
		{
			name: "pattern with an empty bracket",
			yaml: dsn + "tables:\n  - name: public.a[]\n",
			want: []string{"tables[0].name: \"public.a[]\" is not a valid pattern"},
		},
		{
			name: "pattern with capitals",
			yaml: dsn + "tables:\n  - name: public.Invoice_*\n",
			want: []string{"tables[0].name: \"public.Invoice_*\" is not a table pattern", "capital letter", "e.g. public.*"},
		},
		{
			name: "pattern with a dash",
			yaml: dsn + "tables:\n  - name: public.invoice-*\n",
			want: []string{"tables[0].name: \"public.invoice-*\" is not a table pattern", `has '-'`},
		},
		{
			name: "pattern with an escape",
			yaml: dsn + "tables:\n  - name: 'public.invoice\\*'\n",
			want: []string{"tables[0].name: \"public.invoice\\\\*\" is not a table pattern"},
		},
		{
			name: "pattern with three parts",
			yaml: dsn + "tables:\n  - name: app.public.*\n",
			want: []string{"tables[0].name: \"app.public.*\" is not a table pattern", "has a dot"},
		},
		{
			name: "pattern without table part",
			yaml: dsn + "tables:\n  - name: billing.\n",
			want: []string{"tables[0].name: \"billing.\" is not a table name"},
		},
		{
			name: "duplicate pattern, once without schema",
			yaml: dsn + "tables:\n  - name: public.*\n  - name: public.orders\n  - name: \"*\"\n",
			want: []string{"tables[2].name: public.* is listed twice (also tables[0])", "merge their rules"},
		},
		{
			name: "unquoted pattern that starts with a star",
			yaml: dsn + "tables:\n  - name: *.audit_log\n",
			want: []string{"not valid YAML"},
		},
		{
			name:  "exclude_tables entries",
			yaml:  valid + "exclude_tables:\n  - public.Sessions\n  - tmp_[a\n  - \"\"\n  - public.tmp_*\n  - tmp_*\n",
			want:  []string{"exclude_tables[0]: \"public.Sessions\" is not a table name", "exclude_tables[1]: \"tmp_[a\" is not a valid pattern", "exclude_tables[2]: empty", "exclude_tables[4]: public.tmp_* is listed twice (also exclude_tables[3])"},
			count: 4,
		},
		{
			name: "exclude_tables not a list",
			yaml: valid + "exclude_tables: public.sessions\n",
			want: []string{"exclude_tables: cannot use \"public.sessions\": want a list such as [a, b]"},
		},
		{
			name: "bad pattern in WALSCRIBE_EXCLUDE_TABLES",
			yaml: valid,
			env:  map[string]string{"WALSCRIBE_EXCLUDE_TABLES": "public.ok,Bad"},
			want: []string{"exclude_tables[1]: \"Bad\" is not a table name"},
		},

		// Columns.
		{
			name:  "empty and repeated column names",
			yaml:  dsn + "tables:\n  - name: public.users\n    exclude: [\"\", a, a]\n    mask: [b, \" \"]\n    mask_style: redact\n",
			want:  []string{"tables[0].exclude[0]: empty column name", "tables[0].exclude[2]: a is listed twice (also tables[0].exclude[1])", "tables[0].mask[1]: empty column name"},
			count: 3,
		},
		{
			name: "column excluded and masked",
			yaml: dsn + "tables:\n  - name: public.users\n    exclude: [password_hash]\n    mask: [email, password_hash]\n    mask_style: redact\n",
			want: []string{"tables[0].mask[1]: password_hash is also in tables[0].exclude", "remove it from one of the two lists"},
		},
		{
			name: "exclude not a list",
			yaml: dsn + "tables:\n  - name: public.users\n    exclude: password_hash\n",
			want: []string{"tables[0].exclude: cannot use \"password_hash\": want a list such as [a, b]"},
		},

		// mask_style.
		{
			name: "mask_style misspelt",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email]\n    mask_style: redcat\n" + secret,
			want: []string{"tables[0].mask_style: \"redcat\" is not allowed", "did you mean redact?"},
		},
		{
			name: "mask_style nothing close",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email]\n    mask_style: encrypt\n" + secret,
			want: []string{"tables[0].mask_style: \"encrypt\" is not allowed", "use one of hash, redact"},
		},
		{
			name: "mask_style empty",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email]\n    mask_style: \"\"\n" + secret,
			want: []string{"tables[0].mask_style: cannot use \"\"", "want hash or redact", "leave the key out for hash"},
		},
		{
			name: "mask_style a list",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email]\n    mask_style: [redact]\n" + secret,
			want: []string{"tables[0].mask_style: cannot use a list", "{card_number: redact}"},
		},
		{
			name: "mask_style map word misspelt",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email, phone]\n    mask_style: {phone: hsah}\n" + secret,
			want: []string{"tables[0].mask_style.phone: \"hsah\" is not allowed", "did you mean hash?"},
		},
		{
			name: "mask_style map value not a word",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email, phone]\n    mask_style: {phone: [redact]}\n" + secret,
			want: []string{"tables[0].mask_style: cannot use a list for column phone", "want hash or redact"},
		},
		{
			name: "mask_style map value left out",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email, phone]\n    mask_style: {phone: }\n" + secret,
			want: []string{"tables[0].mask_style: cannot use nothing for column phone: want hash or redact"},
		},
		{
			name: "mask_style map names a column not masked",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email]\n    mask_style: {email: redact, phone: redact}\n" + secret,
			want: []string{"tables[0].mask_style.phone: phone is not in tables[0].mask", "add it to mask, or remove it from mask_style"},
		},

		// diff, actions, retention, skip_unchanged_updates.
		{
			name: "diff misspelt",
			yaml: dsn + "tables:\n  - name: public.users\n    diff: change\n",
			want: []string{"tables[0].diff: \"change\" is not allowed", "did you mean changes?"},
		},
		{
			name: "diff nothing close",
			yaml: dsn + "tables:\n  - name: public.users\n    diff: none\n",
			want: []string{"tables[0].diff: \"none\" is not allowed", "use one of full, changes"},
		},
		{
			name:  "actions misspelt and repeated",
			yaml:  dsn + "tables:\n  - name: public.users\n    actions: [insert, updte, Delete, insert, merge]\n",
			want:  []string{"tables[0].actions[1]: \"updte\" is not allowed: did you mean update?", "tables[0].actions[2]: \"Delete\" is not allowed: did you mean delete?", "tables[0].actions[3]: insert is listed twice (also tables[0].actions[0])", "tables[0].actions[4]: \"merge\" is not allowed: use one of insert, update, delete, truncate"},
			count: 4,
		},
		{
			name: "actions empty",
			yaml: dsn + "tables:\n  - name: public.users\n    actions: []\n",
			want: []string{"tables[0].actions: empty, so nothing would be recorded", "leave the key out to record all four", "exclude_tables"},
		},
		{
			name: "actions one word",
			yaml: dsn + "tables:\n  - name: public.users\n    actions: insert\n",
			want: []string{"tables[0].actions: cannot use \"insert\": want a list such as [a, b]"},
		},
		{
			name:  "retention formats",
			yaml:  dsn + "tables:\n  - name: public.a\n    retention: 90\n  - name: public.b\n    retention: 90 days\n  - name: public.c\n    retention: 0d\n  - name: public.d\n    retention: 1h\n  - name: public.e\n    retention: 7Y\n  - name: public.f\n    retention: 1.5y\n",
			want:  []string{"tables[0].retention: \"90\" is not a retention period", "tables[1].retention: \"90 days\"", "tables[2].retention: \"0d\"", "tables[3].retention: \"1h\"", "tables[4].retention: \"7Y\"", "tables[5].retention: \"1.5y\"", "whole number above 0 and a unit d (days), w (weeks), m (months) or y (years), at most 100 years, e.g. 90d or 7y"},
			count: 6,
		},
		{
			name:  "skip_unchanged_updates not true or false",
			yaml:  dsn + "tables:\n  - name: public.users\n    skip_unchanged_updates: 2\nskip_unchanged_updates: maybe\n",
			want:  []string{"tables[0].skip_unchanged_updates: cannot use 2: want true or false", "skip_unchanged_updates: cannot use \"maybe\": want true or false"},
			count: 2,
		},
		{
			name: "WALSCRIBE_SKIP_UNCHANGED_UPDATES not true or false",
			yaml: valid,
			env:  map[string]string{"WALSCRIBE_SKIP_UNCHANGED_UPDATES": "yes"},
			want: []string{"skip_unchanged_updates: cannot use \"yes\": want true or false"},
		},

		// masking.secret.
		{
			name: "hash mask without secret",
			yaml: dsn + "tables:\n  - name: public.orders\n  - name: public.users\n    mask: [phone, email]\n    mask_style: {phone: redact}\n",
			want: []string{"masking.secret: required because tables[1].mask masks email with style hash", "WALSCRIBE_MASKING_SECRET", "openssl rand -hex 32", "mask_style: redact"},
		},
		{
			name: "hash mask with an empty secret from the environment",
			yaml: dsn + "tables:\n  - name: public.users\n    mask: [email]\nmasking:\n  secret: " + testSecret + "\n",
			env:  map[string]string{"WALSCRIBE_MASKING_SECRET": ""},
			want: []string{"masking.secret: required because tables[0].mask masks email with style hash"},
		},
		// A set secret must be a key (config/masking_test.go has the
		// rules); each refusal names the key and says how to make one.
		{
			name:    "short passphrase",
			yaml:    valid + "masking:\n  secret: sh0rt-s3cret\n",
			want:    []string{"masking.secret: read as base64 it is 9 bytes, too short", "walscribe keygen", "openssl rand -hex 32", "WALSCRIBE_MASKING_SECRET", "values masked under the new key differ"},
			notWant: []string{"sh0rt-s3cret"},
		},
		{
			name:    "long passphrase from the environment",
			yaml:    dsn + "tables:\n  - name: public.users\n    mask: [email]\n",
			env:     map[string]string{"WALSCRIBE_MASKING_SECRET": "a secret of at least sixteen bytes"},
			want:    []string{"masking.secret: not a key", "walscribe keygen"},
			notWant: []string{"a secret of at least"},
		},
		{
			name:    "sixteen a",
			yaml:    valid + "masking:\n  secret: aaaaaaaaaaaaaaaa\n",
			want:    []string{"masking.secret: read as hex it is 8 bytes, too short", "at least 32 random bytes", "walscribe keygen"},
			notWant: []string{"aaaaaaaaaaaaaaaa"},
		},
		{
			name:    "short hex",
			yaml:    valid + "masking:\n  secret: \"0123456789abcdef0123456789abcdef\"\n",
			want:    []string{"masking.secret: read as hex it is 16 bytes, too short", "walscribe keygen"},
			notWant: []string{"0123456789abcdef"},
		},
		{
			name:    "one byte repeated",
			yaml:    valid,
			env:     map[string]string{"WALSCRIBE_MASKING_SECRET": strings.Repeat("a", 64)},
			want:    []string{"masking.secret: read as hex its 32 bytes use only 1 of the 256 byte values", "not a random key", "walscribe keygen"},
			notWant: []string{strings.Repeat("a", 16)},
		},
		{
			name:    "hex of a passphrase",
			yaml:    valid,
			env:     map[string]string{"WALSCRIBE_MASKING_SECRET": hex.EncodeToString([]byte("our masking passphrase, 2024 edition"))},
			want:    []string{"masking.secret: read as hex its 36 bytes are all printable text", "encoded passphrase", "walscribe keygen"},
			notWant: []string{hex.EncodeToString([]byte("our masking"))},
		},
		{
			name: "masking not a section",
			yaml: valid + "masking: " + testSecret + "\n",
			want: []string{"masking: cannot use \"" + testSecret + "\": want a section of keys"},
		},

		// http and log.
		{
			name: "listen without port",
			yaml: valid + "http:\n  listen: localhost\n",
			want: []string{"http.listen: \"localhost\" is not host:port", "127.0.0.1:9187", `or "" to turn the HTTP server off`},
		},
		{
			name: "listen on a bare port number",
			yaml: valid + "http:\n  listen: 9187\n",
			want: []string{"http.listen: \"9187\" is not host:port"},
		},
		{
			name: "listen port out of range",
			yaml: valid + "http:\n  listen: :99999\n",
			want: []string{"http.listen: \":99999\" is not host:port"},
		},
		{
			name: "log level warning",
			yaml: valid + "log:\n  level: warning\n",
			want: []string{"log.level: \"warning\" is not allowed", "did you mean warn?"},
		},
		{
			name: "log level in capitals",
			yaml: valid + "log:\n  level: INFO\n",
			want: []string{"log.level: \"INFO\" is not allowed", "did you mean info?"},
		},
		{
			name: "log level misspelt",
			yaml: valid + "log:\n  level: eror\n",
			want: []string{"log.level: \"eror\" is not allowed", "did you mean error?"},
		},
		{
			name: "log level nothing close",
			yaml: valid + "log:\n  level: verbose\n",
			want: []string{"log.level: \"verbose\" is not allowed", "use one of debug, info, warn, error"},
		},
		{
			name: "log format",
			yaml: valid + "log:\n  format: text\n",
			want: []string{"log.format: \"text\" is not allowed", "use one of auto, json, console"},
		},

		// The file itself.
		{
			name: "invalid YAML",
			yaml: valid + "sink:\n  schema: [audit\n",
			want: []string{"not valid YAML", "line"},
		},
		{
			name: "section written twice",
			yaml: valid + "source:\n  slot: other\n",
			want: []string{"not valid YAML", "\"source\" already defined"},
		},
		{
			name: "tab indentation",
			yaml: "source:\n\tdsn: " + testDSN + "\n",
			want: []string{"not valid YAML", "tab"},
		},
		{
			name: "missing file",
			yaml: nofile,
			want: []string{"file does not exist", "fix the path", "WALSCRIBE_"},
		},

		// Several problems at once: all of them, counted, each on its line.
		{
			name: "several problems",
			yaml: `
source:
  slot: Bad-Slot
sink:
  batch_max_entries: 0
  batch_max_wait: soon
  bacth_max_wait: 1s
tables:
  - name: orders
  - name: public.orders
log:
  level: warning
`,
			want: []string{
				"7 problems:",
				"sink.bacth_max_wait: unknown key",
				"sink.batch_max_wait: \"soon\" is not a duration",
				"source.dsn: required",
				"source.slot: \"Bad-Slot\"",
				"sink.batch_max_entries: 0 is out of range",
				"tables[1].name: public.orders is listed twice",
				"log.level: \"warning\"",
			},
			count: 7,
		},
		{
			name:  "empty file",
			yaml:  "",
			want:  []string{"2 problems:", "source.dsn: required", "tables: no tables to audit"},
			count: 2,
		},
	}

	// keyLine is how every problem line starts: the key, then ": ".
	keyLine := regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: \S`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			setEnv(t, tt.env)
			path := filepath.Join(t.TempDir(), "missing.yaml")
			if tt.yaml != nofile {
				path = writeConfig(t, tt.yaml)
			}
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded with %+v, want an error", *cfg)
			}
			if cfg != nil {
				t.Errorf("Load returned a config with its error: %+v", *cfg)
			}
			msg := err.Error()
			if prefix := "config " + path + ": "; !strings.HasPrefix(msg, prefix) {
				t.Errorf("error does not start with %q:\n%s", prefix, msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("error shows %q:\n%s", w, msg)
				}
			}

			if tt.count > 1 {
				lines := strings.Split(msg, "\n")
				if len(lines) != tt.count+1 {
					t.Errorf("error has %d lines, want a count and %d problems:\n%s", len(lines), tt.count, msg)
				}
				for _, l := range lines[1:] {
					if !keyLine.MatchString(l) {
						t.Errorf("problem %q does not start with its key", l)
					}
				}
			} else if strings.Contains(msg, " problems:\n") {
				t.Errorf("want a single problem, got:\n%s", msg)
			}
		})
	}
}

// nofile in TestLoadErrors stands for a path with no file.
const nofile = "\x00nofile"

func TestLoadMissingFileIsNotExist(t *testing.T) {
	isolateEnv(t)
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want an error that is fs.ErrNotExist", err)
	}
}

func TestLoadUnreadableFile(t *testing.T) {
	isolateEnv(t)
	// A directory cannot be read as a file, even by root.
	_, err := Load(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "cannot read the file") {
		t.Errorf("Load of a directory: %v, want \"cannot read the file\"", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{"as loaded", func(*Config) {}, ""},
		{"slot emptied", func(c *Config) { c.Source.Slot = "" }, "source.slot:"},
		{"no tables", func(c *Config) { c.Tables = nil }, "tables: no tables to audit"},
		{"http off", func(c *Config) { c.HTTP.Listen = "" }, ""},
		{"status interval too long", func(c *Config) { c.Source.StatusInterval = 2 * time.Minute }, "source.status_interval: 2m0s is out of range"},
		// A Table built by hand may leave the defaults zero.
		{"entry with zero defaults", func(c *Config) {
			c.Tables = []Table{{Name: "public.orders", Mask: []string{"email"}, MaskStyle: MaskStyle{PerColumn: map[string]string{"email": "redact"}}}}
		}, ""},
		{"hash mask added", func(c *Config) { c.Tables[0].Mask = []string{"email"} }, "masking.secret: required because tables[0].mask masks email with style hash"},
		{"hash mask added with a secret", func(c *Config) { c.Tables[0].Mask = []string{"email"}; c.Masking.Secret = testSecret }, ""},
		{"redact mask added", func(c *Config) { c.Tables[0].Mask = []string{"email"}; c.Tables[0].MaskStyle.Default = "redact" }, ""},
		{"actions emptied", func(c *Config) { c.Tables[0].Actions = []string{} }, "tables[0].actions: empty"},
		{"actions nil", func(c *Config) { c.Tables[0].Actions = nil }, ""},
		{"diff emptied", func(c *Config) { c.Tables[0].Diff = "" }, ""},
		{"pattern", func(c *Config) { c.Tables[0].Name = "*.audit_log" }, ""},
		{"exclude_tables bad", func(c *Config) { c.ExcludeTables = []string{"public.[x"} }, "exclude_tables[0]: \"public.[x\" is not a valid pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			cfg, err := Load(writeConfig(t, minimal))
			if err != nil {
				t.Fatal(err)
			}
			tt.change(cfg)
			err = cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestDefaultIsIncomplete(t *testing.T) {
	// Default leaves out exactly the keys with no sensible default, and
	// Validate asks for them.
	d := Default()
	err := d.Validate()
	if err == nil {
		t.Fatal("Default().Validate() = nil, want source.dsn and tables required")
	}
	for _, w := range []string{"2 problems:", "source.dsn: required", "tables: no tables"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Default().Validate() lacks %q:\n%v", w, err)
		}
	}
}

// TestRetentionHoldsFromEnvironment: WALSCRIBE_RETENTION_HOLDS takes a
// comma-separated list, and a bad
// pattern is named by its key.
func TestRetentionHoldsFromEnvironment(t *testing.T) {
	isolateEnv(t)
	t.Setenv("WALSCRIBE_SOURCE_DSN", testDSN)
	t.Setenv("WALSCRIBE_TABLES", "public.orders")
	t.Setenv("WALSCRIBE_RETENTION_HOLDS", " public.invoices, *.* ,")
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Retention.Holds, ","); got != "public.invoices,*.*" {
		t.Errorf("retention.holds = %q", got)
	}
	t.Setenv("WALSCRIBE_RETENTION_HOLDS", "public.[")
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "retention.holds[0]") {
		t.Errorf("a bad hold pattern: %v", err)
	}
}
