package config

import (
	"fmt"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// examplePath is the example configuration shipped with walscribe.
const examplePath = "../deploy/walscribe.example.yaml"

// exampleEnv is what a deployment of the example sets in the environment:
// the masking secret, which the example keeps out of the file.
var exampleEnv = map[string]string{"WALSCRIBE_MASKING_SECRET": testSecret}

// TestExampleConfig loads the shipped example and checks it against the
// file as a plain YAML parser reads it: every key is there, documented with
// its default and its environment variable, and arrives in the Config with
// the value written (or, for the secret, the value of its variable).
func TestExampleConfig(t *testing.T) {
	isolateEnv(t)
	setEnv(t, exampleEnv)
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
			want := value.Value
			if env, ok := exampleEnv[envVar(l.key)]; ok {
				if value.Value != "" {
					t.Errorf("%s: the example writes %q into the file, want \"\" and the secret in %s", l.key, value.Value, envVar(l.key))
				}
				want = env
			}
			if got := fieldByKey(t, reflect.ValueOf(*cfg), l.key); !sameValue(t, got, want) {
				t.Errorf("%s: the example says %q, Load gives %v", l.key, want, got.Interface())
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
		// Every key of an entry is explained in the comment.
		for i := range reflect.TypeFor[Table]().NumField() {
			name := tag(reflect.TypeFor[Table]().Field(i))
			if !strings.Contains(key.HeadComment, name) {
				t.Errorf("the comment on tables does not explain %s", name)
			}
		}

		// Each entry as a plain YAML parser reads it, with the documented
		// defaults for what it leaves out.
		var want []Table
		shows := map[string]bool{}
		for _, entry := range value.Content {
			var e struct {
				Name                 string    `yaml:"name"`
				Exclude              []string  `yaml:"exclude"`
				Mask                 []string  `yaml:"mask"`
				MaskStyle            yaml.Node `yaml:"mask_style"`
				Diff                 string    `yaml:"diff"`
				Actions              []string  `yaml:"actions"`
				Retention            string    `yaml:"retention"`
				SkipUnchangedUpdates *bool     `yaml:"skip_unchanged_updates"`
			}
			if err := entry.Decode(&e); err != nil {
				t.Fatal(err)
			}
			tb := loaded(e.Name)
			if !strings.Contains(e.Name, ".") {
				tb.Name = "public." + e.Name
			}
			tb.Exclude, tb.Mask, tb.Retention = e.Exclude, e.Mask, e.Retention
			if e.Diff != "" {
				tb.Diff = e.Diff
			}
			if e.Actions != nil {
				tb.Actions = e.Actions
			}
			if e.SkipUnchangedUpdates != nil {
				tb.SkipUnchangedUpdates = e.SkipUnchangedUpdates
			} else {
				tb.SkipUnchangedUpdates = ptr(cfg.SkipUnchangedUpdates)
			}
			switch e.MaskStyle.Kind {
			case yaml.ScalarNode:
				tb.MaskStyle.Default = e.MaskStyle.Value
				shows["mask_style word"] = true
			case yaml.MappingNode:
				if err := e.MaskStyle.Decode(&tb.MaskStyle.PerColumn); err != nil {
					t.Fatal(err)
				}
				shows["mask_style map"] = true
			}
			want = append(want, tb)

			shows["pattern"] = shows["pattern"] || strings.ContainsAny(e.Name, "*?[")
			shows["exclude"] = shows["exclude"] || len(e.Exclude) > 0
			shows["mask"] = shows["mask"] || len(e.Mask) > 0
			shows["diff: changes"] = shows["diff: changes"] || e.Diff == "changes"
			shows["actions"] = shows["actions"] || len(e.Actions) > 0
			shows["retention"] = shows["retention"] || e.Retention != ""
			shows["skip_unchanged_updates"] = shows["skip_unchanged_updates"] || e.SkipUnchangedUpdates != nil
		}
		for _, feature := range []string{"pattern", "exclude", "mask", "mask_style word", "mask_style map", "diff: changes", "actions", "retention", "skip_unchanged_updates"} {
			if !shows[feature] {
				t.Errorf("no entry of the example shows %s", feature)
			}
		}
		if !reflect.DeepEqual(cfg.Tables, want) {
			t.Errorf("tables: the example says%s\nLoad gives%s", showTables(want), showTables(cfg.Tables))
		}
		if !cfg.HasHashMask() {
			t.Errorf("the example hashes no column, so it does not show why masking.secret is needed")
		}
	})

	t.Run("exclude_tables", func(t *testing.T) {
		key, value := lookup(root, "exclude_tables")
		if key == nil || value.Kind != yaml.SequenceNode {
			t.Fatal("the example has no exclude_tables list")
		}
		for _, w := range []string{excludeTablesEnv, "Default: none"} {
			if !strings.Contains(key.HeadComment, w) {
				t.Errorf("the comment on exclude_tables does not say %q:\n%s", w, key.HeadComment)
			}
		}
		var names []string
		if err := value.Decode(&names); err != nil {
			t.Fatal(err)
		}
		if len(names) == 0 || !slices.ContainsFunc(names, func(n string) bool { return strings.ContainsAny(n, "*?[") }) {
			t.Errorf("exclude_tables %q: want a few entries, one of them a pattern", names)
		}
		if !reflect.DeepEqual(cfg.ExcludeTables, names) {
			t.Errorf("exclude_tables: the example says %q, Load gives %q", names, cfg.ExcludeTables)
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

// TestExampleConfigNeedsSecret loads the example as it is shipped, with
// nothing in the environment: the one thing missing is the masking secret,
// and the error says where to put it.
func TestExampleConfigNeedsSecret(t *testing.T) {
	isolateEnv(t)
	_, err := Load(examplePath)
	if err == nil {
		t.Fatal("the example loads without a masking secret, though it hashes columns")
	}
	msg := err.Error()
	for _, w := range []string{"masking.secret: required", "WALSCRIBE_MASKING_SECRET", "openssl rand -hex 32"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, " problems:\n") {
		t.Errorf("want only the secret missing, got:\n%s", msg)
	}
}

// TestExampleConfigWithEnvironment loads the example as a deployment would,
// with secrets and overrides in the environment.
func TestExampleConfigWithEnvironment(t *testing.T) {
	isolateEnv(t)
	const dsn = "postgres://walscribe:s3cret@db.internal:5432/app?sslmode=verify-full"
	t.Setenv("WALSCRIBE_SOURCE_DSN", dsn)
	const key = "ABZiGDxtwfbtCZIWBwEjfDB2VdmwUvGI7x1NDVCe6Js=" // base64, as openssl rand -base64 32 prints it
	t.Setenv("WALSCRIBE_MASKING_SECRET", key)
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
	if r := fmt.Sprint(cfg.Redacted()); strings.Contains(r, "s3cret") || strings.Contains(r, key[:16]) {
		t.Errorf("Redacted() shows a secret: %v", cfg.Redacted())
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
