package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// options tune one run of the demo.
type options struct {
	bin       string        // the walscribe binary
	duration  time.Duration // how long traffic runs; 0: until stopTraffic
	interval  time.Duration // between two transactions
	showEvery time.Duration // between two prints of the newest entries
	keep      bool          // keep everything running after the summary until ctx ends
	db        string        // name of the sample database
	seed      uint64        // seeds the traffic's choices
	out       io.Writer

	// stopTraffic, when closed, ends the traffic and moves on to the summary.
	stopTraffic <-chan struct{}
	// phase, when set, tells the signal handler what the demo is doing.
	phase *phaseFlag
	// check, when set, is called after the summary, with the sample
	// database's DSN and what the traffic did, before anything is stopped.
	check func(ctx context.Context, dsn string, traffic trafficStats)
}

func defaultOptions() options {
	return options{
		bin:       "bin/walscribe",
		duration:  20 * time.Second,
		interval:  250 * time.Millisecond,
		showEvery: 2 * time.Second,
		db:        "demo",
		seed:      1,
		out:       os.Stdout,
	}
}

// phaseFlag says which part of the demo is running.
type phaseFlag struct{ v atomic.Int32 }

const (
	phaseStarting int32 = iota
	phaseTraffic
	phaseSummary
)

func (p *phaseFlag) set(v int32) {
	if p != nil {
		p.v.Store(v)
	}
}

func (p *phaseFlag) get() int32 {
	if p == nil {
		return phaseStarting
	}
	return p.v.Load()
}

// report is what a run leaves behind, for the test to check that it was
// all cleaned up.
type report struct {
	dir       string // the demo's temporary directory (config, daemon log)
	dataDir   string // the server's data directory
	addr      string // host:port of the server
	daemonPID int
}

// demo is one run: the server, the sample database, the daemon.
type demo struct {
	o   options
	rep *report

	srv *pgtest.Server
	dsn string
	// daemonDSN is the same database as the role walscribe runs as: it may
	// stream and append to the trail, nothing else.
	daemonDSN string
	cfgPath   string
	// signer and checkpoints: the integrity log's key and its checkpoints
	// kept outside the database.
	signer, checkpoints string
	// apiURL is where walscribe run serves the API and the web UI; apiDSN
	// the role the API reads as (granted walscribe_reader only).
	apiURL, apiDSN string
	daemon         *proc
	db             *pgx.Conn
	shop           *shop
	shown          int64 // highest entry id printed so far
	columns        map[string][]string
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.o.out, format+"\n", args...) }

// run is the whole demo. It always stops what it started and removes its
// files before returning; it returns ctx's error when interrupted.
func run(ctx context.Context, o options) (rep *report, err error) {
	d := &demo{o: o, rep: &report{}}
	kept := false // -keep ended by Ctrl-C: the normal end
	defer func() {
		cerr := d.cleanup()
		if ctx.Err() != nil && !kept || killedByCtrlC(err) {
			err = context.Canceled // interrupted: whatever failed, failed because of it
		}
		if cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := checkBinary(o.bin); err != nil {
		return d.rep, err
	}
	d.say("walscribe demo: the real walscribe binary on a throwaway PostgreSQL, with sample shop traffic.")
	d.say("Press Ctrl-C at any time to stop; everything it starts is stopped and removed.\n")

	steps := []func(context.Context) error{d.startServer, d.createShop, d.writeConfig, d.setup, d.startDaemon}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return d.rep, err
		}
		if ctx.Err() != nil {
			return d.rep, ctx.Err()
		}
	}
	o.phase.set(phaseTraffic)
	if err := d.traffic(ctx); err != nil {
		return d.rep, err
	}
	o.phase.set(phaseSummary)
	// A wrong trail is reported after everything else is shown, and -keep
	// still keeps the server up to look into it.
	wrong := d.summary(ctx)
	var te *trailError
	if wrong != nil && !errors.As(wrong, &te) {
		return d.rep, wrong
	}
	if o.check != nil {
		o.check(ctx, d.dsn, d.shop.stats)
	}
	if o.keep {
		d.say("\nPostgreSQL and walscribe keep running: changes you make in psql show up in audit.entries.")
		d.say("Press Ctrl-C to stop them and remove every temporary file.")
		select {
		case <-ctx.Done():
			kept = true
		case <-d.daemon.done:
			return d.rep, errors.Join(wrong, d.daemonDied())
		}
	}
	return d.rep, wrong
}

// trailError says the audit trail does not match what the database did.
type trailError struct{ problems []string }

func (e *trailError) Error() string {
	return "the audit trail is not what the database did:\n  - " + strings.Join(e.problems, "\n  - ")
}

