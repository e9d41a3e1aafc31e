// Package daemon runs the pipeline: the replication stream (cdc) feeds the
// decoder on one goroutine, whole transactions go to the sink on another,
// and the sink's durable LSN flows back to be acknowledged. Nothing is
// acknowledged before the sink has committed it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/catalog"
	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/decoder"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/rules"
	"github.com/walscribe/walscribe/sink"
	"github.com/walscribe/walscribe/spool"
)

// Config is what the daemon needs.
type Config struct {
	SourceDSN   string
	Slot        string
	Publication string
	// StatusInterval is how often the acknowledged position is sent, and how
	// often an idle slot is advanced.
	StatusInterval time.Duration
	Sink           sink.Config
	// Rules say what is recorded of each table; nil records every change
	// of every published table whole.
	Rules *rules.Set
	// Spool says where transactions too large for memory go.
	Spool spool.Config
	// RecreateLostSlot: when the slot is gone or lost, record the gap and
	// create a new slot, instead of stopping with an error.
	RecreateLostSlot bool
	// Metrics are updated as the daemon works; nil counts nowhere.
	Metrics *metrics.Metrics
	// SlotPollInterval is how often the slot's state (retained WAL,
	// wal_status) is read for the metrics. Default 15s.
	SlotPollInterval time.Duration
}

// Daemon streams one slot into one sink.
type Daemon struct {
	cfg     Config
	log     *zap.Logger
	sink    *sink.Postgres
	catalog *catalog.Catalog
	dec     *decoder.Decoder

	durable atomic.Uint64 // LSN the sink has committed: safe to acknowledge
	queued  pglogrepl.LSN // end LSN of the last transaction handed to the sink (stream goroutine only)
	walEnd  pglogrepl.LSN // the server's WAL end from the last keepalive (stream goroutine only)
	idleAt  time.Time     // when the slot was last advanced while idle
	invalid int           // decoder.InvalidContexts already logged
	reload  chan *rules.Set
	spool   *spool.Spool
	m       *metrics.Metrics

	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time

	streaming   atomic.Bool  // a replication session streams
	lastMessage atomic.Int64 // unix nanoseconds of the last message received
	spills      int64        // spool.Spills already counted
}

// Spool returns the daemon's spool, for its counters.
func (d *Daemon) Spool() *spool.Spool { return d.spool }

// New returns a daemon; it does no I/O until Run.
func New(cfg Config, log *zap.Logger) *Daemon {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 10 * time.Second
	}
	cat := catalog.New(cfg.SourceDSN)
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
	cfg.Sink.Metrics = cfg.Metrics
	if cfg.SlotPollInterval <= 0 {
		cfg.SlotPollInterval = 15 * time.Second
	}
	if cfg.Spool.Prefix == "" {
		cfg.Spool.Prefix = "walscribe-" + cfg.Slot
	}
	sp := spool.New(cfg.Spool)
	d := &Daemon{
		spool:   sp,
		cfg:     cfg,
		log:     log,
		catalog: cat,
		dec:     decoder.New(cat, sp),
		m:       cfg.Metrics,
		reload:  make(chan *rules.Set, 1),
	}
	d.cfg.Sink.OnError = d.noteError
	d.sink = sink.NewPostgres(d.cfg.Sink, log)
	return d
}

// stored is the sink's report that everything up to lsn is stored; pending
// transactions are still queued.
func (d *Daemon) stored(lsn pglogrepl.LSN, pending int) {
	d.durable.Store(uint64(lsn))
	d.m.AcknowledgedLSN.Set(float64(lsn))
	if s := d.spool.Spills.Load(); s != d.spills {
		d.m.Spills.Add(float64(s - d.spills))
		d.spills = s
	}
	if pending == 0 {
		d.m.LagSeconds.Set(0)
	} else if at := d.sink.LastCommitted(); !at.IsZero() {
		d.m.LagSeconds.Set(max(0, time.Since(at).Seconds()))
	}
}

