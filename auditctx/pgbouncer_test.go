package auditctx_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/walscribe/walscribe/auditctx"
	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/setup"
)

// The tests in this file run the package's recipes through a real PgBouncer
// in transaction pooling mode, where many clients take turns on two server
// connections, and check on the server what walscribe reads: the context
// message that the bridge writes into the WAL ahead of each transaction's
// changes.

// pgBouncerBin is where Debian's pgbouncer package installs the binary; it is
// looked for there when it is not on PATH.
const pgBouncerBin = "/usr/sbin/pgbouncer"

func TestPgBouncer(t *testing.T) {
	t.Parallel()
	bin := pgBouncerPath(t)
	major, minor := pgBouncerVersion(t, bin)
	t.Logf("PgBouncer %d.%d", major, minor)

	// The settings docs/integration.md and the package documentation name.
	for _, mode := range []string{"exec", "simple_protocol"} {
		t.Run("default_query_exec_mode="+mode, func(t *testing.T) {
			db := newTrail(t)
			b := startPgBouncer(t, bin, 2)
			want, err := runClients(t.Context(), b.dsn(db.name, mode), 2, 20)
			if err != nil {
				t.Fatalf("clients through PgBouncer: %v", err)
			}
			// The clients took turns on PgBouncer's server connections.
			if n := db.backends(t); n < 1 || n > 2 {
				t.Errorf("%d server connections to the database, want 1 or 2: the clients did not share them", n)
			}
			got := db.read(t)
			for _, p := range attribution(want, got) {
				t.Error(p)
			}
			t.Logf("%d rows of committed transactions checked", len(want))
		})
	}

	t.Run("default mode: prepared statements fail, the helpers do not", func(t *testing.T) {
		if major > 1 || minor >= 21 {
			t.Skipf("PgBouncer %d.%d can pass named prepared statements on (max_prepared_statements)", major, minor)
		}
		db := newTrail(t)
		b := startPgBouncer(t, bin, 2)
		helperErrs, codes := runDefaultMode(t, b.dsn(db.name, ""))
		for _, err := range helperErrs {
			t.Errorf("an auditctx helper failed in the default mode: %v", err)
		}
		if codes["42P05"]+codes["26000"] == 0 {
			t.Errorf("no statement failed with 42P05 or 26000 (errors by SQLSTATE: %v): the test no longer shows what the setting is for", codes)
		}
		t.Logf("the application's own statements failed: %v", codes)
	})

	// The check must see a context that reaches another client, or it proves
	// nothing: a session setting, which transaction pooling hands to the next
	// client on the server connection, must show up as a leak.
	t.Run("a session context leaks, and the check sees it", func(t *testing.T) {
		db := newTrail(t)
		b := startPgBouncer(t, bin, 1)
		ctx := t.Context()
		leaker, err := pgx.Connect(ctx, b.dsn(db.name, "exec"))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer leaker.Close(ctx)
		victim, err := pgx.Connect(ctx, b.dsn(db.name, "exec"))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer victim.Close(ctx)
		if err := auditctx.SetSession(ctx, leaker, auditctx.Context{ActorID: "leaked", RequestID: "req-leaked"}); err != nil {
			t.Fatalf("SetSession: %v", err)
		}
		if _, err := victim.Exec(ctx, insertRow, "victim"); err != nil {
			t.Fatalf("insert: %v", err)
		}
		got := attribution(map[string]expectation{"victim": {changes: 1}}, db.read(t))
		want := []string{`row victim: actor_id = "leaked", want none`, `row victim: request_id = "req-leaked", want none`}
		if !slices.Equal(got, want) {
			t.Errorf("the check reported %q, want %q", got, want)
		}
	})
}

// pgBouncerPath finds the pgbouncer binary, or fails the test.
func pgBouncerPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	if _, err := os.Stat(pgBouncerBin); err == nil {
		return pgBouncerBin
	}
	t.Fatalf("pgbouncer is not installed (looked on PATH and at %s): install it (Debian: apt-get install pgbouncer)", pgBouncerBin)
	return ""
}

