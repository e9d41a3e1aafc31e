// Package config loads walscribe's configuration: a YAML file, overridden key
// by key from the environment, on top of a default for every key.
//
// Every key has an environment variable named WALSCRIBE_<SECTION>_<KEY>, for
// example WALSCRIBE_SOURCE_DSN for source.dsn and WALSCRIBE_SINK_BATCH_MAX_WAIT
// for sink.batch_max_wait. The environment wins over the file. A variable that
// is set but empty counts as set, so WALSCRIBE_HTTP_LISTEN= disables the HTTP
// server. WALSCRIBE_TABLES takes comma-separated table names or patterns
// ("public.orders,billing.*") and replaces the file's tables list;
// WALSCRIBE_EXCLUDE_TABLES does the same for exclude_tables. The masking
// secret belongs in WALSCRIBE_MASKING_SECRET rather than in the file.
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
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/walscribe/walscribe/watch"
)

// Config is walscribe's whole configuration. Load returns it defaulted and
// validated; cmd maps it onto each package's own configuration.
type Config struct {
	Source  Source  `mapstructure:"source"`
	Sink    Sink    `mapstructure:"sink"`
	Spool   Spool   `mapstructure:"spool"`
	Context Context `mapstructure:"context"`
	Masking Masking `mapstructure:"masking"`
	Roles   Roles   `mapstructure:"roles"`
	// Integrity makes the trail tamper-evident.
	Integrity Integrity `mapstructure:"integrity"`
	// Retention expires entries.
	Retention Retention `mapstructure:"retention"`
	// Export ships the trail out as ZIP archives.
	Export Export `mapstructure:"export"`
	// ExcludeTables are table names or glob patterns never audited, even when
	// a tables entry matches them (exclude_tables), in the syntax of
	// tables[i].name. Load turns a name without a schema into
	// "public.<name>". Default none.
	ExcludeTables []string `mapstructure:"exclude_tables"`
	// SkipUnchangedUpdates: an update whose changed columns are all excluded
	// (or that changes nothing) produces no entry (skip_unchanged_updates).
	// A tables entry may override it. Default true.
	SkipUnchangedUpdates bool    `mapstructure:"skip_unchanged_updates"`
	Tables               []Table `mapstructure:"tables"`
	HTTP                 HTTP    `mapstructure:"http"`
	// API serves the REST API and the web UI.
	API API `mapstructure:"api"`
	// Watches look for suspicious activity in the entries as they are
	// stored (watches): see package watch for the keys of each. Default none.
	Watches []watch.Rule `mapstructure:"watches"`
	// Watch configures how the watches' alerts are delivered.
	Watch Watch `mapstructure:"watch"`
	Log   Log   `mapstructure:"log"`
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
	// RecreateLostSlot: when the replication slot is gone or invalidated
	// (wal_status lost), record the gap and create a new slot, instead of
	// stopping with an error (source.recreate_lost_slot). Default false.
	RecreateLostSlot bool `mapstructure:"recreate_lost_slot"`
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
	// IPIndex makes setup create an index of the entries' ip
	// (sink.ip_index), which the ip filter of reports, exports and the API
	// then uses instead of reading its whole window; it costs about a third
	// more per entry written. Setup never drops it. Default false.
	IPIndex bool `mapstructure:"ip_index"`
}

// Spool is where transactions too large for memory are kept while they are
// decoded.
type Spool struct {
	// Dir holds the files of transactions larger than TxnMemory
	// (spool.dir). Default "": the system's temporary directory. When set,
	// it must be an existing directory walscribe can create files in.
	Dir string `mapstructure:"dir"`
	// TxnMemory is how much of one transaction is kept in memory before it
	// moves to a file (spool.txn_memory), as a byte size: "8MiB", "512KiB",
	// "64MB", or a plain number of bytes. Default 8 MiB; from 64 KiB to 1 GiB.
	TxnMemory ByteSize `mapstructure:"txn_memory"`
}

