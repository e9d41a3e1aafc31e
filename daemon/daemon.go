// Package daemon runs the pipeline: the replication stream (cdc) feeds the
// decoder on one goroutine, whole transactions go to the sink on another,
// and the sink's durable LSN flows back to be acknowledged. Nothing is
// acknowledged before the sink has committed it — except WAL the daemon has
// read to the end without finding anything to store (see idle.go).
//
// The files follow the concerns: daemon.go (configuration, the Sink the
// daemon writes to, Run), startup.go (opening the sink, checking the slot,
// gaps), stream.go (the replication session), idle.go (progress while
// nothing is tracked), lag.go (lag and slot metrics) and ready.go (readiness).
package daemon

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/catalog"
	"github.com/walscribe/walscribe/decoder"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/rules"
	"github.com/walscribe/walscribe/spool"
)

// Sink is where the daemon stores what it decodes: the PostgreSQL sink
// (sink.Postgres), or any other target that keeps these promises.
type Sink interface {
	// Open connects and loads the stored progress; errors that retrying
	// may fix are classified retryable by internal/pg.
	Open(ctx context.Context) error
	// Progress is the end LSN of the last transaction stored (0: none) and
	// the last entry id.
	Progress() (pglogrepl.LSN, int64)
	// RecordGap records a gap once (reporting whether it was new) and moves
	// the stored progress to its To, when set.
	RecordGap(ctx context.Context, g audit.Gap) (bool, error)
	// RecordRules records the rules in force from a position, unless they
	// are the last ones recorded (reporting whether it recorded them).
	RecordRules(ctx context.Context, from pglogrepl.LSN, rules []byte, reason string) (bool, error)
	// Run stores the transactions arriving on in, in order, skipping those
	// at or below the stored progress, and calls durable with the end LSN of
	// everything stored so far after each commit. It returns when in is
	// closed and drained (nil) or on a permanent error.
	Run(ctx context.Context, in <-chan *audit.Transaction, durable func(pglogrepl.LSN)) error
	// Health says whether the last write succeeded, and the last error met.
	Health() (ok bool, lastErr string, at time.Time)
	Close(ctx context.Context) error
}

// Config is what the daemon needs. Zero durations take the defaults named.
type Config struct {
	SourceDSN   string
	Slot        string
	Publication string
	// BridgeSchema is the schema of the context bridge in the source
	// database (sink.schema): its triggers are checked.
	BridgeSchema string
	// StatusInterval is how often the acknowledged position is sent, and how
	// often an idle slot is advanced. Default 10s.
	StatusInterval time.Duration
	// Rules say what is recorded of each table; nil records every change
	// of every published table whole.
	Rules *rules.Set
	// Spool says where transactions too large for memory go; its directory
	// also keeps the idle acknowledgement note (idle.go).
	Spool spool.Config
	// RecreateLostSlot: when the slot is gone or lost, record the gap and
	// create a new slot, instead of stopping with an error.
	RecreateLostSlot bool
	// Metrics are updated as the daemon works; nil counts nowhere.
	Metrics *metrics.Metrics
	// SlotPollInterval is how often the slot's state (retained WAL,
	// wal_status, the server's WAL position) is read. Default 15s.
	SlotPollInterval time.Duration
	// LagInterval is how often the lag metrics are computed. Default 1s.
	LagInterval time.Duration
	// StallTimeout is how long the stream may stay silent before it is
	// taken for dead and reconnected: well above the server's keepalive
	// interval (half of wal_sender_timeout, 30s by default). Default 2m.
	StallTimeout time.Duration
	// StandbyRetry is how often a standby (another walscribe streams the
	// slot) tries to take the slot over. Default 2s.
	StandbyRetry time.Duration
	// MaxBackoff caps the wait between reconnection attempts. Default 30s.
	MaxBackoff time.Duration
	// Limits bound what contexts and events put into each entry.
	Limits decoder.Limits
	// IdleGap is how far the server's WAL may move past the stored progress
	// while the tracked tables are idle before the progress is stored
	// sooner than IdleMaxWait. Defaults 64 KiB and 5m.
	IdleGap     int64
	IdleMaxWait time.Duration
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.StatusInterval, 10*time.Second)
	def(&c.SlotPollInterval, 15*time.Second)
	def(&c.LagInterval, time.Second)
	def(&c.StallTimeout, 2*time.Minute)
	def(&c.StandbyRetry, 2*time.Second)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.IdleMaxWait, 5*time.Minute)
	if c.IdleGap <= 0 {
		c.IdleGap = 64 << 10
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Discard()
	}
	if c.Spool.Prefix == "" {
		c.Spool.Prefix = "walscribe-" + c.Slot
	}
}

// Daemon streams one slot into one sink.
type Daemon struct {
	cfg     Config
	log     *zap.Logger
	sink    Sink
	catalog *catalog.Catalog
	dec     *decoder.Decoder
	spool   *spool.Spool
	m       *metrics.Metrics
	reload  chan *rules.Set

	durable atomic.Uint64 // LSN the sink has committed: safe to acknowledge
	// The stream goroutine's own state.
	queued  pglogrepl.LSN // end LSN of the last transaction handed to the sink
	idleAt  time.Time     // when the idle progress was last stored
	invalid int           // decoder.InvalidContexts already logged
	spills  int64         // spool.Spills already counted
	// acked is the position last acknowledged to the server: the durable
	// LSN, or past it when the daemon was idle (idle.go).
	acked pglogrepl.LSN
	// database is the source database's name, as the slot reports it, and
	// systemID the server's system identifier: what an idle note is for.
	database string
	systemID string
	// recreated is the gap of a slot this daemon recreated, until it is
	// recorded: a retry finds the new slot ahead, and records the gap for
	// what it is.
	recreated audit.Gap

	lag lagState

	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time

	streaming   atomic.Bool  // a replication session streams
	lastMessage atomic.Int64 // unix nanoseconds of the last message received
}