// pgBouncerVersion runs pgbouncer --version: "PgBouncer 1.18.0".
func pgBouncerVersion(t *testing.T, bin string) (major, minor int) {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	m := regexp.MustCompile(`PgBouncer (\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("%s --version printed %q, want PgBouncer X.Y", bin, out)
	}
	major, _ = strconv.Atoi(string(m[1]))
	minor, _ = strconv.Atoi(string(m[2]))
	return major, minor
}

// bouncer is a PgBouncer process in front of srv.
type bouncer struct {
	port int
	user string
}

// dsn is a URL of database db through the bouncer. mode, unless empty, is
// pgx's default_query_exec_mode.
func (b *bouncer) dsn(db, mode string) string {
	u := url.URL{Scheme: "postgres", User: url.User(b.user), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)), Path: "/" + db}
	q := url.Values{"sslmode": {"disable"}}
	if mode != "" {
		q.Set("default_query_exec_mode", mode)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// startPgBouncer starts pgbouncer in transaction pooling mode with poolSize
// server connections per database, stopped when the test ends. Any database
// name is passed on to the database of that name on srv. As root it runs as
// the postgres OS user: pgbouncer refuses to run as root.
func startPgBouncer(t *testing.T, bin string, poolSize int) *bouncer {
	t.Helper()
	target, err := url.Parse(srv.DSN("postgres"))
	if err != nil {
		t.Fatalf("server dsn: %v", err)
	}
	b := &bouncer{user: target.User.Username()}
	server := fmt.Sprintf("host=%s port=%d user=%s", srv.Host, srv.Port, b.user)
	if pass, ok := target.User.Password(); ok {
		server += " password=" + pass
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres OS user to run pgbouncer: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parent is private to this user, and pgbouncer may
	// run as another one.
	dir, err := os.MkdirTemp("", "walscribe-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	userlist := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(userlist, []byte(`"`+b.user+`" ""`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ini := filepath.Join(dir, "pgbouncer.ini")
	var lastErr error
	for range 5 { // another process may take the free port first
		if b.port, err = pgtest.FreePort(); err != nil {
			t.Fatal(err)
		}
		// The server reset query is left at its default: in transaction
		// mode PgBouncer does not run it, so whatever a client leaves on a
		// server connection reaches the next client.
		conf := fmt.Sprintf(`[databases]
* = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 200
log_connections = 0
log_disconnections = 0
`, server, b.port, userlist, poolSize)
		if err := os.WriteFile(ini, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		stop, err := runPgBouncer(bin, ini, b.port, cred)
		if err == nil {
			t.Cleanup(stop)
			return b
		}
		lastErr = err
	}
	t.Fatalf("start pgbouncer: %v", lastErr)
	return nil
}

// runPgBouncer starts bin with config ini and waits until it accepts
// connections on port. stop ends it.
func runPgBouncer(bin, ini string, port int, cred *syscall.Credential) (stop func(), err error) {
	cmd := exec.Command(bin, ini)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM) // immediate shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			return nil, fmt.Errorf("pgbouncer exited at start:\n%s", out)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			select {
			case <-exited: // the port was someone else's
				return nil, fmt.Errorf("pgbouncer exited at start:\n%s", out)
			case <-time.After(50 * time.Millisecond):
				return stop, nil
			}
		}
	}
	stop()
	return nil, fmt.Errorf("pgbouncer did not listen on %s within 10s:\n%s", addr, out)
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const insertRow = `INSERT INTO writes (tag) VALUES ($1)`

// trail is a test database with a tracked table, writes, whose changes and
// context messages a test_decoding slot keeps until read.
type trail struct {
	name string
	conn *pgx.Conn // straight to the server, not through PgBouncer
}

func newTrail(t *testing.T) *trail {
	t.Helper()
	dsn := srv.NewDB(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	tr := &trail{name: strings.TrimPrefix(u.Path, "/"), conn: pgtest.Connect(t, dsn)}
	ctx := t.Context()
	if _, err := tr.conn.Exec(ctx, `CREATE TABLE writes (id bigserial PRIMARY KEY, tag text NOT NULL, n int NOT NULL DEFAULT 0)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, _, _, err := setup.InstallBridge(ctx, tr.conn, "audit", auditctx.DefaultPrefix, setup.DefaultRoles(), []cdc.Table{{Schema: "public", Name: "writes"}}); err != nil {
		t.Fatalf("install the bridge: %v", err)
	}
	// The database's name is unique on the server, and a valid slot name.
	if _, err := tr.conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, tr.name); err != nil {
		t.Fatalf("create slot: %v", err)
	}
	return tr
}