// Context describes how applications attach context (who, why) to their
// transactions.
type Context struct {
	// Prefix is the custom-variable prefix applications set, as in
	// SET LOCAL audit.actor_id = '42' (context.prefix), a plain identifier.
	// Default "audit".
	Prefix string `mapstructure:"prefix"`
	// MaxFieldBytes is the most bytes of each text field of a context
	// (actor_id, actor, user_agent, request_id, ...) kept in an entry
	// (context.max_field_bytes); longer ones are cut and flagged truncated.
	// actor_id and request_id are indexed, and are cut at 1 KiB whatever
	// this says. Default 1 KiB; from 64 B to 1 MiB.
	MaxFieldBytes ByteSize `mapstructure:"max_field_bytes"`
	// MaxJSONBytes is the most bytes of the application's context object
	// (audit.context) kept with each entry (context.max_json_bytes); a
	// larger one is kept as its size, SHA-256 and beginning, flagged
	// truncated. Default 8 KiB; from 256 B to 16 MiB.
	MaxJSONBytes ByteSize `mapstructure:"max_json_bytes"`
	// MaxEventBytes is the most bytes of an event's data
	// (context.max_event_bytes), kept as the context object is. Default
	// 64 KiB; from 1 KiB to 64 MiB.
	MaxEventBytes ByteSize `mapstructure:"max_event_bytes"`
}

// Roles are the database roles setup creates and grants to, besides the
// daemon's own (the user of source.dsn and sink.dsn). Roles are shared by
// every database of a server: give each walscribe on one server the same
// names, or names of its own.
type Roles struct {
	// Owner owns the audit schema, its tables, partitions and functions
	// (roles.owner), a NOLOGIN role nobody logs in as. Default
	// "walscribe_owner".
	Owner string `mapstructure:"owner"`
	// Reader may read the trail and nothing else (roles.reader): grant it to
	// auditors. Default "walscribe_reader".
	Reader string `mapstructure:"reader"`
	// App may call set_context and log_event (roles.app): grant it to the
	// application's roles. Default "walscribe_app".
	App string `mapstructure:"app"`
	// RevokeEmitMessage: setup revokes pg_logical_emit_message from PUBLIC
	// in the source database, so that only walscribe's functions put
	// messages into the stream (roles.revoke_emit_message). Set it to false
	// when other software of the database emits logical messages, and grant
	// it to that software's role instead when you can. Default true.
	RevokeEmitMessage bool `mapstructure:"revoke_emit_message"`
}

