// Package config loads walscribe's configuration: a YAML file, overridden key
// by key from the environment, on top of a default for every key.
//
// Every key has an environment variable named WALSCRIBE_<SECTION>_<KEY>, for
// example WALSCRIBE_SOURCE_DSN for source.dsn and WALSCRIBE_SINK_BATCH_MAX_WAIT
// for sink.batch_max_wait. The environment wins over the file. A variable that
// is set but empty counts as set, so WALSCRIBE_HTTP_LISTEN= disables the HTTP
// server. WALSCRIBE_TABLES takes comma-separated table names
// ("public.orders,public.customers") and replaces the file's tables list.
//
// Loading is strict: a key walscribe does not know is an error, so a typo
// cannot silently fall back to a default. All problems are reported together,
// one per line, each starting with the key it concerns (list entries count
// from 0, as in tables[1].name) and saying how to fix it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// Config is walscribe's whole configuration. Load returns it defaulted and
// validated; cmd maps it onto each package's own configuration.
type Config struct {
	Source  Source  `mapstructure:"source"`
	Sink    Sink    `mapstructure:"sink"`
	Context Context `mapstructure:"context"`
	Tables  []Table `mapstructure:"tables"`
	HTTP    HTTP    `mapstructure:"http"`
	Log     Log     `mapstructure:"log"`
}

// Source is the database whose changes are audited, read through logical
// replication.
type Source struct {
	// DSN is the connection string, as a URL or key=value pairs (source.dsn).
	// Required.
	DSN string `mapstructure:"dsn"`
	// Slot is the replication slot name (source.slot): 1 to 63 lowercase
	// letters, digits and underscores. Default "walscribe".
	Slot string `mapstructure:"slot"`
	// Publication is the publication to stream (source.publication), a plain
	// identifier. Default "walscribe".
	Publication string `mapstructure:"publication"`
	// StatusInterval is how often the acknowledged position is reported to
	// the server (source.status_interval), 1s to 60s. Default 10s.
	StatusInterval time.Duration `mapstructure:"status_interval"`
}

// Sink is where audit entries are written.
type Sink struct {
	// DSN is the connection string of the audit database (sink.dsn). Default
	// "": the source database. Use SinkDSN for the effective value.
	DSN string `mapstructure:"dsn"`
	// Schema holds the audit tables (sink.schema), a plain identifier.
	// Default "audit".
	Schema string `mapstructure:"schema"`
	// BatchMaxEntries is the most entries written in one transaction
	// (sink.batch_max_entries), 1 to 1000000. Default 5000.
	BatchMaxEntries int `mapstructure:"batch_max_entries"`
	// BatchMaxWait is the longest an entry waits before its batch is written
	// (sink.batch_max_wait), above 0 and at most 1m. Default 100ms.
	BatchMaxWait time.Duration `mapstructure:"batch_max_wait"`
}

// Context describes how applications attach context (who, why) to their
// transactions.
type Context struct {
	// Prefix is the custom-variable prefix applications set, as in
	// SET LOCAL audit.actor_id = '42' (context.prefix), a plain identifier.
	// Default "audit".
	Prefix string `mapstructure:"prefix"`
}

// Table is one audited table.
type Table struct {
	// Name is "schema.table" (tables[i].name), in lowercase unquoted
	// identifiers. Load turns a name without a schema into "public.<name>".
	// Required, and listed once.
	Name string `mapstructure:"name"`
}

