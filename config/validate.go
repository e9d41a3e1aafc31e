package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/mod/sumdb/note"

	"github.com/walscribe/walscribe/integrity"

	"github.com/walscribe/walscribe/watch"
)

var (
	// slotName is a replication slot name as PostgreSQL accepts it.
	slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	// plainIdent is an identifier that needs no quotes and keeps its case.
	plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
)

// Validate reports every invalid key, one per line, each with how to fix it.
// Load calls it; call it again after changing a Config by hand.
func (c *Config) Validate() error {
	return joinProblems(c.problems())
}

func (c *Config) problems() []problem {
	var problems []problem
	check := func(key, msg string) {
		if msg != "" {
			problems = append(problems, problem{key, msg})
		}
	}

	if c.Source.DSN == "" {
		check("source.dsn", "required: set it in the config file or "+envVar("source.dsn")+" (e.g. postgres://walscribe@localhost:5432/app)")
	} else {
		check("source.dsn", checkDSN(c.Source.DSN))
	}
	if !slotName.MatchString(c.Source.Slot) {
		check("source.slot", fmt.Sprintf("%q is not a valid replication slot name: use 1 to 63 lowercase letters, digits and underscores, e.g. walscribe", c.Source.Slot))
	}
	check("source.publication", checkIdent(c.Source.Publication, "walscribe"))
	check("source.status_interval", checkDuration(c.Source.StatusInterval, time.Second, time.Minute, "from 1s to 60s, e.g. 10s"))

	if c.Sink.DSN != "" {
		check("sink.dsn", checkDSN(c.Sink.DSN))
	}
	check("sink.schema", checkIdent(c.Sink.Schema, "audit"))
	if n := c.Sink.BatchMaxEntries; n < 1 || n > 1_000_000 {
		check("sink.batch_max_entries", fmt.Sprintf("%d is out of range: use 1 to 1000000, e.g. 5000", n))
	}
	check("sink.batch_max_wait", checkDuration(c.Sink.BatchMaxWait, time.Nanosecond, time.Minute, "above 0 and at most 1m, e.g. 100ms"))

	if c.Spool.Dir != "" {
		check("spool.dir", checkSpoolDir(c.Spool.Dir))
	}
	check("spool.txn_memory", checkByteSize(c.Spool.TxnMemory, 64*KiB, GiB, "8MiB"))

	check("context.prefix", checkIdent(c.Context.Prefix, "audit"))
	check("context.max_field_bytes", checkByteSize(c.Context.MaxFieldBytes, 64, MiB, "1KiB"))
	check("context.max_json_bytes", checkByteSize(c.Context.MaxJSONBytes, 256, 16*MiB, "8KiB"))
	check("context.max_event_bytes", checkByteSize(c.Context.MaxEventBytes, KiB, 64*MiB, "64KiB"))

	check("roles.owner", checkIdent(c.Roles.Owner, "walscribe_owner"))
	check("roles.reader", checkIdent(c.Roles.Reader, "walscribe_reader"))
	check("roles.app", checkIdent(c.Roles.App, "walscribe_app"))
	switch {
	case c.Roles.Reader == c.Roles.Owner:
		check("roles.reader", fmt.Sprintf("%q is also roles.owner: the reader may only read, give it a name of its own, e.g. walscribe_reader", c.Roles.Reader))
	case c.Roles.App == c.Roles.Owner || c.Roles.App == c.Roles.Reader:
		check("roles.app", fmt.Sprintf("%q is also roles.owner or roles.reader: give the application group a name of its own, e.g. walscribe_app", c.Roles.App))
	}

	c.integrityProblems(check)
	c.retentionProblems(check)
	c.exportProblems(check)
	c.apiProblems(check)
	for _, p := range watch.Problems("watches", c.Watches) {
		check(p.Key, p.Msg)
	}
	if w := c.Watch.WebhookSecret; w != "" && len(w) < 16 {
		check("watch.webhook_secret", "too short: at least 16 random characters, e.g. from walscribe keygen")
	}
	if n := c.Watch.QueueSize; n < 1 || n > 1_000_000 {
		check("watch.queue_size", fmt.Sprintf("%d: write a number from 1 to 1000000, e.g. 1024", n))
	}
	c.tableProblems(check)

	if c.HTTP.Listen != "" {
		check("http.listen", checkListen(c.HTTP.Listen))
	}
	check("log.level", checkChoice(c.Log.Level, []string{"debug", "info", "warn", "error"}))
	check("log.format", checkChoice(c.Log.Format, []string{"auto", "json", "console"}))
	return problems
}

