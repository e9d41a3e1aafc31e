package daemon

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/setup"
)

// lagState is what the lag is computed from: the transactions handed to the
// sink and not yet stored (oldest first), whether a transaction is being
// decoded, the durable LSN, and the furthest WAL position the source has
// reported (in the stream, or when the slot is polled). The stream and the
// sink update it; a timer reads it, so the lag keeps rising while the sink
// is stuck or the queue is full.
type lagState struct {
	mu      sync.Mutex
	pending []pendingTx // oldest first; pending[head:] are live
	head    int
	durable pglogrepl.LSN
	// Set for every message: atomics, not the mutex.
	busy      atomic.Bool
	sourceEnd atomic.Uint64
	// sent is how far the server's walsender has read the WAL for
	// walscribe: the position of its latest change or keepalive. While it
	// decodes a backlog (WAL of tables walscribe does not track included)
	// nothing may wait in walscribe, yet the slot is far behind.
	sent atomic.Uint64
}

// walsenderSlack is how far the source's WAL position, polled, may be ahead
// of the walsender's last message without counting as lag: the poll and the
// walsender's keepalives are not taken at the same moment.
const walsenderSlack = 16 << 20

type pendingTx struct {
	end       pglogrepl.LSN
	committed time.Time
}

// queued notes a transaction handed to the sink (just after: the sink may
// have stored it already).
func (l *lagState) queued(tx *audit.Transaction) {
	if tx.CommittedAt.IsZero() || tx.EndLSN == 0 {
		return // rules records, idle progress: no source commit waits
	}
	l.mu.Lock()
	if tx.EndLSN <= l.durable { // stored before it was noted
		l.mu.Unlock()
		return
	}
	if l.head > 0 && l.head == len(l.pending) {
		l.pending, l.head = l.pending[:0], 0
	}
	l.pending = append(l.pending, pendingTx{end: tx.EndLSN, committed: tx.CommittedAt})
	l.mu.Unlock()
}

// storedThrough reports whether everything committed before lsn is stored:
// the walsender has read past it, no transaction is being decoded, and none
// waits for the sink.
func (l *lagState) storedThrough(lsn pglogrepl.LSN) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head == len(l.pending) && !l.busy.Load() && max(pglogrepl.LSN(l.sent.Load()), l.durable) >= lsn
}

// stored notes that everything up to lsn is stored.
func (l *lagState) stored(lsn pglogrepl.LSN) {
	l.mu.Lock()
	l.durable = max(l.durable, lsn)
	for l.head < len(l.pending) && l.pending[l.head].end <= lsn {
		l.head++
	}
	if l.head > 1024 && l.head*2 > len(l.pending) {
		l.pending = append(l.pending[:0], l.pending[l.head:]...)
		l.head = 0
	}
	l.mu.Unlock()
}

// setBusy notes whether a transaction is being decoded.
func (l *lagState) setBusy(b bool) {
	if l.busy.Load() != b {
		l.busy.Store(b)
	}
}

// sourceAt notes a WAL position the source reported.
func (l *lagState) sourceAt(lsn pglogrepl.LSN) {
	for {
		old := l.sourceEnd.Load()
		if uint64(lsn) <= old || l.sourceEnd.CompareAndSwap(old, uint64(lsn)) {
			return
		}
	}
}

// sentAt notes how far the walsender has read the WAL.
func (l *lagState) sentAt(lsn pglogrepl.LSN) {
	for {
		old := l.sent.Load()
		if uint64(lsn) <= old || l.sent.CompareAndSwap(old, uint64(lsn)) {
			return
		}
	}
}

// measure returns the lag: the WAL the source has written past what is
// stored while anything is waiting, or past what the walsender has read
// when it is more than walsenderSlack behind (0 when caught up, whatever
// other WAL the server writes), and the age of the oldest commit not yet
// stored.
func (l *lagState) measure(now time.Time) (bytes int64, seconds float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	waiting := l.head < len(l.pending)
	source := int64(l.sourceEnd.Load())
	if waiting || l.busy.Load() {
		bytes = max(0, source-int64(l.durable))
	}
	if behind := source - max(int64(l.sent.Load()), int64(l.durable)); behind > walsenderSlack {
		bytes = max(bytes, behind)
	}
	if waiting {
		seconds = max(0, now.Sub(l.pending[l.head].committed).Seconds())
	}
	return bytes, seconds
}

// measureLag sets the lag metrics every LagInterval until ctx is done.
func (d *Daemon) measureLag(ctx context.Context) {
	t := time.NewTicker(d.cfg.LagInterval)
	defer t.Stop()
	for {
		bytes, seconds := d.lag.measure(time.Now())
		d.m.LagBytes.Set(float64(bytes))
		d.m.LagSeconds.Set(seconds)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollSlot reads the slot's state and the tables whose context trigger is
// not enforced for the metrics, and the source's WAL position for the lag,
// until ctx is done.
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
			if c, err := pg.Connect(ctx, d.cfg.SourceDSN, pg.AppTool); err == nil {
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
				if unguarded, err := setup.UnguardedTables(ctx, conn, d.cfg.Publication, d.cfg.BridgeSchema); err == nil {
					d.m.UnguardedTables.Set(float64(len(unguarded)))
				}
				d.lag.sourceAt(slot.CurrentLSN)
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
