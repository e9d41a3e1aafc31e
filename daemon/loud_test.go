package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/sink"
)

// TestLagRisesWhileTheSinkIsBlocked: the lag metrics are computed on a
// timer from what the source reports and the oldest commit not stored, so
// they keep rising while the sink is stuck, and fall to 0 once it is not.
func TestLagRisesWhileTheSinkIsBlocked(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY, pad text)`, "t")
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.cfg.LagInterval = 50 * time.Millisecond
	h.cfg.SlotPollInterval = 100 * time.Millisecond
	h.start()
	h.sync()
	blocker := pgtestConnect(t, h.dsn)
	mustExec(t, blocker, `BEGIN`)
	mustExec(t, blocker, `LOCK TABLE audit.checkpoints IN ACCESS EXCLUSIVE MODE`)
	h.exec(`INSERT INTO t VALUES (1, 'x')`)
	h.waitFor("lag above a second", func() bool { return testutil.ToFloat64(m.LagSeconds) > 1 })
	firstSeconds, firstBytes := testutil.ToFloat64(m.LagSeconds), testutil.ToFloat64(m.LagBytes)
	// More WAL, none of it stored: the byte lag follows the server.
	h.exec(`INSERT INTO t SELECT i, repeat('x', 1000) FROM generate_series(2, 2000) i`)
	h.waitFor("the lag to rise", func() bool {
		return testutil.ToFloat64(m.LagSeconds) > firstSeconds+0.5 && testutil.ToFloat64(m.LagBytes) > firstBytes+1e6
	})
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 0 {
		t.Fatalf("%d entries stored while the sink was blocked: the test proves nothing", n)
	}
	mustExec(t, blocker, `ROLLBACK`)
	h.sync()
	h.waitFor("the lag back to 0", func() bool {
		return testutil.ToFloat64(m.LagSeconds) == 0 && testutil.ToFloat64(m.LagBytes) == 0
	})
	h.stop()
	h.checkOracle()
}

// TestLagCountsTheWalsendersBacklog: while the server's walsender decodes a
// backlog of WAL that holds nothing walscribe tracks (nothing waits in
// walscribe, and the slot is far behind), the byte lag says how far behind
// it is, and falls back to 0 once it has caught up.
func TestLagCountsTheWalsendersBacklog(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE untracked (id int, pad text)`, "t")
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.cfg.LagInterval = 20 * time.Millisecond
	h.cfg.SlotPollInterval = 50 * time.Millisecond
	h.exec(`INSERT INTO untracked SELECT i, md5(i::text) || md5((i + 1)::text) FROM generate_series(1, 1500000) i`)
	h.start()
	h.sync()
	h.stop()
	// WAL that holds no change at all (an index built), about 130 MB, then
	// one change walscribe tracks: no transaction reaches walscribe until
	// the walsender has read through it.
	h.exec(`CREATE INDEX ON untracked (pad)`)
	h.exec(`INSERT INTO t VALUES (1)`)
	h.start()
	started := time.Now()
	var seen time.Time
	h.waitFor("the change behind the backlog stored", func() bool {
		if seen.IsZero() && testutil.ToFloat64(m.LagBytes) > 50e6 {
			seen = time.Now()
		}
		return h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`) == 1
	})
	stored := time.Now()
	t.Logf("lag above 50 MB after %v, the change stored after %v", seen.Sub(started), stored.Sub(started))
	// How long the walsender takes depends on the machine; the formula
	// itself is checked in TestLagMeasure.
	if seen.IsZero() {
		t.Error("the lag never showed the walsender's backlog")
	}
	h.sync()
	h.waitFor("the lag back to 0", func() bool { return testutil.ToFloat64(m.LagBytes) == 0 })
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 1 {
		t.Errorf("%d entries of t, want 1", n)
	}
}

// TestGapThatCannotBeRecordedStopsTheStart: when the gap's record fails,
// the daemon does not stream past it; once it can be recorded, it is, and
// the trail goes on.
func TestGapThatCannotBeRecordedStopsTheStart(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.loseRow(1, 2)
	h.exec(`CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'gaps refused'; END $$`)
	h.exec(unguard) // the guard of the audit schema refuses triggers of others
	h.exec(`CREATE TRIGGER refuse BEFORE INSERT ON audit.gaps FOR EACH ROW EXECUTE FUNCTION public.refuse()`)
	h.exec(`INSERT INTO t VALUES (3)`)
	err := h.runErr()
	if err == nil || !strings.Contains(err.Error(), "record a gap") || !strings.Contains(err.Error(), "gaps refused") {
		t.Fatalf("Run = %v, want the gap's record failure", err)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 1 {
		t.Errorf("%d entries of t, want 1: the daemon streamed past a gap it could not record", n)
	}
	h.exec(`DROP TRIGGER refuse ON audit.gaps`)
	h.start()
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.gaps WHERE reason = 'slot_ahead'`); n != 1 {
		t.Errorf("%d slot_ahead gaps, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 2 {
		t.Errorf("%d entries of t, want 2 (rows 1 and 3)", n)
	}
}

// TestGapRecordRetried: a gap record that fails with an error retrying may
// fix is retried; the stream starts only once it is recorded.
func TestGapRecordRetried(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.loseRow(1, 2)
	h.cfg.MaxBackoff = 200 * time.Millisecond
	f := &flakySink{Postgres: sink.NewPostgres(h.sinkCfg, h.log)}
	f.gapFailures.Store(2)
	h.startWith(f)
	h.exec(`INSERT INTO t VALUES (3)`)
	h.sync()
	h.stop()
	if n := f.gapCalls.Load(); n != 3 {
		t.Errorf("RecordGap called %d times, want 3 (two failures, then the record)", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.gaps WHERE reason = 'slot_ahead'`); n != 1 {
		t.Errorf("%d slot_ahead gaps, want 1", n)
	}
}

// TestNothingAcknowledgedPastTheSink: while the sink takes nothing, the
// slot's confirmed position stays where the trail ends, whatever the
// stream receives; the daemon keeps the walsender answered.
func TestNothingAcknowledgedPastTheSink(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.start()
	h.sync()
	h.stop()
	var stored pglogrepl.LSN
	if err := h.conn.QueryRow(context.Background(), `SELECT max(end_lsn) FROM audit.checkpoints`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	m := metrics.Discard()
	h.cfg.Metrics = m
	f := &flakySink{Postgres: sink.NewPostgres(h.sinkCfg, h.log), hold: make(chan struct{})}
	h.startWith(f)
	for i := range 100 {
		h.exec(`INSERT INTO t VALUES ($1)`, i)
	}
	// The queue to the held sink fills, and the stream waits.
	h.waitFor("the stream to receive inserts", func() bool { return testutil.ToFloat64(m.ChangesDecoded) >= 5 })
	time.Sleep(2 * time.Second) // many status intervals
	var confirmed pglogrepl.LSN
	if err := h.conn.QueryRow(context.Background(), `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walscribe'`).Scan(&confirmed); err != nil {
		t.Fatal(err)
	}
	if confirmed > stored {
		t.Errorf("the slot confirmed %s while the trail ends at %s", confirmed, stored)
	}
	close(f.hold)
	h.sync()
	h.stop()
	h.checkOracle()
}

// TestCatalogFailureDoesNotChangeTheKey: while the source's catalog cannot
// be read (here: no connection slot left for the lookup), the changes of a
// table wait; they are never stored with a key guessed from the replica
// identity (the whole row, under FULL). Once the catalog answers, they are
// stored with their primary key.
func TestCatalogFailureDoesNotChangeTheKey(t *testing.T) {
	useServer(t, pgtest.Options{Settings: map[string]string{"max_connections": "20", "superuser_reserved_connections": "0"}})
	h := newHarness(t, `CREATE TABLE k (id int PRIMARY KEY, v text)`, "k")
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.cfg.MaxBackoff = 500 * time.Millisecond
	h.start()
	h.waitFor("streaming", func() bool { return h.d.streaming.Load() })
	// Take every connection slot left: the catalog connects on the first
	// Relation message, and cannot.
	var fillers []*pgx.Conn
	defer func() {
		for _, c := range fillers {
			c.Close(context.Background())
		}
	}()
	for {
		c, err := pgx.Connect(context.Background(), h.dsn)
		if err != nil {
			if !strings.Contains(err.Error(), "53300") && !strings.Contains(err.Error(), "too many") {
				t.Fatal(err)
			}
			break
		}
		fillers = append(fillers, c)
	}
	h.exec(`INSERT INTO k VALUES (1, 'one')`)
	h.waitFor("catalog errors", func() bool {
		return testutil.ToFloat64(m.Errors.WithLabelValues("catalog")) >= 2
	})
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'k'`); n != 0 {
		t.Fatalf("%d entries of k stored while the catalog could not be read", n)
	}
	for _, c := range fillers {
		c.Close(context.Background())
	}
	fillers = nil
	h.sync()
	h.stop()
	var pk string
	if err := h.conn.QueryRow(context.Background(), `SELECT pk::text FROM audit.entries WHERE table_name = 'k'`).Scan(&pk); err != nil {
		t.Fatal(err)
	}
	if pk != `{"id": 1}` {
		t.Errorf("pk = %s, want {\"id\": 1}", pk)
	}
	h.checkOracle()
}

// TestSlotOfAnotherDatabaseIsNeverTouched: slot names are server-wide; a
// slot of the configured name that streams another database is an error,
// and is neither read as this one's nor dropped, even when lost slots may
// be recreated.
func TestSlotOfAnotherDatabaseIsNeverTouched(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	other := srv.NewDB(t)
	otherConn := pgtestConnect(t, other)
	name := "walscribe_other_" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_"))[:20]
	mustExec(t, otherConn, `SELECT pg_create_logical_replication_slot('`+name+`', 'pgoutput')`)
	t.Cleanup(func() { pgtestExecQuiet(other, `SELECT pg_drop_replication_slot('`+name+`')`) })
	var before pglogrepl.LSN
	if err := otherConn.QueryRow(context.Background(), `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&before); err != nil {
		t.Fatal(err)
	}
	h.cfg.Slot, h.sinkCfg.Slot = name, name
	h.cfg.RecreateLostSlot = true
	err := h.runErr()
	if err == nil || !strings.Contains(err.Error(), "belongs to database") {
		t.Fatalf("Run = %v, want an error saying the slot belongs to another database", err)
	}
	var db string
	var after pglogrepl.LSN
	if err := otherConn.QueryRow(context.Background(), `SELECT database, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&db, &after); err != nil {
		t.Fatalf("the other database's slot: %v", err)
	}
	if !strings.HasSuffix(other, "/"+db+"?sslmode=disable") || after != before {
		t.Errorf("the other database's slot changed: database %s, confirmed %s (was %s)", db, after, before)
	}
	if n := h.count(`SELECT count(*) FROM audit.gaps`); n != 0 {
		t.Errorf("%d gaps recorded for a slot that is not this database's", n)
	}
}

// TestSlotMovedWhileTheStreamWasDown: a slot moved past the trail while
// the daemon's session was down (its walsender terminated) is a gap, found
// when the session resumes — not only at the next start.
func TestSlotMovedWhileTheStreamWasDown(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.start()
	h.exec(`INSERT INTO t VALUES (1)`)
	h.sync()
	h.exec(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'walscribe' AND active_pid IS NOT NULL`)
	h.exec(`INSERT INTO t VALUES (2)`) // lost: the slot is moved past it before the daemon reconnects
	moved := false
	for deadline := time.Now().Add(900 * time.Millisecond); !moved && time.Now().Before(deadline); {
		_, err := h.conn.Exec(context.Background(), `SELECT pg_replication_slot_advance('walscribe', pg_current_wal_lsn())`)
		moved = err == nil
		if !moved {
			time.Sleep(5 * time.Millisecond) // the walsender is still exiting
		}
	}
	if !moved {
		t.Fatal("could not move the slot before the daemon reconnected")
	}
	h.exec(`INSERT INTO t VALUES (3)`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.gaps WHERE reason = 'slot_ahead'`); n != 1 {
		t.Errorf("%d slot_ahead gaps, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 2 {
		t.Errorf("%d entries of t, want 2 (rows 1 and 3; row 2 is in the gap)", n)
	}
	h.checkDense("across the gap")
}

// TestLagMeasure: the byte lag counts what waits in walscribe, and the
// walsender's own backlog beyond walsenderSlack even when nothing waits.
func TestLagMeasure(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name                  string
		source, sent, durable pglogrepl.LSN
		pending               bool
		want                  int64
	}{
		{"caught up", 300 << 20, 300 << 20, 300 << 20, false, 0},
		{"the walsender reads a backlog, nothing waits", 300 << 20, 100 << 20, 100 << 20, false, 200 << 20},
		{"the walsender a little behind the poll", 300 << 20, 300<<20 - 1<<20, 100 << 20, false, 0},
		{"a transaction waits", 300 << 20, 300 << 20, 250 << 20, true, 50 << 20},
		{"stored past what the walsender last said", 300 << 20, 0, 290 << 20, false, 0},
	} {
		var l lagState
		l.sourceAt(c.source)
		l.sentAt(c.sent)
		l.stored(c.durable)
		if c.pending {
			l.queued(&audit.Transaction{EndLSN: c.durable + 1, CommittedAt: now})
		}
		if got, _ := l.measure(now); got != c.want {
			t.Errorf("%s: lag %d bytes, want %d", c.name, got, c.want)
		}
	}
}