// HTTP is the server for /metrics, /healthz and /readyz.
type HTTP struct {
	// Listen is the host:port to listen on (http.listen), or "" for no
	// server. Default "127.0.0.1:9187".
	Listen string `mapstructure:"listen"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error (log.level). Default "info".
	Level string `mapstructure:"level"`
	// Format is auto, json or console (log.format); auto means console when
	// stderr is a terminal and json otherwise. Default "auto".
	Format string `mapstructure:"format"`
}

// Default returns the value of every key that neither the file nor the
// environment sets. It has no source DSN and no tables, which Validate
// requires.
func Default() Config {
	return Config{
		Source: Source{
			Slot:           "walscribe",
			Publication:    "walscribe",
			StatusInterval: 10 * time.Second,
		},
		Sink: Sink{
			Schema:          "audit",
			BatchMaxEntries: 5000,
			BatchMaxWait:    100 * time.Millisecond,
		},
		Context: Context{Prefix: "audit"},
		HTTP:    HTTP{Listen: "127.0.0.1:9187"},
		Log:     Log{Level: "info", Format: "auto"},
	}
}

// envPrefix starts every environment variable; tablesEnv lists the tables.
const (
	envPrefix = "WALSCRIBE"
	tablesEnv = envPrefix + "_TABLES"
)

// envVar is the environment variable for a key: source.dsn is
// WALSCRIBE_SOURCE_DSN.
func envVar(key string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Load reads the YAML file at path, or no file when path is "", applies the
// environment over it and the defaults under it, and validates the result.
// The error lists every problem found, one per line.
func Load(path string) (*Config, error) {
	where := path
	if path == "" {
		where = "(no file: defaults and environment)"
	}
	cfg, err := load(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", where, err)
	}
	return cfg, nil
}

func load(path string) (*Config, error) {
	v := viper.New()
	v.AllowEmptyEnv(true)
	for _, l := range leaves("", reflect.ValueOf(Default())) {
		v.SetDefault(l.key, l.value)
		if err := v.BindEnv(l.key, envVar(l.key)); err != nil {
			return nil, fmt.Errorf("bind %s: %w", l.key, err)
		}
	}

	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, readError(err)
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			// Unwrap drops viper's "While parsing config" for our own words.
			return nil, fmt.Errorf("not valid YAML: %w", errors.Unwrap(err))
		}
	}

	if names, ok := os.LookupEnv(tablesEnv); ok {
		v.Set("tables", tablesFromEnv(names))
	}

	problems := unknownKeys("", v.AllSettings(), reflect.TypeFor[Config]())

	var cfg Config
	decodeErrs, failed := decodeProblems(v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(durationHook, shapeHook))))
	problems = append(problems, decodeErrs...)
	for _, p := range cfg.problems() {
		if !coveredBy(p.key, failed) {
			problems = append(problems, p)
		}
	}
	if err := joinProblems(problems); err != nil {
		return nil, err
	}

	cfg.normalize()
	return &cfg, nil
}

// readError says why the file could not be read, without repeating its path.
func readError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: fix the path, or give none to use only the defaults and WALSCRIBE_* environment variables", fs.ErrNotExist)
	}
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return fmt.Errorf("cannot read the file: %w", pathErr.Err)
	}
	return fmt.Errorf("cannot read the file: %w", err)
}

// tablesFromEnv turns WALSCRIBE_TABLES ("public.a, public.b") into the shape
// of the file's tables list. Empty names between commas are dropped.
func tablesFromEnv(names string) []any {
	tables := []any{}
	for name := range strings.SplitSeq(names, ",") {
		if name = strings.TrimSpace(name); name != "" {
			tables = append(tables, map[string]any{"name": name})
		}
	}
	return tables
}

// normalize gives every table its schema: "orders" becomes "public.orders".
func (c *Config) normalize() {
	for i, t := range c.Tables {
		schema, table := t.Split()
		c.Tables[i].Name = schema + "." + table
	}
}

// Split returns the table's schema and name; a name without a schema is in
// "public".
func (t Table) Split() (schema, table string) {
	if schema, table, ok := strings.Cut(t.Name, "."); ok {
		return schema, table
	}
	return "public", t.Name
}

// SinkDSN returns the connection string of the audit database: sink.dsn, or
// source.dsn when sink.dsn is empty.
func (c *Config) SinkDSN() string {
	if c.Sink.DSN != "" {
		return c.Sink.DSN
	}
	return c.Source.DSN
}
