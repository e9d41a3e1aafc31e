// Package sink stores audit entries. The PostgreSQL sink batches whole
// transactions and writes each batch — entries by COPY and a checkpoint row —
// in one database transaction, then reports the batch's end LSN as durable.
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/migrations"
)

// Config is what the PostgreSQL sink needs.
type Config struct {
	DSN             string           // sink database
	Schema          string           // audit schema, e.g. "audit"
	Slot            string           // replication slot whose progress is stored
	BatchMaxEntries int              // a batch is written once it holds this many entries
	BatchMaxWait    time.Duration    // or once its first transaction waited this long
	Metrics         *metrics.Metrics // nil: counted nowhere
	OnError         func(string)     // told of each failed write, retried or not
}

// Postgres is the PostgreSQL sink. One Postgres is the only writer of its
// schema: it numbers entries densely from the last stored id.
type Postgres struct {
	cfg    Config
	log    *zap.Logger
	schema string // quoted identifier

	conn          *pgx.Conn
	lastEnd       pglogrepl.LSN // end LSN of the last transaction stored
	lastID        int64         // id of the last entry stored
	lastCommitted time.Time
	months        map[int]bool // year*12+month → partitions known to exist
	healthy       atomic.Bool  // the last write succeeded
}

// LastCommitted is the commit time of the last source transaction stored.
func (p *Postgres) LastCommitted() time.Time { return p.lastCommitted }

// Healthy reports whether the last write succeeded (or none failed yet).
func (p *Postgres) Healthy() bool { return p.healthy.Load() }

// NewPostgres returns a sink; it does no I/O until Open.
func NewPostgres(cfg Config, log *zap.Logger) *Postgres {
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
	return &Postgres{cfg: cfg, log: log.Named("sink"), schema: pgx.Identifier{cfg.Schema}.Sanitize()}
}

// ErrNotSetUp means the audit schema is missing or older than this binary.
var ErrNotSetUp = errors.New("the audit schema is not set up")