// pollSlot reads the slot's state for the metrics until ctx is done.
func (d *Daemon) pollSlot(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	t := time.NewTicker(d.cfg.SlotPollInterval)
	defer t.Stop()
	for {
		if conn == nil || conn.IsClosed() {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			c, err := pgx.Connect(cctx, d.cfg.SourceDSN)
			cancel()
			if err == nil {
				conn = c
			}
		}
		if conn != nil {
			slot, err := cdc.ReadSlot(ctx, conn, d.cfg.Slot)
			switch {
			case errors.Is(err, cdc.ErrNoSlot):
				d.m.SetWALStatus("missing")
				d.m.SlotActive.Set(0)
			case err == nil:
				d.m.SetWALStatus(slot.WALStatus)
				d.m.SlotRetainedBytes.Set(float64(max(0, slot.RetainedBytes())))
				if slot.Active {
					d.m.SlotActive.Set(1)
				} else {
					d.m.SlotActive.Set(0)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// noteError remembers the last error, for /readyz and walscribe status.
func (d *Daemon) noteError(msg string) {
	d.errMu.Lock()
	d.lastErr, d.lastErrAt = msg, time.Now().UTC()
	d.errMu.Unlock()
}

// Readiness says whether the daemon does its job: streaming, and the sink
// writable. Reason says why not.
type Readiness struct {
	Ready     bool   `json:"ready"`
	Streaming bool   `json:"streaming"`
	Sink      bool   `json:"sink_writable"`
	Reason    string `json:"reason,omitempty"`
	// LastError is the last error the daemon met (and retried), with its
	// time; empty when none.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// Ready reports the daemon's readiness.
func (d *Daemon) Ready() Readiness {
	r := Readiness{Streaming: d.streaming.Load(), Sink: d.sink.Healthy()}
	d.errMu.Lock()
	if d.lastErr != "" {
		at := d.lastErrAt
		r.LastError, r.LastErrorAt = d.lastErr, &at
	}
	d.errMu.Unlock()
	if last := d.lastMessage.Load(); r.Streaming && time.Since(time.Unix(0, last)) > stallTimeout {
		r.Streaming = false
	}
	switch {
	case !r.Streaming && !r.Sink:
		r.Reason = "not streaming from the source, and the sink is not writable"
	case !r.Streaming:
		r.Reason = "not streaming from the source (connecting, standing by, or the source is unreachable)"
	case !r.Sink:
		r.Reason = "the sink is not writable: the last write failed"
	}
	r.Ready = r.Streaming && r.Sink
	return r
}

// Reload makes rs the rules in force from the next transaction the stream
// delivers; the change and its position are recorded in the audit schema.
// It is safe to call from any goroutine; a reload not yet applied is
// replaced by the newer one.
func (d *Daemon) Reload(rs *rules.Set) {
	for {
		select {
		case d.reload <- rs:
			return
		default:
		}
		select {
		case <-d.reload:
		default:
		}
	}
}

// Durable returns the last LSN stored by the sink.
func (d *Daemon) Durable() pglogrepl.LSN { return pglogrepl.LSN(d.durable.Load()) }

// Run streams until ctx is cancelled, then stores what it has received,
// acknowledges it, and returns nil. It returns an error when it cannot go on:
// the slot or the audit schema is missing, or the sink rejects a write.
func (d *Daemon) Run(ctx context.Context) error {
	// Files a killed predecessor left behind.
	if err := d.spool.Clean(); err != nil {
		d.log.Warn("cannot remove old spill files", zap.Error(err))
	}
	slot, err := d.open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: nothing received, nothing to store
		}
		return err
	}
	defer d.sink.Close(context.WithoutCancel(ctx))
	defer d.catalog.Close(context.WithoutCancel(ctx))

	start, lastID := d.sink.Progress()
	if start, err = d.checkSlot(ctx, slot, start); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	d.durable.Store(uint64(start))
	d.queued = start
	d.dec.SetRules(d.cfg.Rules)
	if d.cfg.Rules != nil {
		recorded, err := d.sink.RecordRules(ctx, start, d.cfg.Rules.Describe(), "start")
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if recorded {
			d.log.Info("rules recorded", zap.Stringer("from_lsn", start))
		}
	}
	d.log.Info("starting", zap.String("slot", d.cfg.Slot), zap.Stringer("lsn", start), zap.Int64("last_id", lastID))

	// The queue holds decoded transactions the sink has not taken yet: each
	// at most a spool's worth of memory (larger ones are files), so its
	// length bounds the memory it holds, about 64 MiB.
	txnMemory := d.cfg.Spool.TxnMemory
	if txnMemory <= 0 {
		txnMemory = 8 << 20
	}
	ch := make(chan *audit.Transaction, max(4, min(64, int((64<<20)/txnMemory))))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return d.sink.Run(gctx, ch, func(lsn pglogrepl.LSN) { d.stored(lsn, len(ch)) })
	})
	// The poller ends with the stream: a stream that stops on an error
	// retrying cannot fix must not leave Run waiting for it.
	pollCtx, stopPoll := context.WithCancel(gctx)
	defer stopPoll()
	g.Go(func() error {
		d.pollSlot(pollCtx)
		return nil
	})
	conn, streamErr := d.stream(gctx, ch)
	stopPoll()
	close(ch)
	sinkErr := g.Wait()
	if conn != nil {
		if sinkErr == nil {
			// Acknowledge what the drain stored, and wait for the server to
			// take it. If this fails the stored progress still rules: the
			// server resends, and the sink skips what it holds.
			if err := conn.Stop(context.WithoutCancel(ctx), d.Durable(), 5*time.Second); err != nil {
				d.log.Warn("final acknowledgement failed", zap.Error(err))
			}
		} else {
			conn.Close(context.WithoutCancel(ctx))
		}
	}
	if err := errors.Join(sinkErr, streamErr); err != nil {
		return err
	}
	d.log.Info("stopped", zap.Stringer("lsn", d.Durable()))
	return nil
}

// checkSlot compares the slot with the stored progress, and returns where
// to resume. A slot that is gone, lost (wal_status lost) or ahead of the
// stored progress means changes the trail cannot hold: that is recorded as
// a gap, loudly, never skipped in silence. A gone or lost slot is recreated
// only when the configuration says so.
func (d *Daemon) checkSlot(ctx context.Context, slot *cdc.Slot, stored pglogrepl.LSN) (pglogrepl.LSN, error) {
	reason := ""
	switch {
	case slot == nil && stored == 0:
		return 0, fmt.Errorf("%w: %q (run `walscribe setup`)", cdc.ErrNoSlot, d.cfg.Slot)
	case slot == nil:
		reason = "slot_missing"
	case slot.WALStatus == "lost":
		reason = "slot_lost"
	case stored == 0:
		return slot.ConfirmedFlushLSN, nil
	case slot.ConfirmedFlushLSN > stored:
		g := sink.Gap{Reason: "slot_ahead", From: stored, To: slot.ConfirmedFlushLSN,
			Detail: "the slot was moved past what the trail holds: the changes between these positions were acknowledged but not stored"}
		d.gap(ctx, g)
		return slot.ConfirmedFlushLSN, nil
	default:
		return stored, nil
	}
	detail := "the replication slot was dropped"
	if reason == "slot_lost" {
		detail = "the server removed WAL the slot still needed (wal_status lost, see max_slot_wal_keep_size)"
	}
	if !d.cfg.RecreateLostSlot {
		d.gap(ctx, sink.Gap{Reason: reason, From: stored, Detail: detail})
		return 0, fmt.Errorf("replication slot %q: %s, so the changes after %s are not in the trail (recorded as a gap entry): "+
			"set source.recreate_lost_slot: true to create a new slot and go on from now", d.cfg.Slot, detail, stored)
	}
	conn, err := pgx.Connect(ctx, d.cfg.SourceDSN)
	if err != nil {
		return 0, fmt.Errorf("connect to source: %w", err)
	}
	defer conn.Close(ctx)
	if slot != nil {
		if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, d.cfg.Slot); err != nil {
			return 0, fmt.Errorf("drop the lost slot %q: %w", d.cfg.Slot, err)
		}
	}
	if _, err := cdc.EnsureSlot(ctx, conn, d.cfg.Slot, time.Minute); err != nil {
		return 0, err
	}
	fresh, err := cdc.ReadSlot(ctx, conn, d.cfg.Slot)
	if err != nil {
		return 0, err
	}
	d.gap(ctx, sink.Gap{Reason: reason, From: stored, To: fresh.ConfirmedFlushLSN, Detail: detail + "; a new slot was created"})
	return fresh.ConfirmedFlushLSN, nil
}

// gap records g and says so in the log.
func (d *Daemon) gap(ctx context.Context, g sink.Gap) {
	recorded, err := d.sink.RecordGap(ctx, g)
	if err != nil {
		d.log.Error("cannot record a gap in the trail", zap.String("reason", g.Reason), zap.Error(err))
		return
	}
	if recorded {
		d.log.Error("gap in the audit trail: changes between these positions are missing", zap.String("slot", d.cfg.Slot),
			zap.String("reason", g.Reason), zap.Stringer("from_lsn", g.From), zap.Stringer("to_lsn", g.To), zap.String("detail", g.Detail))
		d.m.Gaps.Inc()
	}
}

// open connects the sink, loads the stored progress and reads the slot,
// waiting with backoff while a database is unreachable (starting up,
// restarting, the network down). Errors retrying cannot fix (no audit
// schema, no slot, no rights) return at once.
func (d *Daemon) open(ctx context.Context) (*cdc.Slot, error) {
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		err := d.sink.Open(ctx)
		if err == nil {
			var slot *cdc.Slot
			if slot, err = d.readSlot(ctx); err == nil {
				return slot, nil
			}
			if errors.Is(err, cdc.ErrNoSlot) {
				return nil, nil // checkSlot decides
			}
			d.sink.Close(context.WithoutCancel(ctx))
		}
		if !sink.Retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		if attempt == 1 || attempt%10 == 0 {
			d.log.Warn("cannot start yet; retrying", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retry_in", backoff))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (d *Daemon) readSlot(ctx context.Context) (*cdc.Slot, error) {
	conn, err := pgx.Connect(ctx, d.cfg.SourceDSN)
	if err != nil {
		return nil, fmt.Errorf("connect to source: %w", err)
	}
	defer conn.Close(ctx)
	return cdc.ReadSlot(ctx, conn, d.cfg.Slot)
}

// stream keeps a replication session up, reconnecting with backoff, until ctx
// is done; then it returns the open connection (if any) for the final
// acknowledgement. It returns an error only for what retrying cannot fix.
func (d *Daemon) stream(ctx context.Context, ch chan<- *audit.Transaction) (*cdc.Conn, error) {
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		conn, progressed, err := d.session(ctx, ch)
		if ctx.Err() != nil {
			return conn, nil
		}
		if conn != nil {
			conn.Close(ctx)
		}
		if fatal(err) {
			return nil, err
		}
		if progressed {
			backoff, attempt = time.Second, 1
		}
		if cdc.SQLState(err) == "55006" {
			// Another walscribe streams this slot: stand by, and take over
			// within a couple of seconds of it going away.
			if attempt == 1 || attempt%30 == 0 {
				d.log.Info("the slot is in use by another process; standing by", zap.String("slot", d.cfg.Slot))
			}
			backoff = standbyRetry
		} else {
			d.m.Reconnects.Inc()
			d.m.Errors.WithLabelValues("stream").Inc()
			d.log.Warn("replication stream broke; reconnecting", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retry_in", backoff))
			d.noteError("stream: " + err.Error())
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// stallTimeout is how long the stream may stay silent before the watchdog
// reconnects: well above the server's keepalive interval (half of
// wal_sender_timeout, 30 s by default).
var stallTimeout = 2 * time.Minute

// standbyRetry is how often a standby tries to take the slot over.
const standbyRetry = 2 * time.Second

// fatal reports errors that reconnecting will not fix.
func fatal(err error) bool {
	switch cdc.SQLState(err) {
	case "42704": // undefined_object: the slot or the publication is gone
		return true
	case "28000", "28P01", "42501": // authentication, privileges
		return true
	}
	var decodeErr *decodeError
	return errors.As(err, &decodeErr)
}

type decodeError struct{ err error }

func (e *decodeError) Error() string { return "decode: " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// session runs one replication session. It returns the connection when ctx
// ended it, and whether it received anything.
func (d *Daemon) session(ctx context.Context, ch chan<- *audit.Transaction) (*cdc.Conn, bool, error) {
	conn, err := cdc.Dial(ctx, d.cfg.SourceDSN)
	if err != nil {
		return nil, false, err
	}
	// Resume after what the sink holds or will hold: transactions already
	// queued are not asked for again.
	start := max(d.Durable(), d.queued)
	if err := conn.Start(ctx, d.cfg.Slot, d.cfg.Publication, start); err != nil {
		return conn, false, err
	}
	d.dec.Reset()
	d.log.Info("streaming", zap.String("slot", d.cfg.Slot), zap.Stringer("from", start))
	d.streaming.Store(true)
	d.m.Streaming.Set(1)
	defer func() {
		d.streaming.Store(false)
		d.m.Streaming.Set(0)
	}()
	progressed := false
	now := time.Now() // as of the last receive: one clock read per message
	nextStatus, lastMessage := now, now
	for {
		if ctx.Err() != nil {
			return conn, progressed, nil
		}
		if !now.Before(nextStatus) {
			if err := conn.SendStatus(ctx, d.Durable()); err != nil {
				return conn, progressed, err
			}
			// Caught up (nothing decoded waits for the sink, no transaction
			// in progress): no lag, whatever other WAL the server wrote.
			if d.dec.Busy() || d.queued != d.Durable() {
				d.m.LagBytes.Set(float64(max(0, int64(d.walEnd)-int64(d.Durable()))))
			} else {
				d.m.LagBytes.Set(0)
			}
			nextStatus = now.Add(d.cfg.StatusInterval)
		}
		msg, err := conn.Receive(ctx, nextStatus)
		now = time.Now()
		if errors.Is(err, cdc.ErrTimeout) {
			// The server sends at least a keepalive every half
			// wal_sender_timeout; silence far longer than that is a stream
			// that stopped moving (a half-open connection): start over.
			if since := now.Sub(lastMessage); since > stallTimeout {
				return conn, progressed, fmt.Errorf("watchdog: nothing received from the server for %s", since.Round(time.Second))
			}
			continue
		}
		if err != nil {
			return conn, progressed, err
		}
		lastMessage = now
		d.lastMessage.Store(now.UnixNano())
		progressed = true
		if msg.ServerWALEnd > d.walEnd {
			d.walEnd = msg.ServerWALEnd
		}
		if msg.Data == nil { // keepalive
			if msg.ReplyRequested {
				nextStatus = now
			}
			if !d.dec.Busy() {
				if err := d.applyReload(ctx, conn, ch); err != nil {
					return conn, progressed, err
				}
			}
			if err := d.advanceIdle(ctx, conn, ch); err != nil {
				return conn, progressed, err
			}
			continue
		}
		if !d.dec.Busy() {
			if err := d.applyReload(ctx, conn, ch); err != nil {
				return conn, progressed, err
			}
		}
		tx, err := d.dec.Decode(ctx, msg.Data)
		if err != nil {
			d.m.Errors.WithLabelValues("decode").Inc()
			return conn, progressed, &decodeError{err}
		}
		if n := d.dec.InvalidContexts; n != d.invalid {
			d.m.Errors.WithLabelValues("invalid_context").Add(float64(n - d.invalid))
			d.logInvalid(n)
		}
		if tx != nil {
			d.m.Transactions.Inc()
			d.m.ChangesDecoded.Add(float64(tx.Len()))
			if err := d.queue(ctx, conn, ch, tx); err != nil {
				return conn, progressed, err
			}
		}
	}
}

// applyReload puts new rules in force between two transactions, and queues
// their record: they apply to the transactions that end after everything
// decoded so far.
func (d *Daemon) applyReload(ctx context.Context, conn *cdc.Conn, ch chan<- *audit.Transaction) error {
	var rs *rules.Set
	select {
	case rs = <-d.reload:
	default:
		return nil
	}
	d.dec.SetRules(rs)
	d.cfg.Rules = rs
	d.log.Info("rules reloaded", zap.Stringer("from_lsn", d.queued))
	if rs == nil {
		return nil
	}
	return d.queue(ctx, conn, ch, &audit.Transaction{Rules: rs.Describe(), RulesFrom: d.queued, RulesReason: "reload"})
}

// logInvalid reports context values that were kept as text because they
// could not be stored as given: the first, then one line per 1,000.
func (d *Daemon) logInvalid(n int) {
	if d.invalid == 0 || n/1000 != d.invalid/1000 {
		d.log.Warn("context kept as text: the application set a value that is not valid (the change is recorded; see invalid_context / invalid_ip in the entry's context)",
			zap.Int("total", n), zap.String("last", d.dec.LastInvalid))
	}
	d.invalid = n
}

// queue hands a transaction to the sink. While the sink is busy it keeps
// the walsender informed, so a slow sink does not get the stream killed.
func (d *Daemon) queue(ctx context.Context, conn *cdc.Conn, ch chan<- *audit.Transaction, tx *audit.Transaction) error {
	if tx.Rules == nil && tx.EndLSN <= d.queued {
		return nil // replayed: already stored or on its way
	}
	select {
	case ch <- tx: // the usual case: no timer needed
		d.queued = max(d.queued, tx.EndLSN)
		return nil
	default:
	}
	for {
		select {
		case ch <- tx:
			d.queued = max(d.queued, tx.EndLSN)
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(d.cfg.StatusInterval):
			if err := conn.SendStatus(ctx, d.Durable()); err != nil {
				return err
			}
		}
	}
}

// idleGap is how far the server's WAL may move past the stored progress,
// while the tracked tables are idle, before the progress is advanced sooner
// than idleMaxWait.
const (
	idleGap     = 64 << 10
	idleMaxWait = 5 * time.Minute
)

// advanceIdle moves the stored progress to the server's WAL end when nothing
// is in flight: WAL written elsewhere (other tables, other databases, the
// sink itself) would otherwise be kept on disk for ever. The marker goes
// through the sink like a transaction, so it is stored — and acknowledged —
// only after everything before it.
func (d *Daemon) advanceIdle(ctx context.Context, conn *cdc.Conn, ch chan<- *audit.Transaction) error {
	if d.dec.InTransaction() || d.walEnd <= d.queued || d.queued != d.Durable() {
		return nil
	}
	since := time.Since(d.idleAt)
	if since < d.cfg.StatusInterval || (d.walEnd-d.queued < idleGap && since < idleMaxWait) {
		return nil
	}
	d.idleAt = time.Now()
	return d.queue(ctx, conn, ch, &audit.Transaction{EndLSN: d.walEnd})
}
