package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestHugeTransaction updates WALSCRIBE_HUGE_ROWS rows (for example
// 5000000; `make huge`) in one transaction while walscribe runs, and
// reports the daemon's peak resident memory (VmHWM) and the time to store
// the entries. It checks the trail holds exactly one entry per row. It is
// skipped unless the variable is set.
func TestHugeTransaction(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("WALSCRIBE_HUGE_ROWS"))
	if rows <= 0 {
		t.Skip("set WALSCRIBE_HUGE_ROWS (make huge) to run it")
	}
	dsn := srv.NewDB(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, dsn)
	began := time.Now()
	pgtest.Exec(t, dsn, `CREATE TABLE big (id int PRIMARY KEY, name text, amount numeric(12,2), tags text[], at timestamptz)`,
		fmt.Sprintf(`INSERT INTO big SELECT g, 'name ' || g, g * 1.5, ARRAY['a', 'b'], now() FROM generate_series(1, %d) g`, rows),
		`VACUUM ANALYZE big`)
	t.Logf("%d rows loaded in %s", rows, time.Since(began).Round(time.Second))
	cfg := writeConfig(t, configFor(dsn, "public.big")+"spool:\n  dir: "+t.TempDir()+"\n")
	setUp(t, cfg)
	logs, err := os.Create(filepath.Join(t.TempDir(), "run.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd := command(t, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	time.Sleep(time.Second)

	began = time.Now()
	if _, err := conn.Exec(ctx, `UPDATE big SET amount = amount + 1`); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	t.Logf("UPDATE of %d rows committed in %s", rows, committed.Sub(began).Round(time.Second))
	for {
		var stored int64
		if err := conn.QueryRow(ctx, `SELECT coalesce(max(last_id), 0) FROM audit.checkpoints`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored >= int64(rows) {
			break
		}
		if time.Since(committed) > 30*time.Minute {
			t.Fatalf("only %d of %d entries stored after 30 minutes", stored, rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stored := time.Since(committed)
	peak := vmHWM(t, cmd.Process.Pid)
	t.Logf("entries stored %s after the commit (%.0f entries/s); walscribe peak RSS %d MiB", stored.Round(time.Second),
		float64(rows)/stored.Seconds(), peak>>10)
	var n, distinct int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT pk) FROM audit.entries WHERE table_name = 'big' AND action = 'update'`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != rows || distinct != rows {
		t.Errorf("%d update entries for %d distinct rows, want %d", n, distinct, rows)
	}
}

// vmHWM is a process's peak resident set size in KiB.
func vmHWM(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