// Open connects, checks the schema, and loads the stored progress.
func (p *Postgres) Open(ctx context.Context) error {
	cfg, err := pgx.ParseConfig(p.cfg.DSN)
	if err != nil {
		return fmt.Errorf("sink dsn: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second // a network that swallows packets must not hang the retries
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "walscribe sink" // found in pg_stat_activity
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to sink: %w", err)
	}
	if err := p.load(ctx, conn); err != nil {
		conn.Close(ctx)
		return err
	}
	p.conn = conn
	p.healthy.Store(true)
	p.cfg.Metrics.SinkUp.Set(1)
	return nil
}

func (p *Postgres) load(ctx context.Context, conn *pgx.Conn) error {
	v, err := migrations.Current(ctx, conn, p.cfg.Schema)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v < migrations.Latest() {
		return fmt.Errorf("%w: schema %q is at version %d, this walscribe needs %d: run `walscribe setup`",
			ErrNotSetUp, p.cfg.Schema, v, migrations.Latest())
	}
	var end *string
	var committed *time.Time
	err = conn.QueryRow(ctx, `SELECT end_lsn::text, committed_at FROM `+p.schema+`.checkpoints
		WHERE slot = $1 ORDER BY end_lsn DESC LIMIT 1`, p.cfg.Slot).Scan(&end, &committed)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	p.lastEnd = 0
	if end != nil {
		if p.lastEnd, err = pglogrepl.ParseLSN(*end); err != nil {
			return fmt.Errorf("read checkpoint: %w", err)
		}
	}
	if committed != nil {
		p.lastCommitted = *committed
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(last_id), 0) FROM `+p.schema+`.checkpoints`).Scan(&p.lastID); err != nil {
		return fmt.Errorf("read last id: %w", err)
	}
	p.months = map[int]bool{}
	now := time.Now().UTC()
	if _, err := conn.Exec(ctx, `SELECT `+p.schema+`.ensure_partitions($1, $2, $3)`,
		now, now.AddDate(0, 2, 0), []string{"default"}); err != nil {
		return fmt.Errorf("create partitions: %w", err)
	}
	for i := 0; i <= 2; i++ {
		p.months[monthKey(now.AddDate(0, i, 0))] = true
	}
	return nil
}

// Progress returns the end LSN of the last stored transaction (0 when none)
// and the last entry id.
func (p *Postgres) Progress() (pglogrepl.LSN, int64) { return p.lastEnd, p.lastID }

// Close closes the connection.
func (p *Postgres) Close(ctx context.Context) error {
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close(ctx)
	p.conn = nil
	return err
}

// Run writes the transactions that arrive on in, in batches, and calls
// durable with each batch's end LSN once it is committed. Transactions at or
// below the stored progress are skipped. Transient database errors are
// retried with backoff on a new connection, reloading the progress so that
// nothing is written twice. Run returns nil when in is closed and drained,
// or the first permanent error.
func (p *Postgres) Run(ctx context.Context, in <-chan *audit.Transaction, durable func(pglogrepl.LSN)) error {
	var batch []*audit.Transaction
	for {
		var open bool
		batch, open = p.collect(in, batch[:0])
		if len(batch) > 0 {
			err := p.writeRetrying(ctx, batch)
			release(batch)
			if err != nil {
				return err
			}
			durable(p.lastEnd)
		}
		if !open {
			return nil
		}
	}
}

// release closes the files of spilled transactions once their batch is
// written (or abandoned).
func release(batch []*audit.Transaction) {
	for _, tx := range batch {
		if tx.Spilled != nil {
			tx.Spilled.Close()
		}
	}
}

// collect gathers a batch: it waits for a first transaction, then takes more
// until the batch holds BatchMaxEntries entries or BatchMaxWait has passed.
func (p *Postgres) collect(in <-chan *audit.Transaction, batch []*audit.Transaction) ([]*audit.Transaction, bool) {
	n := 0
	var timer <-chan time.Time
	for {
		select {
		case tx, ok := <-in:
			if !ok {
				return batch, false
			}
			batch = append(batch, tx)
			n += tx.Len()
			if n >= p.cfg.BatchMaxEntries {
				return batch, true
			}
			if timer == nil {
				timer = time.After(p.cfg.BatchMaxWait)
			}
		case <-timer:
			return batch, true
		}
	}
}

func (p *Postgres) writeRetrying(ctx context.Context, batch []*audit.Transaction) error {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.connectIfNeeded(ctx)
		if err == nil {
			err = p.Write(ctx, batch)
		}
		if err == nil {
			p.healthy.Store(true)
			p.cfg.Metrics.SinkUp.Set(1)
			return nil
		}
		p.healthy.Store(false)
		p.cfg.Metrics.SinkUp.Set(0)
		p.cfg.Metrics.Errors.WithLabelValues("sink").Inc()
		if !Retryable(err) && (p.conn == nil || !p.conn.IsClosed()) {
			return err
		}
		if attempt == 1 || attempt%10 == 0 {
			p.log.Warn("sink write failed, retrying", zap.Int("attempt", attempt), zap.Duration("backoff", backoff), zap.Error(err))
		}
		if p.cfg.OnError != nil {
			p.cfg.OnError("sink: " + err.Error())
		}
		if p.conn != nil {
			p.conn.Close(context.WithoutCancel(ctx))
			p.conn = nil
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			// Shutting down: one last try, bounded, so that what was
			// received is stored if the sink is back; if not, it is not
			// acknowledged either, and the server sends it again.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalAttempt)
			defer cancel()
			if ferr := p.connectIfNeeded(fctx); ferr == nil {
				if ferr = p.Write(fctx, batch); ferr == nil {
					return nil
				}
			}
			return fmt.Errorf("sink unavailable at shutdown (what was not stored is not acknowledged, and is sent again on restart): %w", err)
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// lockAndReload takes the schema's writer lock for the transaction and
// reads the stored progress: this slot's last end LSN, and the last entry id
// of the schema.
func (p *Postgres) lockAndReload(ctx context.Context, dbtx pgx.Tx) error {
	var end *string
	var committed *time.Time
	var lastID int64
	err := dbtx.QueryRow(ctx, `SELECT pg_advisory_xact_lock(hashtext('walscribe.sink.' || $2)),
			(SELECT end_lsn::text FROM `+p.schema+`.checkpoints WHERE slot = $1 ORDER BY end_lsn DESC LIMIT 1),
			(SELECT committed_at FROM `+p.schema+`.checkpoints WHERE slot = $1 ORDER BY end_lsn DESC LIMIT 1),
			greatest((SELECT coalesce(max(last_id), 0) FROM `+p.schema+`.checkpoints),
			         (SELECT coalesce(max(entry_id), 0) FROM `+p.schema+`.gaps))`, p.cfg.Slot, p.cfg.Schema).
		Scan(nil, &end, &committed, &lastID)
	if err != nil {
		return fmt.Errorf("read the stored progress: %w", err)
	}
	p.lastEnd, p.lastID = 0, lastID
	if end != nil {
		if p.lastEnd, err = pglogrepl.ParseLSN(*end); err != nil {
			return fmt.Errorf("read the stored progress: %w", err)
		}
	}
	if committed != nil {
		p.lastCommitted = *committed
	}
	return nil
}

// Gap is a stretch of the source's history the trail cannot hold.
type Gap struct {
	Reason string        // slot_missing, slot_lost, slot_ahead
	From   pglogrepl.LSN // the last position stored before the gap
	To     pglogrepl.LSN // where the trail resumes; 0 when it does not
	Detail string        // what happened, for people
}

// RecordGap records a gap, once: in the gaps table and as an entry of the
// trail (action gap), and moves the stored progress to g.To when set. It
// reports whether the gap was new. Call it after Open, before Run.
func (p *Postgres) RecordGap(ctx context.Context, g Gap) (bool, error) {
	dbtx, err := p.conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("record gap: %w", err)
	}
	defer dbtx.Rollback(ctx)
	if err := p.lockAndReload(ctx, dbtx); err != nil {
		return false, err
	}
	var known bool
	if err := dbtx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+p.schema+`.gaps WHERE slot = $1 AND reason = $2 AND from_lsn = $3::text::pg_lsn)`,
		p.cfg.Slot, g.Reason, g.From.String()).Scan(&known); err != nil {
		return false, fmt.Errorf("record gap: %w", err)
	}
	if known {
		return false, nil
	}
	var lastCommit any
	if !p.lastCommitted.IsZero() {
		lastCommit = p.lastCommitted
	}
	var to any
	if g.To != 0 {
		to = g.To.String()
	}
	id := p.lastID + 1
	now := time.Now().UTC()
	if err := p.ensureMonth(ctx, dbtx, now); err != nil {
		return false, err
	}
	detail, _ := json.Marshal(map[string]any{"reason": g.Reason, "slot": p.cfg.Slot, "from_lsn": g.From.String(),
		"to_lsn": to, "last_commit": lastCommit, "detail": g.Detail})
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action, new)
		VALUES ($1, $2::text::pg_lsn, 0, $3, 'walscribe', $4, 'gap', $5)`, id, g.From.String(), now, p.cfg.Slot, string(detail)); err != nil {
		return false, fmt.Errorf("record gap entry: %w", err)
	}
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.gaps (slot, reason, from_lsn, to_lsn, last_commit, entry_id)
		VALUES ($1, $2, $3::text::pg_lsn, $4::text::pg_lsn, $5, $6)`, p.cfg.Slot, g.Reason, g.From.String(), to, lastCommit, id); err != nil {
		return false, fmt.Errorf("record gap: %w", err)
	}
	if g.To > p.lastEnd {
		if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.checkpoints (slot, end_lsn, last_id, committed_at, entries)
			VALUES ($1, $2::text::pg_lsn, $3, $4, 1)`, p.cfg.Slot, g.To.String(), id, lastCommit); err != nil {
			return false, fmt.Errorf("record gap: %w", err)
		}
	}
	if err := dbtx.Commit(ctx); err != nil {
		return false, fmt.Errorf("record gap: %w", err)
	}
	p.lastID = id
	p.lastEnd = max(p.lastEnd, g.To)
	return true, nil
}

