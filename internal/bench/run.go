package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// serverSettings are the throwaway server's settings beyond pgtest's
// defaults (fsync off, wal_level logical): room for the backlog in shared
// buffers and no checkpoint storms while it is written.
var serverSettings = map[string]string{
	"shared_buffers": "1GB",
	"max_wal_size":   "8GB",
}

// bench is one run: the server, a scratch directory, the results.
type bench struct {
	o   options
	srv *pgtest.Server
	dir string
	r   *results
}

// run starts the server, runs every measurement, and always stops what it
// started.
func run(ctx context.Context, o options) (*results, error) {
	r := &results{started: time.Now()}
	logf("starting a throwaway PostgreSQL")
	srv, err := pgtest.Start(pgtest.Options{Settings: serverSettings})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	dir, err := os.MkdirTemp("", "walscribe-bench-")
	if err != nil {
		return nil, err
	}
	if os.Getenv("WALSCRIBE_BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	}
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			return nil, err
		}
	}
	b := &bench{o: o, srv: srv, dir: dir, r: r}
	if err := b.machine(ctx); err != nil {
		return nil, err
	}
	steps := []struct {
		key, name string
		f         func(context.Context) error
	}{
		{"drain", "drain rate", b.drain},
		{"app", "application cost and latency", b.appCost},
		{"memory", "memory", b.memory},
		{"lifecycle", "exports and cleanups", b.lifecycle},
		{"read", "reading the trail through the API", b.read},
		{"decoder", "decoder micro-benchmarks", b.decoder},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !o.runs(s.key) {
			logf("%s: not run (-steps %s)", s.name, o.steps)
			continue
		}
		if err := s.f(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return r, nil
}

// profilePath is where the CPU profile of step goes; empty without -pprof.
func (b *bench) profilePath(step string) string {
	if b.o.pprofDir == "" {
		return ""
	}
	return filepath.Join(b.o.pprofDir, "walscribe-"+step+".pprof")
}

// createDB creates a database and returns a connection to it.
func (b *bench) createDB(ctx context.Context, name string) (*pgx.Conn, string, error) {
	admin, err := pgx.Connect(ctx, b.srv.DSN("postgres"))
	if err != nil {
		return nil, "", err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, "", fmt.Errorf("create database %s: %w", name, err)
	}
	dsn := b.srv.DSN(name)
	conn, err := pgx.Connect(ctx, dsn)
	return conn, dsn, err
}

// machine records the machine's and the server's details.
func (b *bench) machine(ctx context.Context) error {
	m := &b.r.machine
	m.cpu, m.cores, m.ramBytes = cpuInfo()
	m.goVersion = runtime.Version()
	out, err := exec.CommandContext(ctx, b.o.bin, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", b.o.bin, err)
	}
	m.walscribe = strings.TrimSpace(string(out))
	conn, err := pgx.Connect(ctx, b.srv.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, `SELECT version(), current_setting('shared_buffers'), current_setting('fsync'),
		current_setting('synchronous_commit'), current_setting('max_wal_size')`).
		Scan(&m.pgVersion, &m.sharedBuffers, &m.fsync, &m.syncCommit, &m.maxWAL)
}

// waitFor polls cond every 50ms until it is true, the daemon exits, or
// limit passes.
func waitFor(ctx context.Context, d *daemon, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if d != nil {
			if err := d.alive(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not happen within %s", what, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// slotActive waits until a process streams from slot.
func slotActive(ctx context.Context, conn *pgx.Conn, d *daemon, slot string) error {
	return waitFor(ctx, d, 30*time.Second, "slot "+slot+" to become active", func() (bool, error) {
		var active bool
		err := conn.QueryRow(ctx, `SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		return active, err
	})
}

// lastID waits until audit.checkpoints covers entry id n.
func lastID(ctx context.Context, conn *pgx.Conn, d *daemon, n int64, limit time.Duration) error {
	return waitFor(ctx, d, limit, fmt.Sprintf("audit.checkpoints to reach entry %d", n), func() (bool, error) {
		var got int64
		err := conn.QueryRow(ctx, `SELECT coalesce(max(last_id), 0) FROM audit.checkpoints`).Scan(&got)
		return got >= n, err
	})
}

// marker writes a row in its own transaction and waits until its entry is
// stored: everything committed before it is stored too.
func marker(ctx context.Context, conn *pgx.Conn, d *daemon, limit time.Duration) error {
	var id int64
	if err := conn.QueryRow(ctx, `INSERT INTO accounts (id, name, balance, created_at) VALUES (nextval('accounts_new_id'), 'marker', 0, now()) RETURNING id`).Scan(&id); err != nil {
		return fmt.Errorf("insert a marker row: %w", err)
	}
	return waitFor(ctx, d, limit, "walscribe to store everything written", func() (bool, error) {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit.entries WHERE schema_name = 'public' AND table_name = 'accounts'
			AND pk = jsonb_build_object('id', $1::bigint))`, id).Scan(&ok)
		return ok, err
	})
}

// walsenderCPU samples the CPU time of the walsender serving slot until
// stop is closed, and sends the last sample.
func walsenderCPU(ctx context.Context, dsn, slot string, stop <-chan struct{}) <-chan float64 {
	return backendCPU(ctx, dsn, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot, stop)
}

// sinkCPU samples the CPU time of the backend serving walscribe's sink
// connection (application_name "walscribe sink") in the database of dsn.
func sinkCPU(ctx context.Context, dsn string, stop <-chan struct{}) <-chan float64 {
	return backendCPU(ctx, dsn, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database() LIMIT 1`, "walscribe sink", stop)
}

// backendCPU samples the CPU time of the server process whose pid query
// (one argument) returns, every 100ms until stop is closed, and sends what
// it used meanwhile: from the first sample when the process was already
// there, from its start when it appeared later. A process replaced by
// another (a reconnect) restarts the count; the benchmarks expect none.
func backendCPU(ctx context.Context, dsn, query, arg string, stop <-chan struct{}) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		var first, last float64
		defer func() { out <- last - first }()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer conn.Close(context.WithoutCancel(ctx))
		pid := 0
		for i := 0; ; i++ {
			var p *int32
			if err := conn.QueryRow(ctx, query, arg).Scan(&p); err == nil && p != nil {
				pid = int(*p)
			}
			if pid != 0 {
				if c, err := cpuSeconds(pid); err == nil && c > last {
					if i == 0 {
						first = c
					}
					last = c
				}
			}
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return out
}