// checkDSN reports a connection string pgx cannot parse. The string itself
// is left out of the message: it may hold a password.
func checkDSN(dsn string) string {
	_, err := pgconn.ParseConfig(dsn)
	if err == nil {
		return ""
	}
	reason := "cannot parse it"
	if pce, ok := err.(*pgconn.ParseConfigError); ok {
		if pce.Unwrap() != nil {
			reason = pce.Unwrap().Error()
		} else if i := strings.LastIndex(pce.Error(), "`: "); i >= 0 {
			// The text reads "cannot parse `<string>`: <reason>"; keep
			// only the reason, as in "invalid port".
			reason = pce.Error()[i+len("`: "):]
		}
	}
	return "not a valid connection string (" + reason + "): use a URL like postgres://walscribe@localhost:5432/app or key=value pairs like host=localhost dbname=app user=walscribe"
}

// checkSpoolDir reports a spool directory that does not exist, is not a
// directory, or is one where no file can be created. It creates and removes
// a small file to find out.
func checkSpoolDir(dir string) string {
	orDefault := fmt.Sprintf("or leave spool.dir empty (%s=) for the system's temporary directory", envVar("spool.dir"))
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%q does not exist: create it (mkdir -p %s), point spool.dir at a directory that exists, %s", dir, dir, orDefault)
	case err != nil:
		return fmt.Sprintf("cannot use %q (%v): point spool.dir at a directory walscribe can read and write, %s", dir, pathReason(err), orDefault)
	case !info.IsDir():
		return fmt.Sprintf("%q is not a directory: point spool.dir at a directory, %s", dir, orDefault)
	}
	f, err := os.CreateTemp(dir, ".walscribe-check-*")
	if err != nil {
		return fmt.Sprintf("cannot create files in %q (%v): let the user walscribe runs as write there, or change spool.dir, %s", dir, pathReason(err), orDefault)
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return ""
}

// pathReason is why a file operation failed, without the path, which the
// message shows already.
func pathReason(err error) error {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return pathErr.Err
	}
	return err
}

func checkIdent(s, example string) string {
	if s == "" {
		return "must not be empty: use a name such as " + example
	}
	if !plainIdent.MatchString(s) {
		return fmt.Sprintf("%q is not a plain identifier: use a lowercase letter or underscore, then lowercase letters, digits and underscores, at most 63 in all, e.g. %s", s, example)
	}
	return ""
}

func checkDuration(d, least, most time.Duration, allowed string) string {
	if d < least || d > most {
		return fmt.Sprintf("%s is out of range: use a duration %s", d, allowed)
	}
	return ""
}

func checkListen(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.Atoi(port); perr == nil && n >= 0 && n <= 65535 {
			return ""
		}
	}
	return fmt.Sprintf("%q is not host:port: use e.g. 127.0.0.1:9187 or :9187, or \"\" to turn the HTTP server off", addr)
}

func checkChoice(s string, choices []string) string {
	if slices.Contains(choices, s) {
		return ""
	}
	return fmt.Sprintf("%q is not allowed: %s", s, suggest(s, choices, "use one of"))
}

// exportProblems checks the export section.
func (c *Config) exportProblems(check func(key, msg string)) {
	e := c.Export
	check("export.format", checkChoice(e.Format, []string{"jsonl", "csv"}))
	check("export.schedule", checkChoice(e.Schedule, []string{"", "daily"}))
	if e.Schedule != "" && e.To == "" {
		check("export.to", "required with export.schedule: a directory, or s3://bucket/prefix")
	}
	if e.To != "" && strings.HasPrefix(e.To, "s3:") && !strings.HasPrefix(e.To, "s3://") {
		check("export.to", fmt.Sprintf("%q: write s3://bucket/prefix", e.To))
	}
	if e.S3.PartSize < 5<<20 || e.S3.PartSize > 5<<30 {
		check("export.s3.part_size", fmt.Sprintf("%s: from 5MiB to 5GiB, e.g. 16MiB", e.S3.PartSize))
	}
	if e.S3.Endpoint == "" {
		check("export.s3.endpoint", "empty: write host[:port], e.g. s3.amazonaws.com")
	}
}