// Integrity configures tamper evidence: every entry is a leaf of a Merkle
// log, whose size and root the daemon signs at most once per
// CheckpointInterval and at shutdown, with a key kept outside the database.
type Integrity struct {
	// Enabled turns it on (integrity.enabled). Default false.
	Enabled bool `mapstructure:"enabled"`
	// SignerKeyFile is the file holding the signer key, as `walscribe keygen
	// --signer FILE` writes it; readable by its owner only
	// (integrity.signer_key_file). Default "".
	SignerKeyFile string `mapstructure:"signer_key_file"`
	// SignerKey is the signer key itself, for keys given in the environment
	// (integrity.signer_key, WALSCRIBE_INTEGRITY_SIGNER_KEY). One of the two
	// is required when Enabled. Default "".
	SignerKey string `mapstructure:"signer_key"`
	// CheckpointInterval is the least time between two signed checkpoints
	// (integrity.checkpoint_interval), from 100ms to 1h. Default 1s.
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`
	// CheckpointDir is a directory outside the database where each signed
	// checkpoint is also written (integrity.checkpoint_dir): the latest one
	// of each day, as checkpoint-YYYY-MM-DD. It is what tells a trail cut
	// short, or restored from an old backup, from an intact one. Default ""
	// (none; strongly recommended).
	CheckpointDir string `mapstructure:"checkpoint_dir"`
	// LeafHashing says who hashes the entries into the log
	// (integrity.leaf_hashing): "sink" (walscribe, as it writes them; the
	// server only for a row walscribe cannot render exactly), "server"
	// (the server, from every row stored: more load on the database), or
	// "both" (compared, a batch refused on a difference: a check). Default
	// "sink".
	LeafHashing string `mapstructure:"leaf_hashing"`
}

// Retention configures how entries expire. Each entry is stamped, when
// written, with its table's retention period (tables[i].retention, else
// Default) as its retention class; a month of one class expires whole once
// the period has passed since the month's end, and its partition is
// dropped. `walscribe cleanup` does it on demand (with --dry-run first);
// the daemon does it every Schedule.
type Retention struct {
	// Default is the retention period of tables whose entry sets none
	// (retention.default), such as 1y; "" keeps their entries until a
	// cleanup names them. Default "".
	Default string `mapstructure:"default"`
	// Schedule is how often the daemon expires entries (retention.schedule),
	// from 1m to 720h, or 0 for never: only `walscribe cleanup` then does.
	// Default 0: a purge cannot be undone, so it runs on a schedule only
	// once someone has seen what `walscribe cleanup --dry-run` would do and
	// turned it on.
	Schedule time.Duration `mapstructure:"schedule"`
	// Holds are tables whose entries never expire while listed, in the
	// syntax of tables[i].name, "*.*" for all (retention.holds): a legal
	// hold. Default none.
	Holds []string `mapstructure:"holds"`
	// Archive exports a partition (export.to, export.format) before it is
	// dropped, as the export archive-<partition>; a partition whose export
	// fails stays (retention.archive). Default false.
	Archive bool `mapstructure:"archive"`
	// DeleteBatch is the most entries one transaction deletes where a
	// partition cannot be dropped whole (retention.delete_batch), from 100
	// to 1000000. Default 50000.
	DeleteBatch int `mapstructure:"delete_batch"`
}

// Export configures exports of the trail: ZIP archives of its entries, one
// per month, to a directory or S3-compatible storage.
type Export struct {
	// To is where exports go by default (export.to): a directory, or
	// s3://bucket/prefix. Default "".
	To string `mapstructure:"to"`
	// Format is jsonl (one JSON object per entry) or csv (export.format).
	// Default jsonl.
	Format string `mapstructure:"format"`
	// Schedule, when set, makes walscribe run export the previous UTC day
	// to To once a day (export.schedule: daily), or never (""). Default "".
	Schedule string `mapstructure:"schedule"`
	// S3 is the S3-compatible storage of s3:// destinations.
	S3 S3 `mapstructure:"s3"`
}

// S3 is an S3-compatible object store.
type S3 struct {
	// Endpoint is its host[:port] (export.s3.endpoint). Default
	// s3.amazonaws.com.
	Endpoint string `mapstructure:"endpoint"`
	// Region (export.s3.region). Default "" (the store's default).
	Region string `mapstructure:"region"`
	// AccessKey and SecretKey are the credentials (export.s3.access_key,
	// export.s3.secret_key; best from the environment). Default "": then
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	AccessKey string `mapstructure:"access_key"`
	SecretKey string `mapstructure:"secret_key"`
	// Insecure talks plain HTTP (export.s3.insecure), for a store on a
	// private network only. Default false.
	Insecure bool `mapstructure:"insecure"`
	// PartSize is the size of each part of a multipart upload
	// (export.s3.part_size), from 5MiB to 5GiB. Default 16MiB.
	PartSize ByteSize `mapstructure:"part_size"`
}

// Masking configures masked columns.
type Masking struct {
	// Secret keys the HMAC-SHA256 of masked values (masking.secret, also
	// WALSCRIBE_MASKING_SECRET): at least 32 random bytes written as hex or
	// base64, as `walscribe keygen` prints them; Key decodes it, and
	// DecodeMaskingKey says what is refused. Required when any column is
	// masked with style hash. Default "".
	Secret string `mapstructure:"secret"`
}

// Table is one tables entry: the rules for the tables its name matches.
// Load fills in the defaults of an entry (Diff, Actions, MaskStyle.Default
// and SkipUnchangedUpdates); a Table built by hand may leave them zero, which
// means the same.
type Table struct {
	// Name is "schema.table" (tables[i].name), in lowercase unquoted
	// identifiers, or a glob pattern such as public.*, billing.invoice_* or
	// *.audit_log: path.Match syntax (* ? [a-z]) on each of the schema and
	// the table part, split at the first dot. Load turns a name without a
	// dot into "public.<name>". Required, and listed once.
	Name string `mapstructure:"name"`
	// Exclude lists columns never stored: absent from old, new, changed
	// and pk (tables[i].exclude). Default none.
	Exclude []string `mapstructure:"exclude"`
	// Mask lists columns stored masked, in the style MaskStyle gives
	// (tables[i].mask). Default none.
	Mask []string `mapstructure:"mask"`
	// MaskStyle is how the masked columns are stored (tables[i].mask_style).
	// Default hash.
	MaskStyle MaskStyle `mapstructure:"mask_style"`
	// Diff is "full" to store whole rows in old and new for updates, or
	// "changes" to store only the changed columns (tables[i].diff). Default
	// "full"; "" means the same.
	Diff string `mapstructure:"diff"`
	// Actions are the actions recorded, a subset of insert, update, delete
	// and truncate (tables[i].actions). Default all four; nil means the
	// same.
	Actions []string `mapstructure:"actions"`
	// Retention is how long entries are kept (tables[i].retention): "" for
	// the default class, or a whole number above 0 and a unit d (days), w
	// (weeks), m (months) or y (years), e.g. 90d or 7y. Default "".
	Retention string `mapstructure:"retention"`
	// SkipUnchangedUpdates overrides the top-level skip_unchanged_updates
	// for this entry (tables[i].skip_unchanged_updates). Load sets it to the
	// top-level value when the entry does not; nil means the same.
	SkipUnchangedUpdates *bool `mapstructure:"skip_unchanged_updates"`
}

// The mask styles and the diff kinds, as written in the file.
const (
	// StyleHash stores the hex HMAC-SHA256 of the value, keyed by
	// masking.secret: equal values stay comparable.
	StyleHash = "hash"
	// StyleRedact stores a fixed "[redacted]".
	StyleRedact = "redact"
	// DiffFull stores whole rows in old and new.
	DiffFull = "full"
	// DiffChanges stores only the changed columns of updates.
	DiffChanges = "changes"
)

// actions lists every action a tables entry can record, in order.
func actions() []string { return []string{"insert", "update", "delete", "truncate"} }

// MaskStyle is how masked columns are stored: "hash" (HMAC-SHA256, hex,
// keyed by masking.secret: equal values stay comparable) or "redact" (a
// fixed "[redacted]"). In YAML it is either one word for every masked column
// of the entry (mask_style: redact) or a map of column to word
// (mask_style: {card_number: redact}); columns not in the map use hash.
// Default hash.
type MaskStyle struct {
	Default   string            // "hash" or "redact"; "" means hash
	PerColumn map[string]string // column → "hash" or "redact"
}

// StyleOf returns the style of a masked column: "hash" or "redact".
func (m MaskStyle) StyleOf(column string) string {
	if s, ok := m.PerColumn[column]; ok {
		return s
	}
	if m.Default == "" {
		return StyleHash
	}
	return m.Default
}

// HTTP is the server for /metrics, /healthz and /readyz.
type HTTP struct {
	// Listen is the host:port to listen on (http.listen), or "" for no
	// server. Default "127.0.0.1:9187".
	Listen string `mapstructure:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/ on the same address
	// (http.pprof). Default false: profiles reveal the process's memory.
	Pprof bool `mapstructure:"pprof"`
}

