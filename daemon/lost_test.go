package daemon

import (
	"testing"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestGapSlotLost: a slot the server invalidated (max_slot_wal_keep_size)
// is a gap too; with recreate_lost_slot the daemon goes on with a new one.
func TestGapSlotLost(t *testing.T) {
	useServer(t, pgtest.Options{Settings: map[string]string{
		"max_slot_wal_keep_size": "1MB", "min_wal_size": "32MB", "max_wal_size": "32MB", "wal_keep_size": "0",
	}})
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE filler (pad text)`, "t")
	h.cfg.RecreateLostSlot = true
	h.start()
	h.exec(`INSERT INTO t VALUES (1)`)
	h.sync()
	h.stop()
	h.exec(`INSERT INTO t VALUES (2)`) // lost with the WAL
	for i := 0; i < 40 && h.count(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walscribe' AND wal_status = 'lost'`) == 0; i++ {
		h.exec(`INSERT INTO filler SELECT repeat(md5(random()::text), 30) FROM generate_series(1, 5000)`)
		h.exec(`SELECT pg_switch_wal()`)
		h.exec(`CHECKPOINT`)
	}
	if h.count(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walscribe' AND wal_status = 'lost'`) == 0 {
		t.Fatal("the server did not invalidate the slot")
	}
	h.start()
	h.waitFor("the new slot", func() bool {
		return h.count(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walscribe' AND active`) == 1
	})
	h.exec(`INSERT INTO t VALUES (3)`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.gaps WHERE reason = 'slot_lost' AND to_lsn IS NOT NULL`); n != 1 {
		t.Errorf("%d slot_lost gaps, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 2 {
		t.Errorf("%d entries of t, want 2 (rows 1 and 3)", n)
	}
}
