package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestDemo runs the demo with the real binary: once to the end, checking the
// trail it leaves against the database, and once interrupted mid-traffic.
// Both times nothing may be left behind.
func TestDemo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "walscribe")
	build := exec.Command("go", "build", "-o", bin, "github.com/walscribe/walscribe/cmd/walscribe")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/walscribe: %v\n%s", err, out)
	}

	cases := []struct {
		name string
		// interruptAt cancels the run once the output holds it; "" lets the
		// run end by itself.
		interruptAt string
	}{
		{name: "to the end"},
		{name: "interrupted during traffic", interruptAt: "tx 3:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &watchWriter{want: tc.interruptAt, found: cancel}
			o := defaultOptions()
			o.bin = bin
			o.duration = 4 * time.Second
			o.interval = 50 * time.Millisecond
			o.showEvery = time.Second
			o.out = out
			checked := false
			o.check = func(ctx context.Context, dsn string, traffic trafficStats) {
				checked = true
				checkTrail(t, ctx, dsn, traffic)
			}

			rep, err := run(ctx, o)
			stopped := time.Now()
			defer func() {
				if t.Failed() {
					t.Logf("demo output:\n%s", out.String())
				}
			}()

			if tc.interruptAt == "" {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				if !checked {
					t.Fatal("the run ended without reaching the summary")
				}
			} else {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("run after cancel: got %v, want context.Canceled", err)
				}
				if checked {
					t.Error("the interrupted run went on to the summary")
				}
				if d := stopped.Sub(out.foundAt()); d > 20*time.Second {
					t.Errorf("stopping took %s after the interrupt", d)
				}
			}
			checkCleanedUp(t, rep)
		})
	}
}

// checkTrail checks the trail the demo left against the database and
// against what its traffic committed.
func checkTrail(t *testing.T, ctx context.Context, dsn string, traffic trafficStats) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	for _, action := range []string{"insert", "update", "delete", "truncate"} {
		t.Run("has "+action+" entries", func(t *testing.T) {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE action = $1`, action).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("no %s entries after %d committed transactions", action, traffic.committed)
			}
		})
	}

	t.Run("exactly the committed transactions", func(t *testing.T) {
		if traffic.rolledBack == 0 || traffic.savepoints == 0 {
			t.Fatalf("the traffic rolled back %d transactions and %d savepoints: want both above 0", traffic.rolledBack, traffic.savepoints)
		}
		// (walscribe's own entries, such as the export's, belong to no
		// source transaction.)
		rows, err := conn.Query(ctx, `SELECT xid FROM audit.entries WHERE schema_name <> 'walscribe' GROUP BY xid ORDER BY min(id)`)
		if err != nil {
			t.Fatal(err)
		}
		inTrail, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		// Every committed sample transaction writes a tracked table, and
		// the trail holds transactions in commit order.
		if !slices.Equal(inTrail, traffic.committedXids) {
			t.Errorf("transactions in the trail, in order:\n  %v\nwant the committed ones:\n  %v", inTrail, traffic.committedXids)
		}
		for _, xid := range traffic.rolledBackXids {
			if slices.Contains(inTrail, xid) {
				t.Errorf("rolled-back transaction %d is in the trail", xid)
			}
		}
	})

	t.Run("no rolled-back values", func(t *testing.T) {
		leaked, err := rolledBackEntries(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		if len(leaked) > 0 {
			t.Errorf("entries written by rolled-back work:\n%s", strings.Join(leaked, "\n"))
		}
	})

	for _, table := range shopTables {
		t.Run("replay "+table, func(t *testing.T) {
			r, err := replayTable(ctx, conn, table)
			if err != nil {
				t.Fatal(err)
			}
			if r.skipped != "" {
				t.Fatalf("not replayed: %s", r.skipped)
			}
			if r.entries == 0 {
				t.Errorf("no entries for %s", table)
			}
			if len(r.mismatches) > 0 {
				t.Errorf("the trail does not give back the table:\n%s", strings.Join(r.mismatches, "\n"))
			}
		})
	}
}

// checkCleanedUp checks that the daemon, the server and every temporary
// file are gone.
func checkCleanedUp(t *testing.T, rep *report) {
	t.Helper()
	if rep.dir == "" || rep.daemonPID == 0 || rep.addr == "" {
		t.Fatalf("the run stopped before starting everything: %+v", rep)
	}
	if _, err := os.Stat(rep.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %s is still there (stat: %v)", rep.dir, err)
	}
	if err := syscall.Kill(rep.daemonPID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("walscribe run (pid %d) is still running (kill -0: %v)", rep.daemonPID, err)
	}
	if _, err := os.Stat(filepath.Dir(rep.dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server's directory %s is still there (stat: %v)", filepath.Dir(rep.dataDir), err)
	}
	if c, err := net.DialTimeout("tcp", rep.addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the server still listens on %s", rep.addr)
	}
}

// watchWriter keeps the demo's output and calls found once it contains
// want.
type watchWriter struct {
	want  string
	found func()

	mu   sync.Mutex
	buf  bytes.Buffer
	seen time.Time
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.want != "" && w.seen.IsZero() && bytes.Contains(w.buf.Bytes(), []byte(w.want)) {
		w.seen = time.Now()
		w.found()
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *watchWriter) foundAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}