// killedByCtrlC reports whether err is a child process (initdb) killed by
// SIGINT: the terminal sends Ctrl-C to it too, and it may die before the
// demo sees the signal itself.
func killedByCtrlC(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGINT
}

// checkBinary fails early, before starting anything, when bin is missing.
func checkBinary(bin string) error {
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("walscribe binary %s: %w: build it first with `go build -o bin/walscribe ./cmd/walscribe` (or `make build`) and pass it with -bin", bin, err)
	}
	return nil
}

// startServer starts a throwaway PostgreSQL cluster with logical replication.
func (d *demo) startServer(ctx context.Context) error {
	started := time.Now()
	// Naming a setting makes pgtest start a cluster of its own even when
	// WALSCRIBE_TEST_DSN points at a server: the demo only touches a server
	// it started.
	srv, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"wal_level": "logical"}})
	if err != nil {
		return fmt.Errorf("start PostgreSQL (the demo needs the PostgreSQL 15 server binaries on PATH, in %s (Debian: apt-get install postgresql-15) or in $PG_BINDIR): %w", pgtest.BinDir, err)
	}
	d.srv = srv
	d.rep.addr = fmt.Sprintf("%s:%d", srv.Host, srv.Port)
	conn, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var version string
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('data_directory')`).Scan(&version, &d.rep.dataDir)
	if err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	d.say("▸ PostgreSQL %s on %s (throwaway cluster, wal_level=logical), started in %.1fs",
		version, d.rep.addr, time.Since(started).Seconds())
	d.say("    data directory %s, removed at the end", d.rep.dataDir)

	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{d.o.db}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", d.o.db, err)
	}
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{d.o.db}.Sanitize()+` SET "TimeZone" TO 'UTC'`); err != nil {
		return fmt.Errorf("set the time zone of database %q: %w", d.o.db, err)
	}
	d.dsn = srv.DSN(d.o.db)
	// The daemon's own role, as in production: it may stream (REPLICATION)
	// and, once setup has granted it, append to the trail. setup runs
	// through the superuser's connection.
	if _, err := conn.Exec(ctx, `CREATE ROLE walscribe LOGIN REPLICATION`); err != nil {
		return fmt.Errorf("create role walscribe: %w", err)
	}
	d.daemonDSN = strings.Replace(d.dsn, "://postgres@", "://walscribe@", 1)
	// The API's role reads the trail and nothing else (setup grants it
	// walscribe_reader below).
	if _, err := conn.Exec(ctx, `CREATE ROLE walscribe_api LOGIN`); err != nil {
		return fmt.Errorf("create role walscribe_api: %w", err)
	}
	d.apiDSN = strings.Replace(d.dsn, "://postgres@", "://walscribe_api@", 1)
	return nil
}

// writeConfig writes the walscribe configuration into a new temporary
// directory and prints it.
func (d *demo) writeConfig(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "walscribe-demo-")
	if err != nil {
		return err
	}
	d.rep.dir = dir
	d.cfgPath = filepath.Join(dir, "walscribe.yaml")
	var b strings.Builder
	fmt.Fprintf(&b, "source:\n  dsn: %s\n", d.daemonDSN)
	b.WriteString("tables:\n")
	for _, t := range shopTables {
		fmt.Fprintf(&b, "  - name: public.%s\n", t)
	}
	b.WriteString("http:\n  listen: \"\"   # no /metrics server in the demo\n")
	port, err := pgtest.FreePort()
	if err != nil {
		return err
	}
	d.apiURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	fmt.Fprintf(&b, "api:                  # the REST API and the web UI\n  listen: 127.0.0.1:%d\n  dsn: %s\n", port, d.apiDSN)
	b.WriteString("log:\n  format: console\n")
	// Tamper evidence: a key pair made here, checkpoints beside the config.
	d.signer = filepath.Join(dir, "signer.key")
	if out, err := d.command(ctx, "keygen", "--signer", d.signer, "--name", "walscribe.demo/shop"); err != nil {
		return fmt.Errorf("walscribe keygen --signer: %w\n%s", err, out)
	}
	d.checkpoints = filepath.Join(dir, "checkpoints")
	if err := os.Mkdir(d.checkpoints, 0o700); err != nil {
		return err
	}
	fmt.Fprintf(&b, "integrity:            # walscribe keygen --signer %s\n  enabled: true\n  signer_key_file: %s\n  checkpoint_dir: %s\n",
		d.signer, d.signer, d.checkpoints)
	if err := os.WriteFile(d.cfgPath, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	d.say("▸ config %s (every other key keeps its default):", d.cfgPath)
	for line := range strings.Lines(b.String()) {
		d.say("    %s", strings.TrimRight(line, "\n"))
	}
	return nil
}

// setup runs `walscribe setup` and shows what it says.
func (d *demo) setup(ctx context.Context) error {
	d.say("▸ walscribe setup --config %s --admin-dsn %s", d.cfgPath, d.dsn)
	out, err := d.command(ctx, "setup", "--config", d.cfgPath, "--admin-dsn", d.dsn)
	for line := range strings.Lines(out) {
		d.say("    │ %s", strings.TrimRight(line, "\n"))
	}
	if err != nil {
		return fmt.Errorf("walscribe setup failed (%w): its output is above", err)
	}
	// The API reads as a member of walscribe_reader, and records each read
	// through log_event, as the daemon's role: a member of walscribe_app.
	grants := []string{`GRANT walscribe_reader TO walscribe_api`, `GRANT walscribe_app TO walscribe`}
	d.say("▸ roles for the API: %s", strings.Join(grants, "; "))
	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, g := range grants {
		if _, err := conn.Exec(ctx, g); err != nil {
			return fmt.Errorf("%s: %w", g, err)
		}
	}
	return nil
}

// command runs a walscribe subcommand to its end and returns its output.
// Cancelling ctx sends it SIGTERM.
func (d *demo) command(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.o.bin, args...)
	// Its own process group: a Ctrl-C in the terminal reaches the demo only,
	// which then stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startDaemon starts `walscribe run` with its log in the demo's directory and
// waits until it streams from the slot.
func (d *demo) startDaemon(ctx context.Context) error {
	p, err := startProc(d.o.bin, filepath.Join(d.rep.dir, "walscribe.log"), "run", "--config", d.cfgPath)
	if err != nil {
		return err
	}
	d.daemon = p
	d.rep.daemonPID = p.cmd.Process.Pid
	d.say("▸ walscribe run --config %s", d.cfgPath)
	d.say("    pid %d, log %s", p.cmd.Process.Pid, p.logPath)

	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", d.o.db, err)
	}
	d.db = conn
	started := time.Now()
	for {
		var active bool
		err := conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = 'walscribe'`).Scan(&active)
		if err != nil {
			return fmt.Errorf("read the replication slot: %w", err)
		}
		if active {
			d.say("    streaming from slot \"walscribe\" after %.1fs", time.Since(started).Seconds())
			return nil
		}
		if time.Since(started) > 30*time.Second {
			return fmt.Errorf("walscribe run did not start streaming within 30s; the end of its log:\n%s", p.tail(15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return d.daemonDied()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// daemonDied describes a daemon that exited on its own.
func (d *demo) daemonDied() error {
	status := "exit status 0"
	if d.daemon.err != nil {
		status = d.daemon.err.Error()
	}
	return fmt.Errorf("walscribe run exited on its own (%s); the end of its log %s:\n%s",
		status, d.daemon.logPath, d.daemon.tail(20))
}

// cleanup stops the daemon, then the server, removes the temporary
// directories, and says so. It reports a daemon that did not stop cleanly.
func (d *demo) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	var done []string
	if d.db != nil {
		d.db.Close(ctx)
	}
	if d.daemon != nil {
		alreadyDead := d.daemon.exited()
		err := d.daemon.stop(30 * time.Second)
		switch {
		case alreadyDead:
		case err != nil:
			errs = append(errs, fmt.Errorf("walscribe run did not stop cleanly on SIGTERM (%w); the end of its log:\n%s", err, d.daemon.tail(15)))
		default:
			done = append(done, "walscribe run stopped cleanly on SIGTERM")
		}
	}
	if d.srv != nil {
		d.srv.Close()
		done = append(done, "PostgreSQL stopped")
	}
	if d.rep.dir != "" {
		if err := os.RemoveAll(d.rep.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if d.srv != nil || d.rep.dir != "" {
		done = append(done, "temporary files removed")
	}
	if len(done) > 0 {
		d.say("\n▸ %s.", strings.Join(done, ", "))
	}
	return errors.Join(errs...)
}

// proc is a long-running walscribe process with its output in a log file.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // its exit status, once done
}

func startProc(bin, logPath string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group (a Ctrl-C reaches the demo only, which stops the
	// daemon before the server), and SIGTERM should the demo itself die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s %s: %w", bin, strings.Join(args, " "), err)
	}
	p := &proc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits; after timeout it kills the process.
func (p *proc) stop(timeout time.Duration) error {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("still running %s after SIGTERM: killed", timeout)
	}
}

// tail returns the last n lines of the process's log, indented.
func (p *proc) tail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return "    (no log: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, "    "+stripANSI(sc.Text()))
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return "    (the log is empty)"
	}
	return strings.Join(lines, "\n")
}

// stripANSI removes terminal colour codes (the console log colours levels).
func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b[") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < '@' || s[j] > '~') {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