// API configures the REST API (/api/v1) and the web UI (/), served by
// walscribe serve, and by walscribe run when Listen is set.
type API struct {
	// Listen is the host:port of the API and UI (api.listen). walscribe run
	// serves them only when it is set; walscribe serve uses
	// 127.0.0.1:9188 when it is not. Default "".
	Listen string `mapstructure:"listen"`
	// DSN is the connection the API reads the trail through (api.dsn): a
	// role with the reader role (roles.reader) and nothing more; a replica
	// of the sink database will do. Default "": sink.dsn (or source.dsn).
	DSN string `mapstructure:"dsn"`
	// EventsDSN is the connection reads and posted events are recorded
	// through, with log_event in the source database (api.events_dsn): a
	// role with the application group (roles.app). Default "": source.dsn.
	EventsDSN string `mapstructure:"events_dsn"`
	// RestoreDSN is the connection restores are applied through
	// (api.restore_dsn): a role that may write the application's tables and
	// has the application group. Default "": restores are shown as plans
	// but not applied from the API or the UI.
	RestoreDSN string `mapstructure:"restore_dsn"`
	// TLSCertFile and TLSKeyFile serve HTTPS (api.tls_cert_file,
	// api.tls_key_file); both or neither. Default "" (plain HTTP: keep
	// Listen on 127.0.0.1 or behind a TLS proxy).
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`
	// SecureCookies marks the web UI's session cookie Secure (sent over
	// HTTPS only) when walscribe serves plain HTTP behind a proxy that
	// terminates TLS (api.secure_cookies); with tls_cert_file it always is.
	// Default false.
	SecureCookies bool `mapstructure:"secure_cookies"`
	// PoolSize is the most connections the API reads with (api.pool_size),
	// 1 to 64: small, so that readers never starve the sink. Default 4.
	PoolSize int `mapstructure:"pool_size"`
	// StatementTimeout is the longest one read may run
	// (api.statement_timeout), 100ms to 10m. Default 10s.
	StatementTimeout time.Duration `mapstructure:"statement_timeout"`
	// RateLimit is how many requests per second each token may send
	// (api.rate_limit), in bursts of twice as many; 1 to 10000. Default 20.
	RateLimit int `mapstructure:"rate_limit"`
	// SessionTTL is how long a sign-in to the web UI lasts
	// (api.session_ttl), 5m to 720h. Default 12h.
	SessionTTL time.Duration `mapstructure:"session_ttl"`
}

// Watch configures how the watches' alerts are delivered: each alert is an
// entry of the trail (schema walscribe, table watch, action alert), a count
// of walscribe_watch_alerts_total, and a POST to the watch's webhook.
type Watch struct {
	// WebhookSecret signs the webhook requests of watches that set no
	// webhook_secret (watch.webhook_secret; best from the environment), at
	// least 16 characters: X-Walscribe-Signature is sha256= and the
	// HMAC-SHA256 of the timestamp, a dot and the body. Default "":
	// unsigned.
	WebhookSecret string `mapstructure:"webhook_secret"`
	// QueueSize is how many alerts may wait for each target (the trail, a
	// webhook) before more are dropped and counted (watch.queue_size), 1 to
	// 1000000. Default 1024.
	QueueSize int `mapstructure:"queue_size"`
}

// APIDSN is the connection the API reads through: api.dsn, else the
// sink's.
func (c *Config) APIDSN() string {
	if c.API.DSN != "" {
		return c.API.DSN
	}
	return c.SinkDSN()
}

// EventsDSN is the connection the API records events through:
// api.events_dsn, else source.dsn.
func (c *Config) EventsDSN() string {
	if c.API.EventsDSN != "" {
		return c.API.EventsDSN
	}
	return c.Source.DSN
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
		Spool:                Spool{TxnMemory: 8 * MiB},
		Context:              Context{Prefix: "audit", MaxFieldBytes: KiB, MaxJSONBytes: 8 * KiB, MaxEventBytes: 64 * KiB},
		Roles:                Roles{Owner: "walscribe_owner", Reader: "walscribe_reader", App: "walscribe_app", RevokeEmitMessage: true},
		Integrity:            Integrity{CheckpointInterval: time.Second, LeafHashing: "sink"},
		Retention:            Retention{DeleteBatch: 50_000},
		Export:               Export{Format: "jsonl", S3: S3{Endpoint: "s3.amazonaws.com", PartSize: 16 << 20}},
		SkipUnchangedUpdates: true,
		HTTP:                 HTTP{Listen: "127.0.0.1:9187"},
		Watch:                Watch{QueueSize: 1024},
		API:                  API{PoolSize: 4, StatementTimeout: 10 * time.Second, RateLimit: 20, SessionTTL: 12 * time.Hour},
		Log:                  Log{Level: "info", Format: "auto"},
	}
}

// envPrefix starts every environment variable; tablesEnv lists the tables
// and excludeTablesEnv the tables never audited.
const (
	envPrefix        = "WALSCRIBE"
	tablesEnv        = envPrefix + "_TABLES"
	excludeTablesEnv = envPrefix + "_EXCLUDE_TABLES"
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
	if names, ok := os.LookupEnv(excludeTablesEnv); ok {
		v.Set("exclude_tables", splitList(names))
	}
	if names, ok := os.LookupEnv(envVar("retention.holds")); ok {
		v.Set("retention.holds", splitList(names))
	}

	problems := unknownKeys("", v.AllSettings(), reflect.TypeFor[Config]())

	var cfg Config
	decodeErrs, failed := decodeProblems(v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(durationHook, byteSizeHook, maskStyleHook, shapeHook))))
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
	for _, name := range splitList(names) {
		tables = append(tables, map[string]any{"name": name})
	}
	return tables
}

// splitList splits a comma-separated environment variable, dropping spaces
// around the items and empty items.
func splitList(s string) []any {
	items := []any{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// normalize gives every table name and pattern its schema ("orders" becomes
// "public.orders") and fills in the defaults of each tables entry, so that
// users of a loaded Config need not know them.
func (c *Config) normalize() {
	for i, name := range c.ExcludeTables {
		c.ExcludeTables[i] = qualify(name)
	}
	for i := range c.Tables {
		t := &c.Tables[i]
		t.Name = qualify(t.Name)
		if t.Diff == "" {
			t.Diff = DiffFull
		}
		if t.Actions == nil {
			t.Actions = actions()
		}
		if t.MaskStyle.Default == "" {
			t.MaskStyle.Default = StyleHash
		}
		if len(t.MaskStyle.PerColumn) > 0 {
			// The keys of a map come lowercased through viper: give them
			// back the spelling of the mask list ("createdAt").
			per := make(map[string]string, len(t.MaskStyle.PerColumn))
			for col, style := range t.MaskStyle.PerColumn {
				if masked, ok := maskedColumn(col, t.Mask); ok {
					col = masked
				}
				per[col] = style
			}
			t.MaskStyle.PerColumn = per
		}
		if t.SkipUnchangedUpdates == nil {
			skip := c.SkipUnchangedUpdates
			t.SkipUnchangedUpdates = &skip
		}
	}
}

// qualify turns a name or pattern without a dot into "public.<name>".
func qualify(name string) string {
	schema, table := Table{Name: name}.Split()
	return schema + "." + table
}

// Split returns the schema and the table part of the entry's name or
// pattern, split at the first dot; a name without a dot is in "public".
func (t Table) Split() (schema, table string) {
	if schema, table, ok := strings.Cut(t.Name, "."); ok {
		return schema, table
	}
	return "public", t.Name
}

// HasHashMask reports whether any tables entry masks a column with style
// hash, which needs masking.secret.
func (c *Config) HasHashMask() bool {
	for _, t := range c.Tables {
		for _, col := range t.Mask {
			if t.MaskStyle.StyleOf(col) == StyleHash {
				return true
			}
		}
	}
	return false
}

// SinkDSN returns the connection string of the audit database: sink.dsn, or
// source.dsn when sink.dsn is empty.
func (c *Config) SinkDSN() string {
	if c.Sink.DSN != "" {
		return c.Sink.DSN
	}
	return c.Source.DSN
}

// RetentionClasses are the retention classes entries are written with
// besides the default one: every table's retention period, and the
// default period.
func (c *Config) RetentionClasses() []string {
	var out []string
	for _, r := range append([]string{c.Retention.Default}, tablePeriods(c.Tables)...) {
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

func tablePeriods(tables []Table) []string {
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = t.Retention
	}
	return out
}
