package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pg"
)

// start opens the sink, checks the slot against the stored progress
// (recording a gap if there is one) and records the rules in force; it
// returns where to resume. While a database is unreachable (starting up,
// restarting, the network down) it waits with backoff; errors retrying
// cannot fix (no audit schema, no slot, no rights) return at once. A gap
// that cannot be recorded is retried like the rest: the stream does not
// start past it.
func (d *Daemon) start(ctx context.Context) (pglogrepl.LSN, error) {
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		start, err := d.startOnce(ctx)
		if err == nil {
			return start, nil
		}
		d.sink.Close(context.WithoutCancel(ctx))
		if !pg.Retryable(err) || ctx.Err() != nil {
			return 0, err
		}
		d.noteError("start: " + err.Error())
		if attempt == 1 || attempt%10 == 0 {
			d.log.Warn("cannot start yet; retrying", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retry_in", backoff))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, d.cfg.MaxBackoff)
	}
}

func (d *Daemon) startOnce(ctx context.Context) (pglogrepl.LSN, error) {
	if err := d.sink.Open(ctx); err != nil {
		return 0, err
	}
	slot, err := d.readSlot(ctx)
	if err != nil && !errors.Is(err, cdc.ErrNoSlot) {
		return 0, err
	}
	if slot != nil {
		d.database = slot.Database
	}
	stored, lastID := d.sink.Progress()
	start, err := d.checkSlot(ctx, slot, stored)
	if err != nil {
		return 0, err
	}
	d.dec.SetRules(d.cfg.Rules)
	if d.cfg.Rules != nil {
		recorded, err := d.sink.RecordRules(ctx, start, d.cfg.Rules.Describe(), "start")
		if err != nil {
			return 0, err
		}
		if recorded {
			d.log.Info("rules recorded", zap.Stringer("from_lsn", start))
		}
	}
	d.log.Info("starting", zap.String("slot", d.cfg.Slot), zap.Stringer("lsn", start), zap.Int64("last_id", lastID))
	return start, nil
}

// checkSlot compares the slot with the stored progress, and returns where
// to resume. A slot that is gone, lost (wal_status lost) or ahead of the
// stored progress means changes the trail cannot hold: that is recorded as
// a gap, loudly, never skipped in silence — unless the slot is ahead only
// by what this daemon acknowledged while idle (idle.go). A gone or lost slot
// is recreated only when the configuration says so.
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
		idle, err := d.idleAdvance(ctx, stored, slot.ConfirmedFlushLSN)
		if err != nil {
			return 0, err
		}
		if idle {
			d.log.Info("the slot is ahead of the stored progress by WAL this walscribe read while idle (nothing tracked in it)",
				zap.Stringer("stored", stored), zap.Stringer("slot", slot.ConfirmedFlushLSN))
			return slot.ConfirmedFlushLSN, nil
		}
		g := audit.Gap{Reason: "slot_ahead", From: stored, To: slot.ConfirmedFlushLSN,
			Detail: "the slot was moved past what the trail holds: the changes between these positions were acknowledged but not stored"}
		if d.recreated.Reason != "" { // recreated by an earlier attempt, whose gap record failed
			g = d.recreated
			g.To = slot.ConfirmedFlushLSN
		}
		if err := d.gap(ctx, g); err != nil {
			return 0, err
		}
		d.recreated = audit.Gap{}
		return slot.ConfirmedFlushLSN, nil
	default:
		return stored, nil
	}
	detail := "the replication slot was dropped"
	if reason == "slot_lost" {
		detail = "the server removed WAL the slot still needed (wal_status lost, see max_slot_wal_keep_size)"
	}
	if !d.cfg.RecreateLostSlot {
		if err := d.gap(ctx, audit.Gap{Reason: reason, From: stored, Detail: detail}); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("replication slot %q: %s, so the changes after %s are not in the trail (recorded as a gap entry): "+
			"set source.recreate_lost_slot: true to create a new slot and go on from now", d.cfg.Slot, detail, stored)
	}
	fresh, err := d.recreateSlot(ctx, slot != nil)
	if err != nil {
		return 0, err
	}
	d.recreated = audit.Gap{Reason: reason, From: stored, To: fresh, Detail: detail + "; a new slot was created"}
	if err := d.gap(ctx, d.recreated); err != nil {
		return 0, err
	}
	d.recreated = audit.Gap{}
	return fresh, nil
}

// recreateSlot drops this database's lost slot (when there is one) and
// creates a new one; it returns the new slot's position.
func (d *Daemon) recreateSlot(ctx context.Context, drop bool) (pglogrepl.LSN, error) {
	conn, err := pg.Connect(ctx, d.cfg.SourceDSN, pg.AppTool)
	if err != nil {
		return 0, fmt.Errorf("connect to source: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if drop {
		if _, err := cdc.DropSlot(ctx, conn, d.cfg.Slot); err != nil {
			return 0, fmt.Errorf("drop the lost slot: %w", err)
		}
	}
	if _, err := cdc.EnsureSlot(ctx, conn, d.cfg.Slot, time.Minute); err != nil {
		return 0, err
	}
	fresh, err := cdc.ReadSlot(ctx, conn, d.cfg.Slot)
	if err != nil {
		return 0, err
	}
	return fresh.ConfirmedFlushLSN, nil
}

// gap records g and says so in the log. A gap that cannot be recorded is an
// error: the trail must not go on past it in silence.
func (d *Daemon) gap(ctx context.Context, g audit.Gap) error {
	recorded, err := d.sink.RecordGap(ctx, g)
	if err != nil {
		d.m.Errors.WithLabelValues("gap").Inc()
		return fmt.Errorf("record a gap in the trail (%s after %s): %w", g.Reason, g.From, err)
	}
	if recorded {
		d.log.Error("gap in the audit trail: changes between these positions are missing", zap.String("slot", d.cfg.Slot),
			zap.String("reason", g.Reason), zap.Stringer("from_lsn", g.From), zap.Stringer("to_lsn", g.To), zap.String("detail", g.Detail))
		d.m.Gaps.Inc()
	}
	return nil
}

func (d *Daemon) readSlot(ctx context.Context) (*cdc.Slot, error) {
	conn, err := pg.Connect(ctx, d.cfg.SourceDSN, pg.AppTool)
	if err != nil {
		return nil, fmt.Errorf("connect to source: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return cdc.ReadSlot(ctx, conn, d.cfg.Slot)
}