// apiProblems checks the api section.
func (c *Config) apiProblems(check func(key, msg string)) {
	a := c.API
	if a.Listen != "" {
		check("api.listen", checkListen(a.Listen))
	}
	for _, d := range []struct{ key, dsn string }{{"api.dsn", a.DSN}, {"api.events_dsn", a.EventsDSN}, {"api.restore_dsn", a.RestoreDSN}} {
		if d.dsn != "" {
			check(d.key, checkDSN(d.dsn))
		}
	}
	if (a.TLSCertFile == "") != (a.TLSKeyFile == "") {
		check("api.tls_cert_file", "give both api.tls_cert_file and api.tls_key_file, or neither")
	}
	if a.PoolSize < 1 || a.PoolSize > 64 {
		check("api.pool_size", fmt.Sprintf("%d: write a number from 1 to 64, e.g. 4", a.PoolSize))
	}
	check("api.statement_timeout", checkDuration(a.StatementTimeout, 100*time.Millisecond, 10*time.Minute, "from 100ms to 10m, e.g. 10s"))
	if a.RateLimit < 1 || a.RateLimit > 10000 {
		check("api.rate_limit", fmt.Sprintf("%d: write a number of requests per second from 1 to 10000, e.g. 20", a.RateLimit))
	}
	check("api.session_ttl", checkDuration(a.SessionTTL, 5*time.Minute, 720*time.Hour, "from 5m to 720h, e.g. 12h"))
}

// retentionProblems checks the retention section.
func (c *Config) retentionProblems(check func(key, msg string)) {
	r := c.Retention
	if r.Default != "" {
		check("retention.default", checkRetention(r.Default))
	}
	if r.Schedule != 0 {
		check("retention.schedule", checkDuration(r.Schedule, time.Minute, 720*time.Hour, "from 1m to 720h, e.g. 24h, or 0 for never"))
	}
	if r.Archive && c.Export.To == "" {
		check("retention.archive", "needs export.to: where partitions are exported before they are dropped")
	}
	if r.DeleteBatch < 100 || r.DeleteBatch > 1_000_000 {
		check("retention.delete_batch", fmt.Sprintf("%d: write a number from 100 to 1000000, e.g. 50000", r.DeleteBatch))
	}
	for i, h := range r.Holds {
		key := fmt.Sprintf("retention.holds[%d]", i)
		if h == "" {
			check(key, "empty: write a table name or pattern such as public.invoices, or *.* to hold every table")
			continue
		}
		check(key, checkTableName(h))
	}
}

// integrityProblems checks the integrity section: a signer key that
// parses, from one place.
func (c *Config) integrityProblems(check func(key, msg string)) {
	in := c.Integrity
	check("integrity.checkpoint_interval", checkDuration(in.CheckpointInterval, 100*time.Millisecond, time.Hour, "from 100ms to 1h, e.g. 1s"))
	check("integrity.leaf_hashing", checkChoice(in.LeafHashing, []string{"sink", "server", "both"}))
	if !in.Enabled {
		return
	}
	switch {
	case in.SignerKeyFile != "" && in.SignerKey != "":
		check("integrity.signer_key", "set either integrity.signer_key_file or integrity.signer_key ("+envVar("integrity.signer_key")+"), not both")
	case in.SignerKeyFile != "":
		if _, err := integrity.LoadSigner(in.SignerKeyFile); err != nil {
			check("integrity.signer_key_file", err.Error())
		}
	case in.SignerKey != "":
		if _, err := integrity.ParseSigner(in.SignerKey); err != nil {
			check("integrity.signer_key", err.Error())
		}
	default:
		check("integrity.signer_key_file", "required when integrity.enabled is true: create a key pair with `walscribe keygen --signer /etc/walscribe/signer.key` and set integrity.signer_key_file to that file (or "+envVar("integrity.signer_key")+" to the key); give the verifier key it prints to your auditors")
	}
	if in.CheckpointDir != "" {
		if st, err := os.Stat(in.CheckpointDir); err != nil || !st.IsDir() {
			check("integrity.checkpoint_dir", fmt.Sprintf("%q is not a directory: create it (writable by walscribe, and best on another machine or a volume the database's admins cannot write)", in.CheckpointDir))
		}
	}
}

// Signer returns the configured signer of checkpoints, or nil when
// integrity is off.
func (c *Config) Signer() (note.Signer, error) {
	in := c.Integrity
	switch {
	case !in.Enabled:
		return nil, nil
	case in.SignerKeyFile != "":
		return integrity.LoadSigner(in.SignerKeyFile)
	default:
		return integrity.ParseSigner(in.SignerKey)
	}
}
