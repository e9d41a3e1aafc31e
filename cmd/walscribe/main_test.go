package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/internal/workload"
)

var srv *pgtest.Server

// TestMain runs the real command when the test binary is started as
// walscribe by the tests below, so that they can kill it like any process.
func TestMain(m *testing.M) {
	if os.Getenv("WALSCRIBE_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{"walscribe"}, strings.Fields(os.Getenv("WALSCRIBE_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m, &srv, pgtest.Options{}))
}

// command returns walscribe with args, as a child process of the test.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WALSCRIBE_TEST_RUN_MAIN=1", "WALSCRIBE_TEST_ARGS="+strings.Join(args, " "))
	return cmd
}

// walscribe runs a command to its end and returns its output and exit code.
func walscribe(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := command(t, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run walscribe %v: %v", args, err)
	}
	return out.String(), code
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "walscribe.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func configFor(dsn string, tables ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "source:\n  dsn: %q\n  status_interval: 1s\nsink:\n  batch_max_wait: 20ms\nhttp:\n  listen: \"\"\nlog:\n  format: json\ntables:\n", dsn)
	for _, t := range tables {
		fmt.Fprintf(&b, "  - name: %s\n", t)
	}
	return b.String()
}

func count(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestKillNineExactlyOnce kills the daemon with SIGKILL at random moments
// under a concurrent workload, restarts it each time, and checks the trail
// against the oracle: every committed change once, nothing else.
func TestKillNineExactlyOnce(t *testing.T) {
	dsn := srv.NewDB(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, dsn)
	tables := prepareWorkload(t, dsn, conn)
	cfg := writeConfig(t, configFor(dsn, tables...))
	setUp(t, cfg)

	loadCtx, stopLoad := context.WithCancel(ctx)
	statsCh := make(chan *workload.Stats, 1)
	go func() {
		statsCh <- workload.Run(loadCtx, dsn, workload.Options{Clients: 3, Seed: 11, Pause: 2 * time.Millisecond, DDL: true, Truncate: true})
	}()
	defer stopLoad()

	kills := 8
	if testing.Short() {
		kills = 3
	}
	rng := rand.New(rand.NewPCG(3, 4))
	logs := filepath.Join(t.TempDir(), "run.log")
	logf, err := os.Create(logs)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	for i := range kills {
		cmd := command(t, "run", "--config", cfg)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(400+rng.IntN(1200)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("kill %d: %d entries stored so far", i+1, count(t, conn, `SELECT count(*) FROM audit.entries`))
	}
	stopLoad()
	st := <-statsCh
	t.Logf("workload: %d commits, %d rollbacks, %d errors", st.Commits.Load(), st.Rollbacks.Load(), st.Errors.Load())

	// A last run catches up; SIGTERM then stops it cleanly.
	cmd := command(t, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitMarker(t, conn, 90*time.Second) {
		out, _ := os.ReadFile(logs)
		t.Fatalf("the trail did not catch up within 90s; daemon log:\n%s", out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		out, _ := os.ReadFile(logs)
		t.Fatalf("walscribe run after SIGTERM: %v\n%s", err, out)
	}

	checkTrail(t, conn)

	// status reads the state the daemon left.
	out, code := walscribe(t, "status", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("status failed:\n%s", out)
	}
	var st2 struct {
		Slot          string `json:"slot"`
		Active        bool   `json:"active"`
		WALStatus     string `json:"wal_status"`
		ConfirmedLSN  string `json:"confirmed_flush_lsn"`
		CheckpointLSN string `json:"checkpoint_lsn"`
		LastID        int64  `json:"last_entry_id"`
		Behind        bool   `json:"slot_ahead_of_checkpoint"`
	}
	if err := json.Unmarshal([]byte(out), &st2); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	entries := count(t, conn, `SELECT count(*) FROM audit.entries`)
	if st2.Slot != "walscribe" || st2.Active || st2.WALStatus != "reserved" || st2.Behind ||
		st2.ConfirmedLSN != st2.CheckpointLSN || st2.LastID != int64(entries) {
		t.Errorf("status after a clean stop: %+v (entries %d)", st2, entries)
	}
}

// TestUserErrors checks that what a user gets wrong is reported with the key
// or the command that fixes it, and exit code 1.
func TestUserErrors(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE orders (id int PRIMARY KEY)`)
	cases := []struct {
		name string
		args func(cfg string) []string
		yaml string
		want []string
	}{
		{"unknown key", nil, configFor(dsn, "public.orders") + "sink_dsn: x\n", []string{"sink_dsn: unknown key", "did you mean sink?"}},
		{"misspelled nested key", nil, strings.Replace(configFor(dsn, "public.orders"), "batch_max_wait", "batch_max_wiat", 1), []string{"sink.batch_max_wiat", "did you mean batch_max_wait?"}},
		{"no tables", nil, strings.Split(configFor(dsn), "tables:")[0], []string{"tables: no tables to audit"}},
		{"missing table", func(cfg string) []string { return []string{"setup", "--config", cfg} },
			configFor(dsn, "public.orders", "public.nope"), []string{"tables[1].name", "public.nope does not exist"}},
		{"run before setup", func(cfg string) []string { return []string{"run", "--config", cfg} },
			configFor(dsn, "public.orders"), []string{"run `walscribe setup`"}},
		{"status before setup", func(cfg string) []string { return []string{"status", "--config", cfg} },
			configFor(dsn, "public.orders"), []string{"run `walscribe setup`"}},
		{"missing config file", func(string) []string { return []string{"run", "--config", "/nonexistent/walscribe.yaml"} },
			"", []string{"/nonexistent/walscribe.yaml", "fix the path"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeConfig(t, c.yaml)
			args := []string{"run", "--config", cfg}
			if c.args != nil {
				args = c.args(cfg)
			}
			out, code := walscribe(t, args...)
			if code != 1 {
				t.Errorf("exit code %d, want 1; output:\n%s", code, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// setUp runs walscribe setup on the configuration at cfg and fails the test
// if it fails.
func setUp(t *testing.T, cfg string) {
	t.Helper()
	if out, code := walscribe(t, "setup", "--config", cfg); code != 0 {
		t.Fatalf("setup failed (%d):\n%s", code, out)
	}
}

// startRun starts walscribe run on cfg, its output to out (nil: dropped),
// and stops it with SIGTERM when the test ends.
func startRun(t *testing.T, cfg string, out io.Writer) *exec.Cmd {
	t.Helper()
	cmd := command(t, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return cmd
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStandbyTakesOver runs two walscribe on one slot: the second stands by
// while the first streams, and takes over within seconds when the first is
// killed, with nothing lost or written twice.
func TestStandbyTakesOver(t *testing.T) {
	dsn := srv.NewDB(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, dsn)
	tables := prepareWorkload(t, dsn, conn)
	cfg := writeConfig(t, configFor(dsn, tables...))
	setUp(t, cfg)
	logs, err := os.Create(filepath.Join(t.TempDir(), "run.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	start := func() *exec.Cmd {
		cmd := command(t, "run", "--config", cfg)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	active := start()
	activePID := func() int {
		var pid *int
		conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'walscribe'`).Scan(&pid)
		if pid == nil {
			return 0
		}
		return *pid
	}
	deadline := time.Now().Add(30 * time.Second)
	for activePID() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first walscribe never streamed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	first := activePID()
	standby := start()
	defer func() {
		standby.Process.Signal(syscall.SIGTERM)
		standby.Wait()
	}()

	loadCtx, stopLoad := context.WithCancel(ctx)
	statsCh := make(chan *workload.Stats, 1)
	go func() {
		statsCh <- workload.Run(loadCtx, dsn, workload.Options{Clients: 2, Seed: 5, Pause: 5 * time.Millisecond})
	}()
	defer stopLoad()
	time.Sleep(1500 * time.Millisecond)
	if pid := activePID(); pid != first {
		t.Fatalf("the slot changed hands before the first walscribe died (%d → %d)", first, pid)
	}
	active.Process.Signal(syscall.SIGKILL)
	active.Wait()
	killed := time.Now()
	for pid := activePID(); pid == 0 || pid == first; pid = activePID() {
		if time.Since(killed) > 20*time.Second {
			out, _ := os.ReadFile(logs.Name())
			t.Fatalf("the standby did not take over within 20s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the standby took over %s after the kill", time.Since(killed).Round(10*time.Millisecond))
	time.Sleep(time.Second)
	stopLoad()
	<-statsCh

	if !waitMarker(t, conn, 60*time.Second) {
		t.Fatal("the standby did not catch up")
	}
	checkTrail(t, conn)
}
