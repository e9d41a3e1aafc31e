package daemon

import (
	"testing"

	"github.com/walscribe/walscribe/spool"
)

// TestStreamedTransactions: transactions far above logical_decoding_work_mem
// (64 kB here) arrive streamed while in progress, interleaved, with
// subtransactions rolled back, and are kept on disk past the spool's memory
// limit; the trail still holds exactly the committed changes, with the
// context in force at each, and the spill files are removed.
func TestStreamedTransactions(t *testing.T) {
	h := newHarness(t, `CREATE TABLE big (id int PRIMARY KEY, pad text, n int DEFAULT 0);
		CREATE TABLE other (id int PRIMARY KEY, v text)`, "big", "other")
	h.cfg.Spool = spool.Config{Dir: t.TempDir(), TxnMemory: 256 << 10}
	h.start()
	b := pgtestConnect(t, h.dsn)

	// A: large, with a rolled-back savepoint that changed the context, and
	// a released one; B, large too, runs interleaved with A and commits
	// first; C rolls back whole after streaming.
	h.exec(`BEGIN`)
	h.exec(`SET LOCAL audit.actor_id = 'a'`)
	h.exec(`INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g`)
	mustExec(t, b, `BEGIN`)
	mustExec(t, b, `INSERT INTO other SELECT g, repeat('y', 100) FROM generate_series(1, 8000) g`)
	h.exec(`SAVEPOINT s1`)
	h.exec(`SET LOCAL audit.actor_id = 'rolled back'`)
	h.exec(`INSERT INTO big SELECT g, 'gone' FROM generate_series(100001, 105000) g`)
	h.exec(`ROLLBACK TO SAVEPOINT s1`)
	h.exec(`SAVEPOINT s2`)
	h.exec(`UPDATE big SET n = 1 WHERE id <= 3000`)
	h.exec(`RELEASE SAVEPOINT s2`)
	mustExec(t, b, `UPDATE other SET v = 'z' WHERE id <= 2000`)
	mustExec(t, b, `COMMIT`)
	h.exec(`DELETE FROM big WHERE id > 19000`)
	h.exec(`COMMIT`)
	mustExec(t, b, `BEGIN`)
	mustExec(t, b, `INSERT INTO other SELECT g, 'never' FROM generate_series(100001, 110000) g`)
	mustExec(t, b, `ROLLBACK`)
	h.sync()

	h.checkOracle()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'big' AND actor_id IS DISTINCT FROM 'a'`); n != 0 {
		t.Errorf("%d entries of A without its context (or with the rolled-back one)", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'big'`); n != 20000+3000+1000 {
		t.Errorf("%d entries of A, want %d", n, 24000)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'big' AND seq BETWEEN 1 AND 24000`); n != 24000 {
		t.Errorf("A's entries are not numbered 1..24000: %d in range", n)
	}
	sp := h.d.spool
	if sp.Spills.Load() == 0 {
		t.Error("no transaction spilled to disk: the test proves nothing about the memory limit")
	}
	if f := sp.Files.Load(); f != 0 {
		t.Errorf("%d spill files remain", f)
	}
	h.waitFor("the server to count streamed transactions", func() bool {
		return h.count(`SELECT coalesce(sum(stream_txns), 0) FROM pg_stat_replication_slots WHERE slot_name = 'walscribe'`) > 0
	})
	h.stop()
}
