package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/faultproxy"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/internal/workload"
)

// TestChaos runs a concurrent workload — savepoints, rollbacks, truncates,
// schema changes, context, transactions large enough to be streamed — while
// a driver, over and over, kills walscribe with SIGKILL, terminates its
// walsender, crashes PostgreSQL (immediate shutdown) and cuts the network
// between them. At the end the trail must equal the oracle: every committed
// change once, nothing else, in order. WALSCRIBE_CHAOS_CYCLES sets the
// number of faults (make chaos: 100; make test: 12).
func TestChaos(t *testing.T) {
	cycles := 12
	if n, err := strconv.Atoi(os.Getenv("WALSCRIBE_CHAOS_CYCLES")); err == nil && n > 0 {
		cycles = n
	} else if testing.Short() {
		cycles = 4
	}
	// Its own server: it is crashed, and streams at 64 kB. Its WAL starts
	// past 1/00000000 and each cycle switches to a new segment, so the run
	// crosses 1/10000000, where the text form of an LSN grows a digit.
	settings := map[string]string{"logical_decoding_work_mem": "64kB"}
	for k, v := range walSwitchSettings {
		settings[k] = v
	}
	pg, err := pgtest.Start(pgtest.Options{Settings: settings, WALStart: 0x1_0F000000})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	dsn := pg.NewDB(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, dsn)
	tables := prepareWorkload(t, dsn, conn)
	proxy, err := faultproxy.Start(fmt.Sprintf("%s:%d", pg.Host, pg.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	viaProxy := strings.Replace(dsn, fmt.Sprintf(":%d/", pg.Port), fmt.Sprintf(":%d/", proxy.Addr().Port), 1)
	// With the integrity log on: at the end, the trail must verify.
	signer := filepath.Join(t.TempDir(), "signer.key")
	if out, code := walscribe(t, "keygen", "--signer", signer, "--name", "test.example/chaos"); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	checkpoints := t.TempDir()
	cfg := writeConfig(t, configFor(viaProxy, tables...)+"spool:\n  dir: "+t.TempDir()+"\n  txn_memory: 64KiB\n"+
		fmt.Sprintf("integrity:\n  enabled: true\n  signer_key_file: %q\n  checkpoint_interval: 200ms\n  checkpoint_dir: %q\n  leaf_hashing: both\n", signer, checkpoints))
	setUp(t, cfg)

	logPath := filepath.Join(t.TempDir(), "run.log")
	logs, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var daemon *exec.Cmd
	startDaemon := func() {
		daemon = command(t, "run", "--config", cfg)
		daemon.Stdout, daemon.Stderr = logs, logs
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
	}
	startDaemon()
	defer func() {
		if daemon != nil {
			daemon.Process.Signal(syscall.SIGKILL)
			daemon.Wait()
		}
	}()

	loadCtx, stopLoad := context.WithCancel(ctx)
	statsCh := make(chan *workload.Stats, 1)
	go func() {
		statsCh <- workload.Run(loadCtx, dsn, workload.Options{Clients: 3, Seed: 42, Pause: 3 * time.Millisecond,
			DDL: true, Truncate: true, Context: true, Large: true})
	}()
	defer stopLoad()

	rng := rand.New(rand.NewPCG(9, 9))
	counts := map[string]int{}
	for i := range cycles {
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		conn.Exec(ctx, `SELECT pg_switch_wal()`) // 16 MB further on; fails harmlessly just after a crash
		fault := rng.IntN(4)
		if i < 4 {
			fault = i // every kind at least once
		}
		switch fault {
		case 0:
			counts["kill -9 walscribe"]++
			daemon.Process.Signal(syscall.SIGKILL)
			daemon.Wait()
			startDaemon()
		case 1:
			counts["terminate the walsender"]++
			conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender'`)
		case 2:
			counts["crash PostgreSQL"]++
			pg.Crash()
			if err := pg.Restart(); err != nil {
				t.Fatalf("cycle %d: restart PostgreSQL: %v", i, err)
			}
			conn.Close(ctx)
			if conn, err = pgx.Connect(ctx, dsn); err != nil {
				t.Fatal(err)
			}
		case 3:
			counts["cut the network"]++
			proxy.Cut()
			time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
			proxy.Restore()
		}
	}
	t.Logf("%d faults: %v", cycles, counts)
	time.Sleep(300 * time.Millisecond)
	stopLoad()
	st := <-statsCh
	t.Logf("workload: %d commits, %d rollbacks, %d errors", st.Commits.Load(), st.Rollbacks.Load(), st.Errors.Load())

	if !waitMarker(t, conn, 3*time.Minute) {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("the trail did not catch up within 3 minutes; log tail:\n%s", tail(string(out), 40))
	}
	daemon.Process.Signal(syscall.SIGTERM)
	if err := daemon.Wait(); err != nil {
		t.Errorf("walscribe after SIGTERM: %v", err)
	}
	daemon = nil

	checkTrail(t, conn)
	if out, code := walscribe(t, "verify", "--dsn", dsn, "--key", signer+".pub", "--checkpoints", checkpoints); code != 0 {
		t.Errorf("walscribe verify of the trail after the faults: exit %d\n%s", code, tail(out, 40))
	} else {
		t.Log(strings.TrimSpace(out))
	}
	if n := count(t, conn, `SELECT count(*) FROM audit.gaps`); n != 0 {
		t.Errorf("%d gaps recorded: faults of this kind must not lose anything", n)
	}
	if n := count(t, conn, `SELECT count(*) FROM audit.checkpoints WHERE end_lsn > '1/10000000'`); n == 0 {
		t.Error("the run did not cross 1/10000000: it proves nothing about LSN order")
	}
	if n := count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name LIKE 'wl_%' AND actor_id IS NOT NULL`); n == 0 {
		t.Error("no entry carries a context: the workload's context did not reach the trail")
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