// backends counts the other sessions connected to the database.
func (tr *trail) backends(t *testing.T) int {
	t.Helper()
	var n int
	if err := tr.conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
		tr.name).Scan(&n); err != nil {
		t.Fatalf("count sessions: %v", err)
	}
	return n
}

var (
	messageLine = regexp.MustCompile(`^message: transactional: 1 prefix: walscribe\.context, sz: \d+ content:(.*)$`)
	changeLine  = regexp.MustCompile(`^table public\.writes: (?:INSERT|UPDATE): id\[bigint\]:\d+ tag\[text\]:'([^']*)'`)
)

// read consumes the slot and returns, for each tag, the context in force at
// each change of its row, as walscribe applies it: the last context message
// of the transaction before the change (nil when there was none).
func (tr *trail) read(t *testing.T) map[string][]map[string]any {
	t.Helper()
	rows, err := tr.conn.Query(t.Context(), `SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)`, tr.name)
	if err != nil {
		t.Fatalf("read slot: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read slot: %v", err)
	}
	got := make(map[string][]map[string]any)
	var current map[string]any
	for _, line := range lines {
		if strings.HasPrefix(line, "BEGIN") {
			current = nil
		} else if m := messageLine.FindStringSubmatch(line); m != nil {
			current = nil
			if err := json.Unmarshal([]byte(m[1]), &current); err != nil {
				t.Fatalf("context message %q: %v", m[1], err)
			}
		} else if m := changeLine.FindStringSubmatch(line); m != nil {
			got[m[1]] = append(got[m[1]], current)
		}
	}
	return got
}

// expectation is what a tag's row must carry: the context of the
// transactions that changed it (the zero Context: none), in changes changes.
type expectation struct {
	c       auditctx.Context
	changes int
}

// attribution compares the trail with what the clients did and returns
// every difference: a row missing, extra, or carrying a context not its own.
func attribution(want map[string]expectation, got map[string][]map[string]any) []string {
	var problems []string
	for tag, w := range want {
		contexts := got[tag]
		if len(contexts) != w.changes {
			problems = append(problems, fmt.Sprintf("row %s: %d changes in the trail, want %d", tag, len(contexts), w.changes))
		}
		for _, c := range contexts {
			if c == nil {
				problems = append(problems, fmt.Sprintf("row %s: no context message before the change", tag))
				continue
			}
			problems = append(problems, contextDiff(tag, w.c, c)...)
		}
	}
	for tag := range got {
		if _, ok := want[tag]; !ok {
			problems = append(problems, fmt.Sprintf("row %s is in the trail, but no committed transaction wrote it", tag))
		}
	}
	slices.Sort(problems)
	return problems
}