func (p *Postgres) ensureMonth(ctx context.Context, dbtx pgx.Tx, at time.Time) error {
	if p.months[monthKey(at)] {
		return nil
	}
	if _, err := dbtx.Exec(ctx, `SELECT `+p.schema+`.ensure_partitions($1, $1, $2)`, at, []string{"default"}); err != nil {
		return fmt.Errorf("create partitions: %w", err)
	}
	p.months[monthKey(at)] = true
	return nil
}

// finalAttempt bounds the last write tried at shutdown.
const finalAttempt = 5 * time.Second

func (p *Postgres) connectIfNeeded(ctx context.Context) error {
	if p.conn != nil && !p.conn.IsClosed() {
		return nil
	}
	// The outcome of the last commit may be unknown: Open reloads the
	// progress, and Write skips what was stored.
	return p.Open(ctx)
}

// Write stores the transactions not yet stored, with their checkpoint, in one
// database transaction.
func (p *Postgres) Write(ctx context.Context, batch []*audit.Transaction) error {
	// Writes go on even if ctx is cancelled: a batch is either committed or
	// rolled back, never abandoned half-way because of shutdown.
	wctx := context.WithoutCancel(ctx)
	dbtx, err := p.conn.Begin(wctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer dbtx.Rollback(wctx)
	// One writer at a time, and from the progress as stored: another
	// walscribe (a standby that took over, a second slot) may have written
	// since this one last did.
	if err := p.lockAndReload(wctx, dbtx); err != nil {
		return err
	}
	var keep []*audit.Transaction
	var rulesRecs []*audit.Transaction
	end := p.lastEnd
	committed := p.lastCommitted
	n := 0
	for _, tx := range batch {
		if tx.Rules != nil {
			rulesRecs = append(rulesRecs, tx)
			continue
		}
		if tx.EndLSN <= p.lastEnd {
			continue // stored already: replayed after a restart
		}
		keep = append(keep, tx)
		end = max(end, tx.EndLSN)
		n += tx.Len()
		if tx.Spilled != nil {
			// A retry reads the file again from the start.
			if err := tx.Spilled.Rewind(); err != nil {
				return err
			}
		}
		if !tx.CommittedAt.IsZero() {
			committed = tx.CommittedAt
		}
	}
	batch = keep
	if len(batch) == 0 && len(rulesRecs) == 0 {
		return nil
	}
	began := time.Now()
	var tally map[tallyKey]int
	if n > 0 {
		if err := p.ensureMonths(wctx, dbtx, batch); err != nil {
			return err
		}
		src := newCopyReader(batch, p.lastID+1)
		tag, err := dbtx.Conn().PgConn().CopyFrom(wctx, src, copyStatement(p.schema))
		src.stop()
		if src.err != nil {
			// The reader aborted the COPY: the server's error says only
			// that.
			return fmt.Errorf("copy entries: %w", src.err)
		}
		if err != nil {
			return fmt.Errorf("copy entries: %w", err)
		}
		if tag.RowsAffected() != int64(n) {
			return fmt.Errorf("copy entries: wrote %d of %d", tag.RowsAffected(), n)
		}
		tally = src.tally
	}
	for _, r := range rulesRecs {
		if err := insertRules(wctx, dbtx, p.schema, p.cfg.Slot, r.RulesFrom, r.Rules, r.RulesReason); err != nil {
			return err
		}
	}
	if end > p.lastEnd {
		var committedArg any
		if !committed.IsZero() {
			committedArg = committed
		}
		if _, err := dbtx.Exec(wctx, `INSERT INTO `+p.schema+`.checkpoints (slot, end_lsn, last_id, committed_at, entries)
			VALUES ($1, $2::text::pg_lsn, $3, $4, $5)`, p.cfg.Slot, end.String(), p.lastID+int64(n), committedArg, n); err != nil {
			return fmt.Errorf("insert checkpoint: %w", err)
		}
	}
	if err := dbtx.Commit(wctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	p.count(batch, tally, n, began)
	p.lastEnd = end
	p.lastID += int64(n)
	p.lastCommitted = committed
	return nil
}

func insertRules(ctx context.Context, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, schema, slot string, from pglogrepl.LSN, rules []byte, reason string) error {
	if _, err := q.Exec(ctx, `INSERT INTO `+schema+`.rules (slot, from_lsn, rules, reason) VALUES ($1, $2::text::pg_lsn, $3, $4)`,
		slot, from.String(), string(rules), reason); err != nil {
		return fmt.Errorf("record the rules in force: %w", err)
	}
	return nil
}

// RecordRules records the rules in force from the position from on, unless
// they are the last ones recorded for the slot. Call it after Open, before
// Run.
func (p *Postgres) RecordRules(ctx context.Context, from pglogrepl.LSN, rules []byte, reason string) (bool, error) {
	var same bool
	err := p.conn.QueryRow(ctx, `SELECT coalesce((SELECT rules = $2::jsonb FROM `+p.schema+`.rules
		WHERE slot = $1 ORDER BY from_lsn DESC, recorded_at DESC LIMIT 1), false)`, p.cfg.Slot, string(rules)).Scan(&same)
	if err != nil {
		return false, fmt.Errorf("read the rules last recorded: %w", err)
	}
	if same {
		return false, nil
	}
	return true, insertRules(ctx, p.conn, p.schema, p.cfg.Slot, from, rules, reason)
}

func (p *Postgres) ensureMonths(ctx context.Context, dbtx pgx.Tx, batch []*audit.Transaction) error {
	for _, tx := range batch {
		if tx.Len() == 0 {
			continue
		}
		k := monthKey(tx.CommittedAt)
		if p.months[k] {
			continue
		}
		if _, err := dbtx.Exec(ctx, `SELECT `+p.schema+`.ensure_partitions($1, $1, $2)`, tx.CommittedAt, []string{"default"}); err != nil {
			return fmt.Errorf("create partitions: %w", err)
		}
		p.months[k] = true
	}
	return nil
}

func monthKey(t time.Time) int {
	t = t.UTC()
	return t.Year()*12 + int(t.Month())
}

// tallyKey is what the entries written are counted by.
type tallyKey struct {
	schema, table string
	action        audit.Action
	actor         bool
}

// count records a committed batch in the metrics.
func (p *Postgres) count(batch []*audit.Transaction, tally map[tallyKey]int, n int, began time.Time) {
	m := p.cfg.Metrics
	now := time.Now()
	m.Batches.Inc()
	m.BatchEntries.Observe(float64(n))
	m.BatchDuration.Observe(now.Sub(began).Seconds())
	for _, tx := range batch {
		if !tx.CommittedAt.IsZero() && tx.Len() > 0 {
			m.CommitToDurable.Observe(now.Sub(tx.CommittedAt).Seconds())
		}
	}
	for k, c := range tally {
		m.EntriesWritten.WithLabelValues(k.schema, k.table, string(k.action)).Add(float64(c))
		label := "false"
		if k.actor {
			label = "true"
		}
		m.ContextEntries.WithLabelValues(label).Add(float64(c))
	}
}

// Retryable reports whether err is worth retrying on a new connection: the
// connection broke, the server is shutting down or out of resources, or a
// serialization conflict.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57", "58", "40":
			return true
		}
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