// New returns a daemon writing to snk; it does no I/O until Run.
func New(cfg Config, snk Sink, log *zap.Logger) *Daemon {
	cfg.defaults()
	cat := catalog.New(cfg.SourceDSN)
	sp := spool.New(cfg.Spool)
	dec := decoder.New(cat, sp)
	dec.SetLimits(cfg.Limits)
	dec.BridgeSchema = cfg.BridgeSchema
	return &Daemon{
		cfg:     cfg,
		log:     log,
		sink:    snk,
		catalog: cat,
		dec:     dec,
		spool:   sp,
		m:       cfg.Metrics,
		reload:  make(chan *rules.Set, 1),
	}
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

// StoredThrough reports whether every transaction the source committed
// before lsn is stored (or is of no tracked table): the server's walsender
// has read past lsn, and nothing waits in walscribe.
func (d *Daemon) StoredThrough(lsn pglogrepl.LSN) bool { return d.lag.storedThrough(lsn) }

// stored is the sink's report that everything up to lsn is stored. The
// durable position only moves forward.
func (d *Daemon) stored(lsn pglogrepl.LSN) {
	for {
		old := d.durable.Load()
		if uint64(lsn) <= old || d.durable.CompareAndSwap(old, uint64(lsn)) {
			break
		}
	}
	lsn = d.Durable()
	d.lag.stored(lsn)
	d.m.AcknowledgedLSN.Set(float64(lsn))
}

// Run streams until ctx is cancelled, then stores what it has received,
// acknowledges it, and returns nil. It returns an error when it cannot go on:
// the slot or the audit schema is missing, a gap cannot be recorded, or the
// sink rejects a write.
func (d *Daemon) Run(ctx context.Context) error {
	// Files a killed predecessor left behind.
	if err := d.spool.Clean(); err != nil {
		d.log.Warn("cannot remove old spill files", zap.Error(err))
	}
	defer d.catalog.Close(context.WithoutCancel(ctx))
	for {
		err := d.runOnce(ctx)
		if !errors.Is(err, errSlotChanged) || ctx.Err() != nil {
			return err
		}
		// What was received is stored; the start checks the slot against
		// it again, and records the gap.
		d.log.Warn("the slot changed while the stream was down; checking it against the trail", zap.Error(err))
	}
}

// runOnce starts from the stored progress and streams until ctx is done or
// the stream stops.
func (d *Daemon) runOnce(ctx context.Context) error {
	start, err := d.start(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: nothing received, nothing to store
		}
		return err
	}
	defer d.sink.Close(context.WithoutCancel(ctx))
	stored, _ := d.sink.Progress()
	d.durable.Store(uint64(stored))
	d.queued, d.acked = stored, start
	d.lag.stored(stored)

	// The queue holds decoded transactions the sink has not taken yet: each
	// at most a spool's worth of memory (larger ones are files), so its
	// length bounds the memory it holds, about 64 MiB.
	txnMemory := d.cfg.Spool.TxnMemory
	if txnMemory <= 0 {
		txnMemory = 8 << 20
	}
	ch := make(chan *audit.Transaction, max(4, min(64, int((64<<20)/txnMemory))))
	if start > stored {
		// The slot is ahead of the trail by a stretch that holds nothing to
		// store (a new trail, an idle advance, a recorded gap): store its
		// position first, so that what is stored and what the daemon
		// holds for durable stay one.
		ch <- &audit.Transaction{EndLSN: start}
		d.queued = start
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return d.sink.Run(gctx, ch, func(lsn pglogrepl.LSN) {
			d.stored(lsn)
			if s := d.spool.Spills.Load(); s != d.spills {
				d.m.Spills.Add(float64(s - d.spills))
				d.spills = s
			}
		})
	})
	// The watchers end with the stream: a stream that stops on an error
	// retrying cannot fix must not leave Run waiting for them.
	watchCtx, stopWatching := context.WithCancel(gctx)
	defer stopWatching()
	g.Go(func() error {
		d.pollSlot(watchCtx)
		return nil
	})
	g.Go(func() error {
		d.measureLag(watchCtx)
		return nil
	})
	conn, streamErr := d.stream(gctx, ch)
	stopWatching()
	close(ch)
	sinkErr := g.Wait()
	if conn != nil {
		if sinkErr == nil {
			// Acknowledge what the drain stored, and wait for the server to
			// take it. If this fails the stored progress still rules: the
			// server resends, and the sink skips what it holds.
			if err := conn.Stop(context.WithoutCancel(ctx), max(d.Durable(), d.acked), 5*time.Second); err != nil {
				d.log.Warn("final acknowledgement failed", zap.Error(err))
			}
		} else {
			conn.Close(context.WithoutCancel(ctx))
		}
	}
	if err := errors.Join(sinkErr, streamErr); err != nil {
		if sinkErr == nil {
			return streamErr // errSlotChanged stays recognisable
		}
		return err
	}
	d.log.Info("stopped", zap.Stringer("lsn", d.Durable()))
	return nil
}