// contextDiff compares the context message got (what the bridge's
// current_context() returned) with the Context the row's writer set.
func contextDiff(tag string, want auditctx.Context, got map[string]any) []string {
	var problems []string
	for _, f := range []struct{ key, want string }{
		{"actor_id", want.ActorID}, {"actor", want.Actor}, {"ip", want.IP},
		{"user_agent", want.UserAgent}, {"request_id", want.RequestID},
	} {
		v, present := got[f.key]
		s, _ := v.(string)
		switch {
		case f.want == "" && present:
			problems = append(problems, fmt.Sprintf("row %s: %s = %q, want none", tag, f.key, v))
		case f.want != "" && s != f.want:
			problems = append(problems, fmt.Sprintf("row %s: %s = %q, want %q", tag, f.key, v, f.want))
		}
	}
	raw, present := got["context"]
	switch {
	case len(want.Extra) == 0 && present:
		problems = append(problems, fmt.Sprintf("row %s: context = %v, want none", tag, raw))
	case len(want.Extra) > 0:
		var extra map[string]any
		s, _ := raw.(string)
		if err := json.Unmarshal([]byte(s), &extra); err != nil || !reflect.DeepEqual(extra, want.Extra) {
			problems = append(problems, fmt.Sprintf("row %s: context = %v, want %v", tag, raw, want.Extra))
		}
	}
	return problems
}

// client is one way an application writes: with the context that ctx
// carries (every way sets it, or clears it when ctx carries none), or
// without auditctx. It reports how many changes the row got, 0 when the
// transaction rolled back.
type client struct {
	name        string
	withContext bool
	write       func(ctx context.Context, tag string, i int) (changes int, err error)
}

// clients are the recipes of docs/integration.md through a pgx pool and a
// database/sql pool.
func clients(pool *pgxpool.Pool, db *sql.DB) []client {
	// With or without a context in ctx: the same recipe.
	sqlBeginTx := func(ctx context.Context, tag string, _ int) (int, error) {
		tx, err := auditctx.BeginTxSQL(ctx, db, nil)
		if err != nil {
			return 0, err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, insertRow, tag); err != nil {
			return 0, err
		}
		return 1, tx.Commit()
	}
	return []client{
		{"pgx BeginTx", true, func(ctx context.Context, tag string, i int) (int, error) {
			tx, err := auditctx.BeginTx(ctx, pool, pgx.TxOptions{})
			if err != nil {
				return 0, err
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, insertRow, tag); err != nil {
				return 0, err
			}
			if _, err := tx.Exec(ctx, `UPDATE writes SET n = n + 1 WHERE tag = $1`, tag); err != nil {
				return 0, err
			}
			if i%4 == 3 { // a request that fails: nothing of it reaches the trail
				return 0, tx.Rollback(ctx)
			}
			return 2, tx.Commit(ctx)
		}},
		{"pgx SetLocal", true, func(ctx context.Context, tag string, _ int) (int, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return 0, err
			}
			defer tx.Rollback(ctx)
			c, _ := auditctx.FromContext(ctx)
			if err := auditctx.SetLocal(ctx, tx, c); err != nil {
				return 0, err
			}
			if _, err := tx.Exec(ctx, insertRow, tag); err != nil {
				return 0, err
			}
			return 1, tx.Commit(ctx)
		}},
		{"pgx BeginTx without context", false, func(ctx context.Context, tag string, _ int) (int, error) {
			tx, err := auditctx.BeginTx(ctx, pool, pgx.TxOptions{})
			if err != nil {
				return 0, err
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, insertRow, tag); err != nil {
				return 0, err
			}
			return 1, tx.Commit(ctx)
		}},
		{"pgx without auditctx", false, func(ctx context.Context, tag string, _ int) (int, error) {
			_, err := pool.Exec(ctx, insertRow, tag)
			return 1, err
		}},
		{"sql BeginTxSQL", true, sqlBeginTx},
		{"sql SetLocalSQL", true, func(ctx context.Context, tag string, _ int) (int, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return 0, err
			}
			defer tx.Rollback()
			c, _ := auditctx.FromContext(ctx)
			if err := auditctx.SetLocalSQL(ctx, tx, c); err != nil {
				return 0, err
			}
			if _, err := tx.ExecContext(ctx, insertRow, tag); err != nil {
				return 0, err
			}
			return 1, tx.Commit()
		}},
		{"sql BeginTxSQL without context", false, sqlBeginTx},
		{"sql without auditctx", false, func(ctx context.Context, tag string, _ int) (int, error) {
			_, err := db.ExecContext(ctx, insertRow, tag)
			return 1, err
		}},
	}
}

