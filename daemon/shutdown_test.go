package daemon

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// shutdownLimit is how long a clean stop of PostgreSQL may take with
// walscribe attached: a few seconds, far below wal_sender_timeout (60s),
// after which the server would give up on the daemon by itself.
const shutdownLimit = 15 * time.Second

// TestCleanShutdownOfTheSource: PostgreSQL stops cleanly — fast, or smart
// then fast as pg_ctlcluster does — within seconds with walscribe attached
// and streaming into the same server, idle or while a workload writes.
// The server comes back, the daemon resumes by itself (or is restarted),
// and the trail holds every committed change exactly once, with no gap.
func TestCleanShutdownOfTheSource(t *testing.T) {
	for _, tc := range []struct {
		name          string
		load          bool
		smartFirst    bool
		restartDaemon bool
		openStream    bool // a transaction the server streams is in progress
	}{
		{name: "idle fast"},
		{name: "idle smart then fast", smartFirst: true},
		{name: "load fast", load: true},
		{name: "load smart then fast, daemon restarted", load: true, smartFirst: true, restartDaemon: true},
		{name: "idle fast, daemon restarted", restartDaemon: true},
		{name: "streamed transaction in progress, fast, daemon restarted", openStream: true, restartDaemon: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Transactions above 64 kB are streamed while in progress.
			server := useServer(t, pgtest.Options{Settings: map[string]string{"logical_decoding_work_mem": "64kB"}})
			h := newHarness(t, `CREATE TABLE t (id serial PRIMARY KEY, v int)`, "t")
			h.cfg.Spool.Dir = t.TempDir()
			h.start()
			h.exec(`INSERT INTO t (v) VALUES (0)`)
			h.sync()

			var wg sync.WaitGroup
			var commits atomic.Int64
			loadCtx, stopLoad := context.WithCancel(context.Background())
			defer stopLoad()
			if tc.load {
				wg.Add(1)
				go func() {
					defer wg.Done()
					writeUntil(loadCtx, h.dsn, &commits)
				}()
				h.waitFor("the workload to commit", func() bool { return commits.Load() >= 200 })
			} else {
				time.Sleep(500 * time.Millisecond) // idle: the slot is advanced past the last change
			}
			if tc.openStream {
				open := pgtest.Connect(t, h.dsn)
				if _, err := open.Exec(context.Background(), `BEGIN; INSERT INTO t (v) SELECT g FROM generate_series(1, 20000) g`); err != nil {
					t.Fatal(err)
				}
				// Left open: the shutdown aborts it, and none of it may reach the trail.
				time.Sleep(500 * time.Millisecond)
			}

			h.conn.Close(context.Background())
			if tc.smartFirst {
				// The daemon's sink and the test's own sessions keep a smart
				// shutdown waiting, as any connection pool does; then fast.
				if err := server.Shutdown(pgtest.Smart, 2*time.Second); err == nil {
					t.Log("the smart shutdown completed by itself")
				}
			}
			began := time.Now()
			if err := server.Shutdown(pgtest.Fast, shutdownLimit); err != nil {
				t.Fatalf("fast shutdown with walscribe attached: %v\nserver log:\n%s", err, server.Log())
			}
			t.Logf("fast shutdown took %s", time.Since(began).Round(time.Millisecond))
			if tc.restartDaemon {
				h.stopQuietly()
			}
			if err := server.Restart(); err != nil {
				t.Fatal(err)
			}
			h.conn = pgtest.Connect(t, h.dsn)
			if tc.restartDaemon {
				h.start()
			}
			if tc.load {
				time.Sleep(300 * time.Millisecond) // writes after the restart too
				stopLoad()
				wg.Wait()
				t.Logf("workload: %d commits", commits.Load())
			}
			h.exec(`INSERT INTO t (v) VALUES (-1)`)
			h.sync()
			h.stop()
			h.checkOracle()
			if n := h.count(`SELECT count(*) FROM audit.gaps`); n != 0 {
				t.Errorf("%d gaps recorded after a clean shutdown", n)
			}
			h.checkDense("from 1")
		})
	}
}

// writeUntil inserts rows, one per transaction, until ctx is done,
// reconnecting while the server is away; it counts the commits.
func writeUntil(ctx context.Context, dsn string, commits *atomic.Int64) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for i := 1; ctx.Err() == nil; i++ {
		if conn == nil || conn.IsClosed() {
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			conn = c
		}
		if _, err := conn.Exec(ctx, `INSERT INTO t (v) VALUES ($1)`, i); err == nil {
			commits.Add(1)
		}
	}
}

// TestIdleNoteTellsAnIdleAdvanceFromAGap: a slot ahead of the stored
// progress only over WAL the daemon confirmed while idle (its note says so)
// is no gap; moved further, over a tracked change, it is one.
func TestIdleNoteTellsAnIdleAdvanceFromAGap(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE untracked (v int)`, "t")
	h.cfg.Spool.Dir = t.TempDir()
	h.start()
	h.exec(`INSERT INTO t VALUES (1)`)
	h.sync()
	h.stop()
	var stored, idleEnd pglogrepl.LSN
	if err := h.conn.QueryRow(context.Background(), `SELECT max(end_lsn) FROM audit.checkpoints`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	h.exec(`INSERT INTO untracked SELECT generate_series(1, 1000)`)
	if err := h.conn.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()`).Scan(&idleEnd); err != nil {
		t.Fatal(err)
	}
	// What a daemon that confirmed idleEnd at a shutdown leaves behind.
	db := h.dsn[strings.LastIndex(h.dsn, "/")+1 : strings.Index(h.dsn, "?")]
	noter := New(h.cfg, nil, h.log)
	noter.database = db
	if err := h.conn.QueryRow(context.Background(), `SELECT system_identifier::text FROM pg_control_system()`).Scan(&noter.systemID); err != nil {
		t.Fatal(err)
	}
	if err := noter.writeIdleNote(stored, idleEnd); err != nil {
		t.Fatal(err)
	}
	h.exec(`SELECT pg_replication_slot_advance('walscribe', $1::text::pg_lsn)`, idleEnd.String())
	h.start()
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.gaps`); n != 0 {
		t.Fatalf("%d gaps recorded for an idle advance the note covers", n)
	}
	h.exec(`INSERT INTO t VALUES (2)`) // lost: the slot is moved past it
	h.exec(`SELECT pg_replication_slot_advance('walscribe', pg_current_wal_lsn())`)
	h.start()
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.gaps WHERE reason = 'slot_ahead'`); n != 1 {
		t.Errorf("%d slot_ahead gaps, want 1: the note must not cover a change it did not see", n)
	}
}
