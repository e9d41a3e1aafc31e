// Package sink stores audit entries. The PostgreSQL sink batches whole
// transactions and writes each batch — entries by COPY and a checkpoint row —
// in one database transaction, then reports the batch's end LSN as durable.
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/internal/pg"
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
	// Integrity turns the integrity log on; nil: off.
	Integrity *IntegrityConfig
	// Classes are the retention classes entries are written with (besides
	// the default): each month gets a partition of each, ahead of time.
	Classes []string
	// Stored, when set, is told after each commit that stored entries: the
	// first entry's id and the transactions stored, in order (the entries
	// numbered from it; spilled ones still readable). It runs on the
	// writer's goroutine and must not block.
	Stored func(firstID int64, batch []*audit.Transaction)
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
	months        map[int]bool // year*12+month → partitions of every class known to exist
	classes       []string     // the retention classes each month has a partition of
	uncommitted   []int        // months created by the database transaction in progress
	healthy       atomic.Bool  // the last write succeeded, or none failed yet

	ilog *logState // the integrity log; nil when off
	// treesBeside counts the batches whose leaves were appended to the log's
	// tree beside their COPY, not after it.
	treesBeside int
	// frozen: a violation was found; checkpoints are no longer copied to
	// the checkpoint directory, whose newest file is the evidence.
	frozen bool
	// inexact counts the rows whose leaf the sink could not compute itself.
	inexact int

	errMu                sync.Mutex
	lastErr              string
	lastErrAt            time.Time
	integrityViolation   string
	integrityViolationAt time.Time
}

// Health reports whether the last write succeeded (or none failed yet), and
// the last error met, retried or not, with its time.
func (p *Postgres) Health() (ok bool, lastErr string, at time.Time) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.healthy.Load(), p.lastErr, p.lastErrAt
}

func (p *Postgres) noteError(err error) {
	p.errMu.Lock()
	p.lastErr, p.lastErrAt = "sink: "+err.Error(), time.Now().UTC()
	p.errMu.Unlock()
}

// NewPostgres returns a sink; it does no I/O until Open.
func NewPostgres(cfg Config, log *zap.Logger) *Postgres {
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
	p := &Postgres{cfg: cfg, log: log.Named("sink"), schema: pgx.Identifier{cfg.Schema}.Sanitize()}
	p.healthy.Store(true) // no write failed yet; only writes change it
	return p
}

// ErrNotSetUp means the audit schema is missing or older than this binary.
var ErrNotSetUp = errors.New("the audit schema is not set up")

// Open connects, checks the schema, and loads the stored progress.
func (p *Postgres) Open(ctx context.Context) error {
	conn, err := pg.Connect(ctx, p.cfg.DSN, pg.AppSink)
	if err != nil {
		return fmt.Errorf("connect to sink: %w", err)
	}
	if err := p.load(ctx, conn); err != nil {
		conn.Close(ctx)
		return err
	}
	p.conn = conn
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
	if err := p.readProgress(ctx, conn, false); err != nil {
		return err
	}
	p.months = map[int]bool{}
	p.classes = []string{audit.DefaultClass}
	for _, c := range p.cfg.Classes {
		if c != "" && !slices.Contains(p.classes, c) {
			p.classes = append(p.classes, c)
		}
	}
	now := time.Now().UTC()
	if _, err := conn.Exec(ctx, `SELECT `+p.schema+`.ensure_partitions($1, $2, $3)`,
		now, now.AddDate(0, 2, 0), p.classes); err != nil {
		return fmt.Errorf("create partitions: %w", err)
	}
	for i := 0; i <= 2; i++ {
		p.months[monthKey(now.AddDate(0, i, 0))] = true
	}
	return p.openLog(ctx, conn)
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
		batch, open = p.collect(in, batch[:0], p.signTimer())
		if len(batch) > 0 {
			err := p.writeRetrying(ctx, batch)
			release(batch)
			if err != nil {
				return err
			}
			durable(p.lastEnd)
		}
		if len(batch) == 0 || !open {
			// Idle for the checkpoint interval, or shutting down: the
			// entries stored since the last checkpoint get one.
			if err := p.SignPending(ctx); err != nil {
				p.noteError(err)
				p.log.Warn("integrity: could not sign a checkpoint", zap.Error(err))
			}
		}
		if !open {
			return nil
		}
	}
}

