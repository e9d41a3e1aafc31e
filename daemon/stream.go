package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/decoder"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/rules"
)

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
		if fatal(err) || errors.Is(err, errSlotChanged) {
			return nil, err
		}
		if progressed {
			backoff, attempt = time.Second, 1
		}
		var lookup *decoder.LookupError
		switch {
		case errors.Is(err, errSinkDown):
			d.log.Warn("the sink cannot store what the server sends; the stream waits for it", zap.Error(err))
			d.noteError("stream: " + err.Error())
			if !d.waitForSink(ctx) {
				return nil, nil
			}
			continue
		case pg.ObjectInUse(err):
			// Another walscribe streams this slot: stand by, and take over
			// within a couple of seconds of it going away.
			if attempt == 1 || attempt%30 == 0 {
				d.log.Info("the slot is in use by another process; standing by", zap.String("slot", d.cfg.Slot))
			}
			backoff = d.cfg.StandbyRetry
		case errors.As(err, &lookup):
			// The change waits: the session starts over from what is
			// stored, and the lookup is tried again when its Relation
			// message comes back.
			d.m.Errors.WithLabelValues("catalog").Inc()
			d.log.Warn("cannot read the source's catalog; the changes wait", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retry_in", backoff))
			d.noteError(err.Error())
		default:
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
		backoff = min(backoff*2, d.cfg.MaxBackoff)
	}
}

