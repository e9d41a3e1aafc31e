// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb into a
// temporary directory, wal_level=logical, a free port on 127.0.0.1, fsync off.
// When the tests run as root the server runs as the "postgres" OS user, since
// initdb refuses root.
//
// Set WALSCRIBE_TEST_DSN to the URL of a superuser on a running server with
// wal_level=logical to use that server instead; each test still gets its own
// database.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where the PostgreSQL server binaries are looked for when they are
// not on PATH. PG_BINDIR overrides it.
var BinDir = "/usr/lib/postgresql/15/bin"

// Options tune a cluster. The zero value is a logical-replication-ready server.
type Options struct {
	// Settings are extra postgresql.conf settings, name → value.
	Settings map[string]string
	// WALStart, when set, starts the new cluster's WAL at the 16 MB segment
	// holding this position (pg_resetwal -l), so that tests reach the LSNs
	// of a long-lived server — 0/10000000, 1/00000000 — in seconds.
	WALStart uint64
}

// Server is one running (or stopped) cluster.
type Server struct {
	Host     string
	Port     int
	dataDir  string
	tmpDir   string
	external *url.URL
	opts     Options
	cmd      *exec.Cmd
	exited   chan struct{}
	cred     *syscall.Credential
	dbSeq    atomic.Int64
}

// Start creates and starts a new cluster, or attaches to WALSCRIBE_TEST_DSN.
func Start(opts Options) (*Server, error) {
	if dsn := os.Getenv("WALSCRIBE_TEST_DSN"); dsn != "" && len(opts.Settings) == 0 && opts.WALStart == 0 {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("WALSCRIBE_TEST_DSN: %w", err)
		}
		port, _ := strconv.Atoi(u.Port())
		return &Server{external: u, Host: u.Hostname(), Port: port}, nil
	}
	s := &Server{opts: opts, Host: "127.0.0.1"}
	if err := s.initdb(); err != nil {
		s.cleanupDir()
		return nil, err
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.Port, err = FreePort(); err != nil {
			break
		}
		if err = s.Restart(); err == nil {
			return s, nil
		}
	}
	s.cleanupDir()
	return nil, err
}

// Main runs a test binary with one shared server in *srv, stops it, and
// returns the exit code for os.Exit. Use it from TestMain.
func Main(m *testing.M, srv **Server, opts Options) int {
	s, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	*srv = s
	defer s.Close()
	return m.Run()
}

func bin(name string) string {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return filepath.Join(d, name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return filepath.Join(BinDir, name)
}

func (s *Server) initdb() error {
	tmp, err := os.MkdirTemp("", "walscribe-pg-")
	if err != nil {
		return err
	}
	s.tmpDir = tmp
	s.dataDir = filepath.Join(tmp, "data")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres OS user to run the server: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(tmp, uid, gid); err != nil {
			return err
		}
	}
	cmd := exec.Command(bin("initdb"), "-D", s.dataDir, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true} // a terminal Ctrl-C goes to the caller, not initdb
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if s.opts.WALStart != 0 {
		const segment = 16 << 20
		seg := fmt.Sprintf("%08X%08X%08X", 1, s.opts.WALStart>>32, (s.opts.WALStart&0xFFFFFFFF)/segment)
		cmd := exec.Command(bin("pg_resetwal"), "-l", seg, s.dataDir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pg_resetwal -l %s: %w\n%s", seg, err, out)
		}
	}
	return nil
}

// Restart starts the server on its data directory (after Stop or Crash).
func (s *Server) Restart() error {
	if s.external != nil {
		return errors.New("pgtest: cannot restart an external server")
	}
	settings := map[string]string{
		"listen_addresses":        s.Host,
		"port":                    strconv.Itoa(s.Port),
		"unix_socket_directories": "",
		"wal_level":               "logical",
		"max_replication_slots":   "40",
		"max_wal_senders":         "40",
		"max_connections":         "200",
		"fsync":                   "off",
		"full_page_writes":        "off",
		"shared_buffers":          "128MB",
		"logging_collector":       "off",
		"log_min_messages":        "warning",
		"max_wal_size":            "2GB",
	}
	for k, v := range s.opts.Settings {
		settings[k] = v
	}
	args := []string{"-D", s.dataDir}
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}
	cmd := exec.Command(bin("postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(filepath.Join(s.tmpDir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o666)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(s.exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited at start:\n%s", s.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.kill(syscall.SIGKILL)
	return fmt.Errorf("postgres did not accept connections within 30s:\n%s", s.Log())
}

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.tmpDir, "server.log"))
	return string(b)
}

func (s *Server) kill(sig syscall.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// Stop shuts the server down cleanly (fast shutdown).
func (s *Server) Stop() { s.kill(syscall.SIGINT) }

// Shutdown modes, as pg_ctl stop -m names them.
const (
	Smart     = syscall.SIGTERM // wait for every session to end
	Fast      = syscall.SIGINT  // end the sessions, then stop cleanly
	Immediate = syscall.SIGQUIT // stop at once; crash recovery at the next start
)

// Shutdown asks the server to stop in mode and waits up to timeout for it to
// exit. It returns an error, leaving the server to finish, when it has not
// exited by then.
func (s *Server) Shutdown(mode syscall.Signal, timeout time.Duration) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return errors.New("pgtest: the server is not running")
	}
	s.cmd.Process.Signal(mode)
	select {
	case <-s.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("pgtest: the server did not stop within %s (signal %v)", timeout, mode)
	}
}

// Crash stops the server the way `pg_ctl -m immediate` does: no shutdown
// checkpoint, crash recovery on the next start.
func (s *Server) Crash() { s.kill(syscall.SIGQUIT) }

// Close stops the server and removes its files.
func (s *Server) Close() {
	if s.external != nil {
		return
	}
	s.Stop()
	s.cleanupDir()
}

func (s *Server) cleanupDir() {
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
	}
}

// DSN is a connection URL for database db as the superuser.
func (s *Server) DSN(db string) string {
	if s.external != nil {
		u := *s.external
		u.Path = "/" + db
		return u.String()
	}
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", s.Host, s.Port, db)
}

// NewDB creates a fresh database for one test, drops it (and its replication
// slots) when the test ends, and returns its DSN.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t_%d_%d_%s", os.Getpid(), s.dbSeq.Add(1), sanitize(t.Name()))
	if len(name) > 63 {
		name = name[:63]
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() { s.DropDB(name) })
	return s.DSN(name)
}

// DropDB drops a database and every replication slot in it, terminating the
// sessions that use it.
func (s *Server) DropDB(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return // the server is gone; its directory goes with it
	}
	defer admin.Close(ctx)
	for i := 0; i < 50; i++ {
		admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
		admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Exec runs statements on dsn and fails the test on error.
func Exec(t testing.TB, dsn string, sql ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("exec %q: %v", q, err)
		}
	}
}

// Connect opens a connection closed when the test ends.
func Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// FreePort returns a TCP port of 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func sanitize(s string) string {
	s = strings.ToLower(s)
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
