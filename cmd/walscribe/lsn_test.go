package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/internal/workload"
)

// walSwitchSettings make pg_switch_wal cheap: new segments are not zeroed,
// so the tests move the WAL by gigabytes in seconds.
var walSwitchSettings = map[string]string{"wal_init_zero": "off", "min_wal_size": "64MB", "max_wal_size": "256MB"}

// advanceWAL moves the server's WAL past target with pg_switch_wal() in
// another database (each switch after a small write: a switch of an empty
// segment is a no-op), and returns the position reached.
func advanceWAL(t *testing.T, conn *pgx.Conn, target pglogrepl.LSN) pglogrepl.LSN {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS filler (v int)`); err != nil {
		t.Fatal(err)
	}
	for {
		var at pglogrepl.LSN
		if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&at); err != nil {
			t.Fatal(err)
		}
		if at > target {
			return at
		}
		segments := min(64, int((target-at)>>24)+1)
		if _, err := conn.Exec(ctx, `DO $$ BEGIN FOR i IN 1..`+strconv.Itoa(segments)+` LOOP
				INSERT INTO filler VALUES (i); PERFORM pg_switch_wal(); END LOOP; END $$`); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `CHECKPOINT`); err != nil { // recycle what no slot needs
			t.Fatal(err)
		}
	}
}

// TestExactlyOnceAcrossLSNBoundaries moves the WAL across the positions
// where the text form of an LSN changes length — 0/10000000 (256 MB after
// initdb), 1/00000000 (4 GB) and 1/10000000 — under a concurrent workload,
// killing walscribe with SIGKILL after each: the stored progress must be read
// back as a number, so every restart resumes where the trail ends, with
// every change once and ids dense.
func TestExactlyOnceAcrossLSNBoundaries(t *testing.T) {
	server, err := pgtest.Start(pgtest.Options{WALStart: 0x0F000000, Settings: walSwitchSettings})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ctx := context.Background()
	dsn := server.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	other := pgtest.Connect(t, server.NewDB(t))
	tables := prepareWorkload(t, dsn, conn)
	cfg := writeConfig(t, configFor(dsn, tables...))
	setUp(t, cfg)

	logPath := filepath.Join(t.TempDir(), "run.log")
	logs, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	loadCtx, stopLoad := context.WithCancel(ctx)
	statsCh := make(chan *workload.Stats, 1)
	go func() {
		statsCh <- workload.Run(loadCtx, dsn, workload.Options{Clients: 2, Seed: 7, Pause: 2 * time.Millisecond, Context: true})
	}()
	defer stopLoad()

	for _, target := range []pglogrepl.LSN{0x10000000, 0x1_00000000, 0x1_10000000} {
		daemon := startRun(t, cfg, logs)
		if !waitMarker(t, conn, time.Minute) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("before %s: the trail did not catch up; log tail:\n%s", target, tail(string(out), 30))
		}
		at := advanceWAL(t, other, target)
		if !waitMarker(t, conn, time.Minute) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("after %s: the trail did not catch up; log tail:\n%s", target, tail(string(out), 30))
		}
		time.Sleep(200 * time.Millisecond) // more of the workload, partly stored
		daemon.Process.Signal(syscall.SIGKILL)
		daemon.Wait()
		var stored pglogrepl.LSN
		if err := conn.QueryRow(ctx, `SELECT max(end_lsn) FROM audit.checkpoints`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		t.Logf("crossed %s (WAL at %s); killed with the trail at %s", target, at, stored)
		if stored <= target {
			t.Fatalf("the stored progress %s is not past %s", stored, target)
		}
	}
	stopLoad()
	st := <-statsCh
	t.Logf("workload: %d commits, %d rollbacks, %d errors", st.Commits.Load(), st.Rollbacks.Load(), st.Errors.Load())

	daemon := startRun(t, cfg, logs)
	if !waitMarker(t, conn, time.Minute) {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("the last run did not catch up; log tail:\n%s", tail(string(out), 30))
	}
	daemon.Process.Signal(syscall.SIGTERM)
	if err := daemon.Wait(); err != nil {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("walscribe run after SIGTERM: %v\n%s", err, tail(string(out), 30))
	}
	checkTrail(t, conn)
	if n := count(t, conn, `SELECT count(*) FROM audit.gaps`); n != 0 {
		t.Errorf("%d gaps recorded", n)
	}

	// status reads the newest checkpoint as a number too: no false warning.
	out, code := walscribe(t, "status", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("status failed:\n%s", out)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if rep.CheckpointBehind || rep.ConfirmedLSN != rep.CheckpointLSN {
		t.Errorf("status after a clean stop past 1/10000000: checkpoint %s, slot %s, slot ahead %v", rep.CheckpointLSN, rep.ConfirmedLSN, rep.CheckpointBehind)
	}
}