// waitForSink waits until the sink stores again; false when ctx ended first.
func (d *Daemon) waitForSink(ctx context.Context) bool {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if ok, _, _ := d.sink.Health(); ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// errSlotChanged ends the stream when the slot is not where this daemon
// left it: dropped, invalidated, or moved past what it asked for while the
// stream was down. Run starts over, and the start records the gap.
var errSlotChanged = errors.New("the replication slot changed while the stream was down")

// checkUnmoved checks, just before streaming, that the server will stream
// from where this daemon asks: a slot moved further while the stream was
// down would skip changes in silence (the server starts from the slot's
// position when asked for an earlier one).
func (d *Daemon) checkUnmoved(ctx context.Context, conn *cdc.Conn, start pglogrepl.LSN) error {
	confirmed, walStatus, err := conn.SlotPosition(ctx, d.cfg.Slot)
	switch {
	case errors.Is(err, cdc.ErrNoSlot), errors.Is(err, cdc.ErrOtherDatabase):
		return fmt.Errorf("%w: %w", errSlotChanged, err)
	case err != nil:
		return err
	case walStatus == "lost":
		return fmt.Errorf("%w: wal_status is lost", errSlotChanged)
	case confirmed > start:
		return fmt.Errorf("%w: it was moved to %s, past %s", errSlotChanged, confirmed, start)
	}
	return nil
}

// fatal reports errors that reconnecting will not fix.
func fatal(err error) bool {
	switch pg.SQLState(err) {
	case pgerrcode.UndefinedObject: // the slot or the publication is gone
		return true
	case pgerrcode.InvalidAuthorizationSpecification, pgerrcode.InvalidPassword, pgerrcode.InsufficientPrivilege:
		return true
	}
	var decodeErr *DecodeError
	return errors.As(err, &decodeErr)
}

// DecodeError is a message of the stream walscribe cannot decode: where it
// is in the WAL, and the table of the change when it is one. It stops the
// daemon (the slot keeps the WAL from there on).
type DecodeError struct {
	LSN   pglogrepl.LSN // the message's position in the WAL
	Table string        // "schema.table" of a change; "" for other messages
	Err   error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode the message at %s: %v", e.LSN, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// session runs one replication session. It returns the connection when ctx
// ended it, and whether it received anything.
func (d *Daemon) session(ctx context.Context, ch chan<- *audit.Transaction) (*cdc.Conn, bool, error) {
	conn, err := cdc.Dial(ctx, d.cfg.SourceDSN)
	if err != nil {
		return nil, false, err
	}
	if d.systemID, err = conn.SystemID(ctx); err != nil {
		return conn, false, err
	}
	// Resume after what the sink holds or will hold: transactions already
	// queued are not asked for again.
	start := max(d.Durable(), d.queued, d.acked)
	if err := d.checkUnmoved(ctx, conn, start); err != nil {
		return conn, false, err
	}
	if err := conn.Start(ctx, d.cfg.Slot, d.cfg.Publication, start); err != nil {
		if pg.Is(err, pgerrcode.UndefinedObject) || pg.Is(err, pgerrcode.ObjectNotInPrerequisiteState) {
			// The slot was dropped, or invalidated (wal_status lost).
			return conn, false, fmt.Errorf("%w: %w", errSlotChanged, err)
		}
		return conn, false, err
	}
	d.dec.Reset()
	d.lag.setBusy(false)
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
			if err := d.sendStatus(ctx, conn); err != nil {
				return conn, progressed, err
			}
			nextStatus = now.Add(d.cfg.StatusInterval)
		}
		msg, err := conn.Receive(ctx, nextStatus)
		now = time.Now()
		if errors.Is(err, cdc.ErrTimeout) {
			// The server sends at least a keepalive every half
			// wal_sender_timeout; silence far longer than that is a stream
			// that stopped moving (a half-open connection): start over.
			if since := now.Sub(lastMessage); since > d.cfg.StallTimeout {
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
		d.lag.sourceAt(msg.ServerWALEnd)
		if msg.Data == nil { // keepalive: the walsender's position
			d.lag.sentAt(msg.ServerWALEnd)
		} else {
			d.lag.sentAt(msg.WALStart)
		}
		if msg.Data == nil { // keepalive
			if !d.dec.Busy() {
				if err := d.applyReload(ctx, conn, ch); err != nil {
					return conn, progressed, err
				}
			}
			if err := d.keepalive(ctx, conn, ch, msg); err != nil {
				return conn, progressed, err
			}
			if msg.ReplyRequested {
				nextStatus = now
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
			if lookup := (*decoder.LookupError)(nil); errors.As(err, &lookup) {
				// Retried, never answered with a guess: the session
				// starts over, and the changes wait.
				return conn, progressed, err
			}
			d.m.Errors.WithLabelValues("decode").Inc()
			derr := &DecodeError{LSN: msg.WALStart, Err: err}
			if change := (*decoder.ChangeError)(nil); errors.As(err, &change) {
				derr.Table = change.Table
			}
			return conn, progressed, derr
		}
		d.lag.setBusy(d.dec.Busy())
		if n := d.dec.InvalidContexts; n != d.invalid {
			d.m.Errors.WithLabelValues("invalid_context").Add(float64(n - d.invalid))
			d.logInvalid(n)
		}
		for _, inc := range d.dec.Incomplete {
			// A Relation message has no position of its own: the
			// transaction's commit says where.
			lsn := msg.WALStart
			if lsn == 0 {
				lsn = d.dec.TransactionLSN()
			}
			d.m.Errors.WithLabelValues(inc.Kind).Inc()
			d.log.Warn(incompleteWhy[inc.Kind], zap.String("flag", inc.Kind), zap.String("table", inc.Relation),
				zap.String("columns", inc.Detail), zap.Stringer("lsn", lsn))
		}
		d.dec.Incomplete = d.dec.Incomplete[:0]
		if tx != nil {
			d.m.Transactions.Inc()
			d.m.ChangesDecoded.Add(float64(tx.Len()))
			if err := d.queue(ctx, conn, ch, tx); err != nil {
				return conn, progressed, err
			}
		}
	}
}

// sendStatus acknowledges what is stored — or, while idle, what was read
// (idle.go).
func (d *Daemon) sendStatus(ctx context.Context, conn *cdc.Conn) error {
	d.acked = max(d.acked, d.Durable())
	return conn.SendStatus(ctx, d.acked)
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
// the walsender informed, so a slow sink does not get the stream killed;
// while the sink fails, it ends the session (errSinkDown) rather than
// wait with it open.
func (d *Daemon) queue(ctx context.Context, conn *cdc.Conn, ch chan<- *audit.Transaction, tx *audit.Transaction) error {
	if tx.Rules == nil && tx.EndLSN <= d.queued {
		return nil // replayed: already stored or on its way
	}
	select {
	case ch <- tx: // the usual case: no timer needed
		d.lag.queued(tx)
		d.queued = max(d.queued, tx.EndLSN)
		return nil
	default:
	}
	tick := time.NewTicker(min(d.cfg.StatusInterval, time.Second))
	defer tick.Stop()
	nextStatus := time.Now().Add(d.cfg.StatusInterval)
	for {
		select {
		case ch <- tx:
			d.lag.queued(tx)
			d.queued = max(d.queued, tx.EndLSN)
			return nil
		case <-ctx.Done():
			abandon(tx)
			return nil
		case now := <-tick.C:
			if ok, _, _ := d.sink.Health(); !ok {
				abandon(tx) // sent again when the session resumes
				return errSinkDown
			}
			if now.After(nextStatus) {
				if err := d.sendStatus(ctx, conn); err != nil {
					abandon(tx)
					return err
				}
				nextStatus = now.Add(d.cfg.StatusInterval)
			}
		}
	}
}

// abandon releases a transaction that was not handed to the sink.
func abandon(tx *audit.Transaction) {
	if tx.Spilled != nil {
		tx.Spilled.Close()
	}
}

// incompleteWhy says, per flag, why a table's entries lack something.
var incompleteWhy = map[string]string{
	audit.FlagGeneratedAbsent: "the stream does not carry this table's generated columns (before PostgreSQL 18 pgoutput never sends them): its entries lack them (and pk_incomplete when one is in the primary key)",
	audit.FlagTypeUnknown:     "the source's catalog does not have the type of these columns (dropped since the change, or created by a transaction still in progress): their values are stored as the text the server sent",
	audit.FlagTableUnknown:    "the source's catalog does not have this table (dropped since the change, or created by a transaction still in progress): its primary key is unknown, its entries are keyed by every column",
}
