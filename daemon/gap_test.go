package daemon

import (
	"context"
	"strings"
	"testing"
	"time"
)

// runErr starts the daemon and waits for it to stop on its own.
func (h *harness) runErr() error {
	h.t.Helper()
	h.start()
	select {
	case err := <-h.done:
		h.cancel = nil
		return err
	case <-time.After(30 * time.Second):
		h.t.Fatal("the daemon did not stop")
		return nil
	}
}

// TestGapSlotAhead: a slot moved past what the trail holds is a gap,
// recorded once, and the trail goes on after it.
func TestGapSlotAhead(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.loseRow(1, 2)
	h.start()
	h.exec(`INSERT INTO t VALUES (3)`)
	h.sync()
	h.stop()
	h.start() // a second start records nothing new
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'gap' AND new->>'reason' = 'slot_ahead'
		AND commit_lsn < (new->>'to_lsn')::pg_lsn AND table_name = 'walscribe'`); n != 1 {
		t.Errorf("%d slot_ahead gap entries, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.gaps WHERE reason = 'slot_ahead' AND to_lsn IS NOT NULL`); n != 1 {
		t.Errorf("%d slot_ahead gaps, want 1", n)
	}
	if got := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); got != 2 {
		t.Errorf("%d entries of t, want 2 (rows 1 and 3; row 2 is in the gap)", got)
	}
	h.checkDense("across the gap")
}

// TestGapSlotDropped: a dropped slot stops the daemon with a gap recorded,
// unless it may recreate the slot; then it records the gap once and goes
// on from the new slot.
func TestGapSlotDropped(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.start()
	h.exec(`INSERT INTO t VALUES (1)`)
	h.sync()
	h.stop()
	h.exec(`SELECT pg_drop_replication_slot('walscribe')`)
	h.exec(`INSERT INTO t VALUES (2)`) // lost with the slot
	err := h.runErr()
	if err == nil || !strings.Contains(err.Error(), "recreate_lost_slot") || !strings.Contains(err.Error(), "gap") {
		t.Fatalf("run without the slot: %v; want an error that names the gap and source.recreate_lost_slot", err)
	}
	if err := h.runErr(); err == nil {
		t.Fatal("second run without the slot did not fail")
	}
	if n := h.count(`SELECT count(*) FROM audit.gaps WHERE reason = 'slot_missing' AND to_lsn IS NULL`); n != 1 {
		t.Errorf("%d slot_missing gaps after two failed starts, want 1", n)
	}
	h.cfg.RecreateLostSlot = true
	h.start()
	h.waitFor("the new slot", func() bool {
		return h.count(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walscribe' AND active`) == 1
	})
	h.exec(`INSERT INTO t VALUES (3)`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'gap'`); n != 1 {
		t.Errorf("%d gap entries, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 2 {
		t.Errorf("%d entries of t, want 2 (rows 1 and 3)", n)
	}
	var detail string
	if err := h.conn.QueryRow(context.Background(), `SELECT new->>'detail' FROM audit.entries WHERE action = 'gap'`).Scan(&detail); err != nil || !strings.Contains(detail, "dropped") {
		t.Errorf("gap detail %q, %v", detail, err)
	}
}