// openPools opens a pgx pool and a database/sql pool on dsn, each with more
// connections than PgBouncer has server connections.
func openPools(ctx context.Context, dsn string) (*pgxpool.Pool, *sql.DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, nil, err
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	db.SetMaxOpenConns(8)
	return pool, db, nil
}

// runClients runs workers goroutines of every client at once through dsn,
// iterations transactions each, every transaction with a context of its
// own or with none, and returns what each committed row must carry.
func runClients(ctx context.Context, dsn string, workers, iterations int) (map[string]expectation, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	pool, db, err := openPools(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	defer db.Close()
	var mu sync.Mutex
	want := make(map[string]expectation)
	g, ctx := errgroup.WithContext(ctx)
	for k, cl := range clients(pool, db) {
		for w := range workers {
			g.Go(func() error {
				for i := range iterations {
					tag := fmt.Sprintf("%d-%d-%d", k, w, i)
					var c auditctx.Context
					cctx := ctx
					if cl.withContext {
						c = auditctx.Context{
							ActorID:   "actor-" + tag,
							Actor:     `O'Brien \ "` + tag + `" 🙂`,
							IP:        fmt.Sprintf("10.%d.%d.%d", k, w, i),
							UserAgent: "agent/" + tag,
							RequestID: "req-" + tag,
							Extra:     map[string]any{"tag": tag, "client": cl.name},
						}
						cctx = auditctx.NewContext(ctx, c)
					}
					changes, err := cl.write(cctx, tag, i)
					if err != nil {
						return fmt.Errorf("%s, transaction %s: %w", cl.name, tag, err)
					}
					if changes > 0 {
						mu.Lock()
						want[tag] = expectation{c: c, changes: changes}
						mu.Unlock()
					}
				}
				return nil
			})
		}
	}
	return want, g.Wait()
}

// runDefaultMode runs the helpers through dsn in pgx's default mode, in
// which the application's own statements with parameters are prepared under
// names. It returns the errors of the helpers (there should be none) and
// the application's statements' failures by SQLSTATE.
func runDefaultMode(t *testing.T, dsn string) (helperErrs []error, codes map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pool, db, err := openPools(ctx, dsn)
	if err != nil {
		t.Fatalf("open pools: %v", err)
	}
	defer pool.Close()
	defer db.Close()
	var mu sync.Mutex
	codes = make(map[string]int)
	failed := func(err error) {
		code := "not a server error"
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
			code = pgErr.Code
		}
		mu.Lock()
		codes[code]++
		mu.Unlock()
	}
	helperFailed := func(err error) {
		mu.Lock()
		helperErrs = append(helperErrs, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range 4 {
		c := auditctx.Context{ActorID: fmt.Sprintf("actor-%d", w)}
		cctx := auditctx.NewContext(ctx, c)
		wg.Go(func() {
			for i := range 15 {
				tx, err := auditctx.BeginTx(cctx, pool, pgx.TxOptions{})
				if err != nil {
					helperFailed(fmt.Errorf("BeginTx: %w", err))
					continue
				}
				if _, err := tx.Exec(cctx, insertRow, fmt.Sprintf("pgx-%d-%d", w, i)); err != nil {
					failed(err)
				}
				tx.Rollback(cctx)
			}
		})
		wg.Go(func() {
			for i := range 15 {
				tx, err := auditctx.BeginTxSQL(cctx, db, nil)
				if err != nil {
					helperFailed(fmt.Errorf("BeginTxSQL: %w", err))
					continue
				}
				if _, err := tx.ExecContext(cctx, insertRow, fmt.Sprintf("sql-%d-%d", w, i)); err != nil {
					failed(err)
				}
				tx.Rollback()
			}
		})
	}
	wg.Wait()
	return helperErrs, codes
}