// signTimer fires when the entries stored since the last checkpoint are
// due one; nil when there are none, or integrity is off.
func (p *Postgres) signTimer() <-chan time.Time {
	if p.ilog == nil || p.ilog.tree.Size() <= p.ilog.signedSize {
		return nil
	}
	return time.After(max(0, p.cfg.Integrity.Interval-time.Since(p.ilog.signedAt)))
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
// It returns an empty batch when idle fires before a first transaction.
func (p *Postgres) collect(in <-chan *audit.Transaction, batch []*audit.Transaction, idle <-chan time.Time) ([]*audit.Transaction, bool) {
	n := 0
	var timer <-chan time.Time
	for {
		select {
		case <-idle:
			if len(batch) == 0 {
				return batch, true
			}
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
		if pg.Classify(err) == pg.Data && p.conn != nil && !p.conn.IsClosed() {
			err = p.writeIsolating(ctx, batch, err)
		}
		if err == nil {
			p.healthy.Store(true)
			p.cfg.Metrics.SinkUp.Set(1)
			return nil
		}
		p.healthy.Store(false)
		p.cfg.Metrics.SinkUp.Set(0)
		p.cfg.Metrics.Errors.WithLabelValues("sink").Inc()
		p.noteError(err)
		if !pg.Retryable(err) && (p.conn == nil || !p.conn.IsClosed()) {
			return err
		}
		if attempt == 1 || attempt%10 == 0 {
			p.log.Warn("sink write failed, retrying", zap.Int("attempt", attempt), zap.Duration("backoff", backoff), zap.Error(err))
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

// progressQuery reads the stored progress: this slot's newest checkpoint
// (end LSN and commit time; compared and sorted as pg_lsn, never as text)
// and the last entry id of the schema, which every writer and slot
// continues.
func (p *Postgres) progressQuery() string {
	return `SELECT c.end_lsn, c.committed_at,
			greatest((SELECT coalesce(max(last_id), 0) FROM ` + p.schema + `.checkpoints),
			         (SELECT coalesce(max(entry_id), 0) FROM ` + p.schema + `.gaps),
			         (SELECT coalesce(max(entry_id), 0) FROM ` + p.schema + `.prunes),
			         (SELECT coalesce(max(entry_id), 0) FROM ` + p.schema + `.own_entries))
		FROM (SELECT 1) one
		LEFT JOIN LATERAL (SELECT end_lsn, committed_at FROM ` + p.schema + `.checkpoints
			WHERE slot = $1 ORDER BY end_lsn DESC LIMIT 1) c ON true`
}

// writerTx is how every transaction that writes the trail begins: READ
// COMMITTED whatever the role's or the database's default, so that each
// statement after the writer lock sees what the lock's last holder
// committed (under REPEATABLE READ the snapshot would predate the wait).
var writerTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// readProgress loads the stored progress into p; with lock, under the
// schema's writer lock for the transaction q is in. The lock is taken by a
// statement of its own: a statement reads what was committed when it
// began, so a read in the statement that waited for the lock would miss
// what the lock's last holder committed meanwhile (and reuse its ids).
func (p *Postgres) readProgress(ctx context.Context, q querier, lock bool) error {
	var end *pglogrepl.LSN
	var committed *time.Time
	var lastID int64
	if lock {
		if _, err := q.Exec(ctx, `SELECT `+pg.AdvisoryLock(`'walscribe.sink.' || $1::text`), p.cfg.Schema); err != nil {
			return fmt.Errorf("take the writer lock: %w", err)
		}
	}
	if err := q.QueryRow(ctx, p.progressQuery(), p.cfg.Slot).Scan(&end, &committed, &lastID); err != nil {
		return fmt.Errorf("read the stored progress: %w", err)
	}
	p.lastEnd, p.lastID = 0, lastID
	if end != nil {
		p.lastEnd = *end
	}
	if committed != nil {
		p.lastCommitted = *committed
	}
	return nil
}

// lockAndReload takes the schema's writer lock for the transaction and
// reads the stored progress.
func (p *Postgres) lockAndReload(ctx context.Context, dbtx pgx.Tx) error {
	return p.readProgress(ctx, dbtx, true)
}

// RecordGap records a gap, once: in the gaps table and as an entry of the
// trail (action gap), and moves the stored progress to g.To when set. It
// reports whether the gap was new. Call it after Open, before Run.
func (p *Postgres) RecordGap(ctx context.Context, g audit.Gap) (bool, error) {
	dbtx, err := p.conn.BeginTx(ctx, writerTx)
	if err != nil {
		return false, fmt.Errorf("record gap: %w", err)
	}
	defer dbtx.Rollback(ctx)
	committed := false
	defer p.forgetUncommitted(&committed)
	if err := p.lockAndReload(ctx, dbtx); err != nil {
		return false, err
	}
	var logged *logUpdate
	if p.ilog != nil {
		base, err := p.checkHead(ctx, dbtx)
		if err != nil {
			return false, err
		}
		logged = &logUpdate{tree: base}
	}
	var known bool
	if err := dbtx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+p.schema+`.gaps WHERE slot = $1 AND reason = $2 AND from_lsn = $3)`,
		p.cfg.Slot, g.Reason, g.From).Scan(&known); err != nil {
		return false, fmt.Errorf("record gap: %w", err)
	}
	if known {
		return false, nil
	}
	var lastCommit any
	if !p.lastCommitted.IsZero() {
		lastCommit = p.lastCommitted
	}
	var to *pglogrepl.LSN
	if g.To != 0 {
		to = &g.To
	}
	id := p.lastID + 1
	now := time.Now().UTC()
	if err := p.ensureMonth(ctx, dbtx, now); err != nil {
		return false, err
	}
	var toText any
	if to != nil {
		toText = to.String()
	}
	detail, _ := json.Marshal(map[string]any{"reason": g.Reason, "slot": p.cfg.Slot, "from_lsn": g.From.String(),
		"to_lsn": toText, "last_commit": lastCommit, "detail": g.Detail})
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action, new)
		VALUES ($1, $2, 0, $3, 'walscribe', $4, 'gap', $5)`, id, g.From, now, p.cfg.Slot, string(detail)); err != nil {
		return false, fmt.Errorf("record gap entry: %w", err)
	}
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.gaps (slot, reason, from_lsn, to_lsn, last_commit, entry_id)
		VALUES ($1, $2, $3, $4, $5, $6)`, p.cfg.Slot, g.Reason, g.From, to, lastCommit, id); err != nil {
		return false, fmt.Errorf("record gap: %w", err)
	}
	if g.To > p.lastEnd {
		if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.checkpoints (slot, end_lsn, last_id, committed_at, entries)
			VALUES ($1, $2, $3, $4, 1)`, p.cfg.Slot, g.To, id, lastCommit); err != nil {
			return false, fmt.Errorf("record gap: %w", err)
		}
	}
	if logged != nil {
		around := &timeRange{lo: now.Add(-time.Second), hi: now.Add(time.Second)}
		if logged, err = p.appendLeaves(ctx, dbtx, logged.tree, id, id, around); err != nil {
			return false, err
		}
	}
	if err := dbtx.Commit(ctx); err != nil {
		return false, fmt.Errorf("record gap: %w", err)
	}
	committed = true
	p.applyLog(logged)
	p.lastID = id
	p.lastEnd = max(p.lastEnd, g.To)
	return true, nil
}

func (p *Postgres) ensureMonth(ctx context.Context, dbtx pgx.Tx, at time.Time) error {
	if p.months[monthKey(at)] {
		return nil
	}
	if _, err := dbtx.Exec(ctx, `SELECT `+p.schema+`.ensure_partitions($1, $1, $2)`, at, p.classes); err != nil {
		return fmt.Errorf("create partitions: %w", err)
	}
	p.months[monthKey(at)] = true
	p.uncommitted = append(p.uncommitted, monthKey(at))
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
	dbtx, err := p.conn.BeginTx(wctx, writerTx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer dbtx.Rollback(wctx)
	done := false
	defer p.forgetUncommitted(&done)
	// One writer at a time, and from the progress as stored: another
	// walscribe (a standby that took over, a second slot) may have written
	// since this one last did.
	if err := p.lockAndReload(wctx, dbtx); err != nil {
		return err
	}
	var logged *logUpdate
	if p.ilog != nil {
		base, err := p.checkHead(wctx, dbtx)
		if err != nil {
			return err
		}
		logged = &logUpdate{tree: base}
	}
	var keep []*audit.Transaction
	var rulesRecs []*audit.Transaction
	end := p.lastEnd
	committed := p.lastCommitted
	n := 0
	var at *timeRange
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
		if tx.Len() > 0 {
			c := tx.CommittedAt.UTC().Truncate(time.Microsecond)
			if at == nil {
				at = &timeRange{lo: c, hi: c}
			}
			at.lo, at.hi = minTime(at.lo, c), maxTime(at.hi, c)
		}
	}
	batch = keep
	if len(batch) == 0 && len(rulesRecs) == 0 {
		return nil
	}
	began := time.Now()
	var tally map[tallyKey]int
	noContext := 0
	var own *batchLeaves // the batch's rows, hashed by the sink
	if n > 0 {
		if err := p.ensureMonths(wctx, dbtx, batch); err != nil {
			return err
		}
		src := newCopyReader(batch, p.lastID+1)
		var hashed chan struct{}
		if logged != nil && p.cfg.Integrity.LeafHashing != HashServer {
			// The sink hashes the rows itself, those in memory beside the
			// COPY; captured_at is the transaction's now().
			var captured time.Time
			if err := dbtx.QueryRow(wctx, `SELECT now()`).Scan(&captured); err != nil {
				return fmt.Errorf("read the transaction's time: %w", err)
			}
			src.leaves = newBatchLeaves(p.lastID+1, n, captured)
			hashed = make(chan struct{})
			go func() {
				defer close(hashed)
				src.leaves.hashMemory(batch, logged.tree)
			}()
		}
		tag, err := dbtx.Conn().PgConn().CopyFrom(wctx, src, copyStatement(p.schema))
		src.stop()
		if hashed != nil {
			<-hashed
		}
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
		noContext = src.noContext
		own = src.leaves
	}
	if logged != nil && n > 0 {
		var err error
		if own != nil && len(own.leaves) != n {
			return fmt.Errorf("integrity: %d leaf hashes for %d entries", len(own.leaves), n)
		}
		if own != nil {
			p.inexact += len(own.inexact)
			logged, err = p.appendOwnLeaves(wctx, dbtx, logged.tree, own, at)
		} else {
			logged, err = p.appendLeaves(wctx, dbtx, logged.tree, p.lastID+1, p.lastID+int64(n), at)
		}
		if err != nil {
			return err
		}
		if p.signDue(logged.tree) {
			if err := p.sign(wctx, dbtx, logged); err != nil {
				return err
			}
		}
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
			VALUES ($1, $2, $3, $4, $5)`, p.cfg.Slot, end, p.lastID+int64(n), committedArg, n); err != nil {
			return fmt.Errorf("insert checkpoint: %w", err)
		}
	}
	if err := dbtx.Commit(wctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	done = true
	p.applyLog(logged)
	p.count(batch, tally, n, began)
	if noContext > 0 {
		p.cfg.Metrics.Errors.WithLabelValues("no_context").Add(float64(noContext))
	}
	p.lastEnd = end
	p.lastID += int64(n)
	p.lastCommitted = committed
	if n > 0 && p.cfg.Stored != nil {
		p.cfg.Stored(p.lastID-int64(n)+1, batch)
	}
	return nil
}

// querier is a connection or a transaction.
type querier interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}

func insertRules(ctx context.Context, q querier, schema, slot string, from pglogrepl.LSN, rules []byte, reason string) error {
	if _, err := q.Exec(ctx, `INSERT INTO `+schema+`.rules (slot, from_lsn, rules, reason) VALUES ($1, $2, $3, $4)`,
		slot, from, string(rules), reason); err != nil {
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
	// A class no month has a partition of yet (the configuration names
	// them all; this is a backstop): every month is checked again.
	for _, tx := range batch {
		for i := range tx.Entries {
			if c := tx.Entries[i].RetentionClass(); !slices.Contains(p.classes, c) {
				p.classes = append(p.classes, c)
				clear(p.months)
			}
		}
	}
	for _, tx := range batch {
		if tx.Len() == 0 {
			continue
		}
		k := monthKey(tx.CommittedAt)
		if p.months[k] {
			continue
		}
		if _, err := dbtx.Exec(ctx, `SELECT `+p.schema+`.ensure_partitions($1, $1, $2)`, tx.CommittedAt, p.classes); err != nil {
			return fmt.Errorf("create partitions: %w", err)
		}
		p.months[k] = true
		p.uncommitted = append(p.uncommitted, k)
	}
	return nil
}

// forgetUncommitted is deferred by each database transaction that may
// create partitions: unless it committed, the partitions it created are
// gone with it, and must not be taken as known.
func (p *Postgres) forgetUncommitted(committed *bool) {
	if !*committed {
		for _, k := range p.uncommitted {
			delete(p.months, k)
		}
	}
	p.uncommitted = p.uncommitted[:0]
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

// bounded is k with labels from a bounded set: a row action's table comes
// from the publication, but an application event's action and target are
// anyone's words, and each distinct label would be a time series kept for
// ever. Events count under action "event", with no schema or table.
func (k tallyKey) bounded() tallyKey {
	switch k.action {
	case audit.Insert, audit.Update, audit.Delete, audit.Truncate, "gap":
		return k
	}
	k.schema, k.table, k.action = "", "", "event"
	return k
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

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
