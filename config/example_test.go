package config

import (
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// examplePath is the example configuration shipped with walscribe.
const examplePath = "../deploy/walscribe.example.yaml"

// TestExampleConfig loads the shipped example and checks it against the
// file as a plain YAML parser reads it: every key is there, documented with
// its default and its environment variable, and arrives in the Config with
// the value written.
func TestExampleConfig(t *testing.T) {
	isolateEnv(t)
	cfg, err := Load(examplePath)
	if err != nil {
		t.Fatalf("the example config does not load: %v", err)
	}
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatalf("the example is not one YAML mapping")
	}
	root := doc.Content[0]

	// The keys Validate asks for when nothing sets them have no default.
	required := map[string]bool{}
	d := Default()
	for _, p := range d.problems() {
		required[p.key] = true
	}

	for _, l := range leaves("", reflect.ValueOf(Default())) {
		t.Run(l.key, func(t *testing.T) {
			key, value := lookup(root, l.key)
			if key == nil {
				t.Fatalf("the example does not show %s", l.key)
			}
			doc := key.HeadComment
			if !strings.Contains(doc, envVar(l.key)) {
				t.Errorf("the comment on %s does not name %s:\n%s", l.key, envVar(l.key), doc)
			}
			wantDefault := "Default: " + showDefault(l.value)
			if required[l.key] {
				wantDefault = "Default: none, required"
			}
			if !strings.Contains(doc, wantDefault) {
				t.Errorf("the comment on %s does not say %q:\n%s", l.key, wantDefault, doc)
			}
			if value.Kind != yaml.ScalarNode {
				t.Fatalf("%s is not a single value in the example", l.key)
			}
			if got := fieldByKey(t, reflect.ValueOf(*cfg), l.key); !sameValue(t, got, value.Value) {
				t.Errorf("%s: the example says %q, Load gives %v", l.key, value.Value, got.Interface())
			}
		})
	}

	t.Run("tables", func(t *testing.T) {
		key, value := lookup(root, "tables")
		if key == nil || value.Kind != yaml.SequenceNode {
			t.Fatal("the example has no tables list")
		}
		for _, w := range []string{tablesEnv, "Default: none, required"} {
			if !strings.Contains(key.HeadComment, w) {
				t.Errorf("the comment on tables does not say %q:\n%s", w, key.HeadComment)
			}
		}
		var want []Table
		for _, entry := range value.Content {
			var tb struct{ Name string }
			if err := entry.Decode(&tb); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(tb.Name, ".") {
				tb.Name = "public." + tb.Name
			}
			want = append(want, Table{Name: tb.Name})
		}
		if len(want) < 2 {
			t.Errorf("the example lists %d tables, want a few to show the list", len(want))
		}
		if !reflect.DeepEqual(cfg.Tables, want) {
			t.Errorf("tables: the example says %v, Load gives %v", want, cfg.Tables)
		}
	})

	t.Run("source.dsn is realistic", func(t *testing.T) {
		if !strings.HasPrefix(cfg.Source.DSN, "postgres://") || !strings.Contains(cfg.Source.DSN, "sslmode=") {
			t.Errorf("source.dsn %q: want a URL with an sslmode, as users write it", cfg.Source.DSN)
		}
		u, err := url.Parse(cfg.Source.DSN)
		if err != nil {
			t.Fatal(err)
		}
		if _, hasPassword := u.User.Password(); hasPassword || u.Query().Has("password") {
			t.Errorf("source.dsn %q: the example must not suggest writing a password into the file", cfg.Source.DSN)
		}
	})
}

// TestExampleConfigWithEnvironment loads the example as a deployment would,
// with secrets and overrides in the environment.
func TestExampleConfigWithEnvironment(t *testing.T) {
	isolateEnv(t)
	const dsn = "postgres://walscribe:s3cret@db.internal:5432/app?sslmode=verify-full"
	t.Setenv("WALSCRIBE_SOURCE_DSN", dsn)
	t.Setenv("WALSCRIBE_HTTP_LISTEN", ":9187")
	cfg, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.DSN != dsn || cfg.SinkDSN() != dsn {
		t.Errorf("source.dsn = %q, SinkDSN() = %q, want both %q", cfg.Source.DSN, cfg.SinkDSN(), dsn)
	}
	if cfg.HTTP.Listen != ":9187" {
		t.Errorf("http.listen = %q, want :9187", cfg.HTTP.Listen)
	}
	if strings.Contains(fmt.Sprint(cfg.Redacted()), "s3cret") {
		t.Errorf("Redacted() shows the password: %v", cfg.Redacted())
	}
}

// lookup finds key, such as "sink.batch_max_wait", in a YAML mapping and
// returns its key node (which carries the comment above it) and value node.
func lookup(mapping *yaml.Node, key string) (k, v *yaml.Node) {
	node := mapping
	for name := range strings.SplitSeq(key, ".") {
		if node == nil || node.Kind != yaml.MappingNode {
			return nil, nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == name {
				k, next = node.Content[i], node.Content[i+1]
				break
			}
		}
		if next == nil {
			return nil, nil
		}
		node = next
	}
	return k, node
}

// showDefault writes a default as the example's comments do.
func showDefault(v any) string {
	switch v := v.(type) {
	case time.Duration:
		return v.String()
	case string:
		if v == "" {
			return `""`
		}
		return v
	default:
		return fmt.Sprint(v)
	}
}
