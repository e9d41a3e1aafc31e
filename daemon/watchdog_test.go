package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walscribe/walscribe/internal/faultproxy"
	"github.com/walscribe/walscribe/metrics"
)

// TestWatchdogReconnectsAStalledStream: a connection that stays open but
// carries nothing (a half-open network) is noticed and replaced; nothing is
// lost.
func TestWatchdogReconnectsAStalledStream(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.cfg.StallTimeout = 2 * time.Second
	proxy, err := faultproxy.Start(fmt.Sprintf("%s:%d", srv.Host, srv.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	h.cfg.SourceDSN = strings.Replace(h.dsn, fmt.Sprintf(":%d/", srv.Port), fmt.Sprintf(":%d/", proxy.Addr().Port), 1)
	h.start()
	h.exec(`INSERT INTO t VALUES (1)`)
	h.sync()
	proxy.Stall()
	h.exec(`INSERT INTO t VALUES (2)`)
	time.Sleep(2 * h.cfg.StallTimeout) // the watchdog fires; reconnecting stalls too, until the network is back
	proxy.Restore()
	h.exec(`INSERT INTO t VALUES (3)`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
	h.checkOracle()
}

// TestSinkOutage: while the sink database is unreachable, entries wait and
// nothing is acknowledged past what is stored; the daemon recovers by
// itself when it is back.
func TestSinkOutage(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	proxy, err := faultproxy.Start(fmt.Sprintf("%s:%d", srv.Host, srv.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	h.sinkCfg.DSN = strings.Replace(h.dsn, fmt.Sprintf(":%d/", srv.Port), fmt.Sprintf(":%d/", proxy.Addr().Port), 1)
	h.start()
	h.exec(`INSERT INTO t VALUES (0)`)
	h.sync()
	stored := h.count(`SELECT count(*) FROM audit.entries`)
	proxy.Cut()
	for i := 1; i <= 200; i++ {
		h.exec(`INSERT INTO t VALUES ($1)`, i)
	}
	time.Sleep(3 * time.Second)
	if n := h.count(`SELECT count(*) FROM audit.entries`); n != stored {
		t.Fatalf("%d entries stored during the outage, want %d: the test proves nothing", n, stored)
	}
	if n := h.count(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walscribe'
		AND confirmed_flush_lsn > (SELECT max(end_lsn) FROM audit.checkpoints)`); n != 0 {
		t.Error("the slot was acknowledged past what the sink stored")
	}
	proxy.Restore()
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 201 {
		t.Errorf("%d entries after the outage, want 201", n)
	}
	h.checkOracle()
}

// TestSlowSinkKeepsTheStreamAlive: while the sink is blocked for longer than
// wal_sender_timeout, the daemon keeps answering the server, so the
// walsender is not killed and nothing reconnects.
func TestSlowSinkKeepsTheStreamAlive(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.exec(`ALTER SYSTEM SET wal_sender_timeout = '2s'`)
	h.exec(`SELECT pg_reload_conf()`)
	defer func() {
		h.exec(`ALTER SYSTEM RESET wal_sender_timeout`)
		h.exec(`SELECT pg_reload_conf()`)
	}()
	h.start()
	h.sync()
	blocker := pgtestConnect(t, h.dsn)
	mustExec(t, blocker, `BEGIN`)
	mustExec(t, blocker, `LOCK TABLE audit.checkpoints IN ACCESS EXCLUSIVE MODE`)
	for i := range 50 {
		h.exec(`INSERT INTO t VALUES ($1)`, i)
	}
	time.Sleep(6 * time.Second) // three times wal_sender_timeout, the sink blocked all along
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 0 {
		t.Fatalf("%d entries stored while the sink was blocked: the test proves nothing", n)
	}
	mustExec(t, blocker, `ROLLBACK`)
	h.sync()
	h.stop()
	if n := testutil.ToFloat64(m.Reconnects); n != 0 {
		t.Errorf("%v reconnects: the walsender timed out while the sink was slow", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 50 {
		t.Errorf("%d entries, want 50", n)
	}
}
