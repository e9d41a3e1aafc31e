package auditctx_test

import (
	"context"
	"database/sql"
	"math"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver

	"github.com/walscribe/walscribe/auditctx"
	"github.com/walscribe/walscribe/internal/pgtest"
)

// names are the variables' suffixes in the order settings returns them.
var names = []string{"actor_id", "actor", "ip", "user_agent", "request_id", "context"}

// readSettings reads the six variables; NULL (nil) means never set on this
// connection.
const readSettings = `SELECT current_setting($1 || '.actor_id', true), current_setting($1 || '.actor', true),
	current_setting($1 || '.ip', true), current_setting($1 || '.user_agent', true),
	current_setting($1 || '.request_id', true), current_setting($1 || '.context', true)`

type pgxQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// settings reads the six variables with prefix through q.
func settings(t *testing.T, q pgxQuerier, prefix string) []*string {
	t.Helper()
	got := make([]*string, len(names))
	dest := make([]any, len(names))
	for i := range got {
		dest[i] = &got[i]
	}
	if err := q.QueryRow(t.Context(), readSettings, prefix).Scan(dest...); err != nil {
		t.Fatalf("read settings: %v", err)
	}
	return got
}

// checkSettings compares the first five variables with want and the context
// variable with wantJSON on the server: both empty, or equal as jsonb.
func checkSettings(t *testing.T, q pgxQuerier, got []*string, want [5]string, wantJSON string) {
	t.Helper()
	for i, w := range want {
		switch {
		case got[i] == nil:
			t.Errorf("%s is not set, want %q", names[i], w)
		case *got[i] != w:
			t.Errorf("%s = %q, want %q", names[i], *got[i], w)
		}
	}
	checkJSON(t, q, got[5], wantJSON)
}

func checkJSON(t *testing.T, q pgxQuerier, got *string, want string) {
	t.Helper()
	switch {
	case got == nil:
		t.Errorf("context is not set, want %q", want)
	case want == "" || *got == "":
		if *got != want {
			t.Errorf("context = %q, want %q", *got, want)
		}
	default:
		var equal bool
		if err := q.QueryRow(t.Context(), `SELECT $1::jsonb = $2::jsonb AND jsonb_typeof($1::jsonb) = 'object'`, *got, want).Scan(&equal); err != nil {
			t.Fatalf("context %q is not JSON: %v", *got, err)
		}
		if !equal {
			t.Errorf("context = %s, want %s", *got, want)
		}
	}
}

// checkCleared asserts that all six variables are the empty string: set
// once, then reset.
func checkCleared(t *testing.T, got []*string) {
	t.Helper()
	for i, v := range got {
		if v == nil || *v != "" {
			t.Errorf("%s = %v, want ''", names[i], deref(v))
		}
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// countingConn counts the writes to the server: the client writes once per
// round trip (it sends its messages together, then waits for the answer).
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// countingConfig is the configuration for dsn with its writes counted.
func countingConfig(t *testing.T, dsn string) (*pgx.ConnConfig, *atomic.Int64) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	writes := new(atomic.Int64)
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: writes}, nil
	}
	return cfg, writes
}

// connectCounting opens a connection whose writes are counted.
func connectCounting(t *testing.T, dsn string) (*pgx.Conn, *atomic.Int64) {
	t.Helper()
	cfg, writes := countingConfig(t, dsn)
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, writes
}

func begin(t *testing.T, conn *pgx.Conn) pgx.Tx {
	t.Helper()
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	return tx
}

var full = auditctx.Context{
	ActorID:   "42",
	Actor:     "alice@example.com",
	IP:        "203.0.113.7",
	UserAgent: "Mozilla/5.0 (X11; Linux x86_64)",
	RequestID: "req-1",
	Extra:     map[string]any{"tenant": "acme", "reason": "support ticket 12"},
}

var fullWant = [5]string{"42", "alice@example.com", "203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64)", "req-1"}

const fullJSON = `{"tenant": "acme", "reason": "support ticket 12"}`

// valueCases are contexts and what the six variables must read afterwards,
// for SetLocal and SetLocalSQL alike.
var valueCases = []struct {
	name     string
	c        auditctx.Context
	want     [5]string
	wantJSON string
}{
	{"every field", full, fullWant, fullJSON},
	{"nothing", auditctx.Context{}, [5]string{}, ""},
	{"empty extra", auditctx.Context{ActorID: "7", Extra: map[string]any{}}, [5]string{"7"}, ""},
	{"nested extra", auditctx.Context{Extra: map[string]any{
		"n": 3, "ok": true, "none": nil, "list": []any{1, "two", 3.5}, "sub": map[string]any{"a": "<b>&</b>"},
	}}, [5]string{}, `{"n": 3, "ok": true, "none": null, "list": [1, "two", 3.5], "sub": {"a": "<b>&</b>"}}`},
	{"quotes and injection", auditctx.Context{
		ActorID:   `42'; DROP TABLE users; --`,
		Actor:     `O'Brien "the" \ back\\slash`,
		IP:        `'), set_config('audit.actor_id', 'root', true), ('`,
		UserAgent: `E'\x27' $1 $$ %s`,
		RequestID: "tab\tnew\nline",
		Extra:     map[string]any{"q": `it's "quoted" \ `, "'": `"`},
	}, [5]string{
		`42'; DROP TABLE users; --`,
		`O'Brien "the" \ back\\slash`,
		`'), set_config('audit.actor_id', 'root', true), ('`,
		`E'\x27' $1 $$ %s`,
		"tab\tnew\nline",
	}, `{"q": "it's \"quoted\" \\ ", "'": "\""}`},
	{"unicode", auditctx.Context{
		Actor:     "Łukasz Żółć 日本語 🙂",
		UserAgent: "naïve/1.0 (ünïcode)",
		Extra:     map[string]any{"ü": "ñ", "emoji": "🙂"},
	}, [5]string{"", "Łukasz Żółć 日本語 🙂", "", "naïve/1.0 (ünïcode)"}, `{"ü": "ñ", "emoji": "🙂"}`},
	{"text postgres cannot store", auditctx.Context{
		ActorID:   "nul\x00byte",
		UserAgent: "bad\xff\xfeutf8",
	}, [5]string{"nul\uFFFDbyte", "", "", "bad\uFFFDutf8"}, ""},
	{"ip not an address", auditctx.Context{IP: "203.0.113.7:52100"}, [5]string{"", "", "203.0.113.7:52100"}, ""},
	{"escapes read as text", auditctx.Context{
		ActorID:   `ends in a backslash \`,
		Actor:     "\x01\x1f\x7f\u0080\u00a0\u2028",
		UserAgent: `\u0041 \U0001F642 \x41 \101 \' \\`,
		RequestID: `''`,
	}, [5]string{
		`ends in a backslash \`,
		"\x01\x1f\x7f\u0080\u00a0\u2028",
		"",
		`\u0041 \U0001F642 \x41 \101 \' \\`,
		`''`,
	}, ""},
}

func TestSetLocal(t *testing.T) {
	t.Parallel()
	dsn := srv.NewDB(t)
	for _, tc := range valueCases {
		for _, end := range []string{"commit", "rollback"} {
			t.Run(tc.name+"/"+end, func(t *testing.T) {
				conn := pgtest.Connect(t, dsn)
				tx := begin(t, conn)
				if err := auditctx.SetLocal(t.Context(), tx, tc.c); err != nil {
					t.Fatalf("SetLocal: %v", err)
				}
				checkSettings(t, tx, settings(t, tx, "audit"), tc.want, tc.wantJSON)
				var err error
				if end == "commit" {
					err = tx.Commit(t.Context())
				} else {
					err = tx.Rollback(t.Context())
				}
				if err != nil {
					t.Fatalf("%s: %v", end, err)
				}
				checkCleared(t, settings(t, conn, "audit"))
			})
		}
	}
}

func TestSetLocalReplacesEverything(t *testing.T) {
	t.Parallel()
	conn := pgtest.Connect(t, srv.NewDB(t))
	ctx := t.Context()
	if err := auditctx.SetSession(ctx, conn, full); err != nil {
		t.Fatalf("SetSession: %v", err)
	}
	tx := begin(t, conn)
	steps := []struct {
		name     string
		c        auditctx.Context
		want     [5]string
		wantJSON string
	}{
		{"over the session's values", auditctx.Context{ActorID: "7"}, [5]string{"7"}, ""},
		{"over the first SetLocal", auditctx.Context{RequestID: "req-2", Extra: map[string]any{"k": "v"}}, [5]string{4: "req-2"}, `{"k": "v"}`},
		{"with nothing", auditctx.Context{}, [5]string{}, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := auditctx.SetLocal(ctx, tx, s.c); err != nil {
				t.Fatalf("SetLocal: %v", err)
			}
			checkSettings(t, tx, settings(t, tx, "audit"), s.want, s.wantJSON)
		})
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	t.Run("session values back after the transaction", func(t *testing.T) {
		checkSettings(t, conn, settings(t, conn, "audit"), fullWant, fullJSON)
	})
}

// session is a connection that keeps session settings: *pgx.Conn, *pgxpool.Conn.
type session interface {
	pgxQuerier
	Begin(ctx context.Context) (pgx.Tx, error)
}

func TestSetSession(t *testing.T) {
	t.Parallel()
	dsn := srv.NewDB(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	cases := []struct {
		name string
		// set sets c through one kind of connection and returns the
		// session the values should persist on.
		set func(t *testing.T, c auditctx.Context) session
	}{
		{"*pgx.Conn", func(t *testing.T, c auditctx.Context) session {
			conn := pgtest.Connect(t, dsn)
			if err := auditctx.SetSession(t.Context(), conn, c); err != nil {
				t.Fatalf("SetSession: %v", err)
			}
			return conn
		}},
		{"*pgxpool.Conn", func(t *testing.T, c auditctx.Context) session {
			pc, err := pool.Acquire(t.Context())
			if err != nil {
				t.Fatalf("acquire: %v", err)
			}
			t.Cleanup(pc.Release)
			if err := auditctx.SetSession(t.Context(), pc, c); err != nil {
				t.Fatalf("SetSession: %v", err)
			}
			return pc
		}},
		{"pgx.Tx, committed", func(t *testing.T, c auditctx.Context) session {
			conn := pgtest.Connect(t, dsn)
			tx := begin(t, conn)
			if err := auditctx.SetSession(t.Context(), tx, c); err != nil {
				t.Fatalf("SetSession: %v", err)
			}
			if err := tx.Commit(t.Context()); err != nil {
				t.Fatalf("commit: %v", err)
			}
			return conn
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.set(t, full)
			checkSettings(t, s, settings(t, s, "audit"), fullWant, fullJSON)
			for _, end := range []string{"commit", "rollback"} {
				tx, err := s.Begin(t.Context())
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				checkSettings(t, tx, settings(t, tx, "audit"), fullWant, fullJSON)
				if end == "commit" {
					err = tx.Commit(t.Context())
				} else {
					err = tx.Rollback(t.Context())
				}
				if err != nil {
					t.Fatalf("%s: %v", end, err)
				}
				checkSettings(t, s, settings(t, s, "audit"), fullWant, fullJSON)
			}
		})
	}
	t.Run("pgx.Tx, rolled back", func(t *testing.T) {
		conn := pgtest.Connect(t, dsn)
		if err := auditctx.SetSession(t.Context(), conn, auditctx.Context{ActorID: "1"}); err != nil {
			t.Fatalf("SetSession: %v", err)
		}
		tx := begin(t, conn)
		if err := auditctx.SetSession(t.Context(), tx, full); err != nil {
			t.Fatalf("SetSession: %v", err)
		}
		if err := tx.Rollback(t.Context()); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		checkSettings(t, conn, settings(t, conn, "audit"), [5]string{"1"}, "")
	})
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	dsn := srv.NewDB(t)
	for _, prefix := range []string{"app_audit", "_x", "a" + strings.Repeat("b9_", 20) + "cd"} {
		t.Run(prefix, func(t *testing.T) {
			conn := pgtest.Connect(t, dsn)
			tx := begin(t, conn)
			if err := auditctx.SetLocal(t.Context(), tx, full, auditctx.WithPrefix(prefix)); err != nil {
				t.Fatalf("SetLocal: %v", err)
			}
			checkSettings(t, tx, settings(t, tx, prefix), fullWant, fullJSON)
			for i, v := range settings(t, tx, "audit") {
				if v != nil {
					t.Errorf("audit.%s = %q, want it never set", names[i], *v)
				}
			}
		})
	}
}

// rejectCase is a call that must fail before sending anything; it gets an
// idle connection and a transaction on another connection.
type rejectCase struct {
	name    string
	call    func(ctx context.Context, idle *pgx.Conn, tx pgx.Tx) error
	wantErr string // a phrase the error must contain
}

// TestRejectedBeforeSending checks that mistakes are reported before anything
// reaches the server, so the caller's transaction is not aborted.
func TestRejectedBeforeSending(t *testing.T) {
	t.Parallel()
	dsn := srv.NewDB(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })

	var cases []rejectCase
	for _, prefix := range []string{"", "Audit", "1audit", "audit.x", "audit x", "audit;", "au-dit", "ä", strings.Repeat("a", 64)} {
		opt := auditctx.WithPrefix(prefix)
		cases = append(cases,
			rejectCase{"SetLocal prefix " + prefix, func(ctx context.Context, _ *pgx.Conn, tx pgx.Tx) error {
				return auditctx.SetLocal(ctx, tx, full, opt)
			}, "prefix"},
			rejectCase{"SetSession prefix " + prefix, func(ctx context.Context, idle *pgx.Conn, _ pgx.Tx) error {
				return auditctx.SetSession(ctx, idle, full, opt)
			}, "prefix"},
		)
	}
	for name, v := range map[string]any{"channel": make(chan int), "NaN": math.NaN(), "function": func() {}} {
		extra := map[string]any{"tenant": "acme", "x": v}
		cases = append(cases, rejectCase{"Extra with a " + name, func(ctx context.Context, _ *pgx.Conn, tx pgx.Tx) error {
			return auditctx.SetLocal(ctx, tx, auditctx.Context{ActorID: "1", Extra: extra})
		}, "Extra cannot be encoded as JSON"})
	}
	cases = append(cases,
		rejectCase{"SetLocal outside a transaction", func(ctx context.Context, idle *pgx.Conn, _ pgx.Tx) error {
			return auditctx.SetLocal(ctx, idle, full)
		}, "outside a transaction"},
		rejectCase{"SetLocal on a pool", func(ctx context.Context, _ *pgx.Conn, _ pgx.Tx) error {
			return auditctx.SetLocal(ctx, pool, full)
		}, "outside a transaction"},
		rejectCase{"SetSession on a pool", func(ctx context.Context, _ *pgx.Conn, _ pgx.Tx) error {
			return auditctx.SetSession(ctx, pool, full)
		}, "pool.Acquire"},
		rejectCase{"SetLocalSQL on a *sql.DB", func(ctx context.Context, _ *pgx.Conn, _ pgx.Tx) error {
			return auditctx.SetLocalSQL(ctx, db, full)
		}, "pass the *sql.Tx"},
		rejectCase{"SetSessionSQL on a *sql.DB", func(ctx context.Context, _ *pgx.Conn, _ pgx.Tx) error {
			return auditctx.SetSessionSQL(ctx, db, full)
		}, "db.Conn"},
		rejectCase{"BeginTx with a bad prefix", func(ctx context.Context, idle *pgx.Conn, _ pgx.Tx) error {
			_, err := auditctx.BeginTx(ctx, idle, pgx.TxOptions{}, auditctx.WithPrefix("Bad"))
			return err
		}, "prefix"},
		rejectCase{"BeginTx with bad Extra", func(ctx context.Context, idle *pgx.Conn, _ pgx.Tx) error {
			ctx = auditctx.NewContext(ctx, auditctx.Context{Extra: map[string]any{"x": math.Inf(1)}})
			_, err := auditctx.BeginTx(ctx, idle, pgx.TxOptions{})
			return err
		}, "Extra cannot be encoded as JSON"},
		rejectCase{"BeginTxSQL with a bad prefix", func(ctx context.Context, _ *pgx.Conn, _ pgx.Tx) error {
			_, err := auditctx.BeginTxSQL(ctx, db, nil, auditctx.WithPrefix("Bad"))
			return err
		}, "prefix"},
	)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idle, idleWrites := connectCounting(t, dsn)
			txConn, txWrites := connectCounting(t, dsn)
			tx := begin(t, txConn)
			idleBefore, txBefore := idleWrites.Load(), txWrites.Load()
			err := tc.call(t.Context(), idle, tx)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one that mentions %q", err, tc.wantErr)
			}
			if n := idleWrites.Load() - idleBefore; n != 0 {
				t.Errorf("%d round trips on the idle connection, want none", n)
			}
			if n := txWrites.Load() - txBefore; n != 0 {
				t.Errorf("%d round trips on the transaction's connection, want none", n)
			}
			if s := idle.PgConn().TxStatus(); s != 'I' {
				t.Errorf("idle connection is in transaction state %q, want 'I'", s)
			}
			// The transaction still works, and nothing was set.
			for i, v := range settings(t, tx, "audit") {
				if v != nil {
					t.Errorf("audit.%s = %q, want it never set", names[i], *v)
				}
			}
		})
	}
}

func TestSetLocalSavepoint(t *testing.T) {
	t.Parallel()
	conn := pgtest.Connect(t, srv.NewDB(t))
	ctx := t.Context()
	tx := begin(t, conn)
	if err := auditctx.SetLocal(ctx, tx, full); err != nil {
		t.Fatalf("SetLocal: %v", err)
	}
	for _, tc := range []struct {
		end      string
		want     [5]string
		wantJSON string
	}{
		{"rollback", fullWant, fullJSON},           // undone with the savepoint
		{"commit", [5]string{"9", 4: "req-9"}, ""}, // kept: RELEASE SAVEPOINT
	} {
		t.Run(tc.end, func(t *testing.T) {
			nested, err := tx.Begin(ctx)
			if err != nil {
				t.Fatalf("savepoint: %v", err)
			}
			if err := auditctx.SetLocal(ctx, nested, auditctx.Context{ActorID: "9", RequestID: "req-9"}); err != nil {
				t.Fatalf("SetLocal: %v", err)
			}
			checkSettings(t, nested, settings(t, nested, "audit"), [5]string{"9", 4: "req-9"}, "")
			if tc.end == "commit" {
				err = nested.Commit(ctx)
			} else {
				err = nested.Rollback(ctx)
			}
			if err != nil {
				t.Fatalf("%s savepoint: %v", tc.end, err)
			}
			checkSettings(t, tx, settings(t, tx, "audit"), tc.want, tc.wantJSON)
		})
	}
}

func TestOneRoundTrip(t *testing.T) {
	t.Parallel()
	dsn := srv.NewDB(t)
	cases := []struct {
		name string
		// prepare readies a fresh connection; call is then counted.
		prepare func(t *testing.T, conn *pgx.Conn) auditctx.Execer
		call    func(ctx context.Context, e auditctx.Execer) error
		want    int64
	}{
		{"SetLocal in a transaction", func(t *testing.T, conn *pgx.Conn) auditctx.Execer { return begin(t, conn) },
			func(ctx context.Context, e auditctx.Execer) error { return auditctx.SetLocal(ctx, e, full) }, 1},
		{"SetLocal in a savepoint", func(t *testing.T, conn *pgx.Conn) auditctx.Execer {
			nested, err := begin(t, conn).Begin(t.Context())
			if err != nil {
				t.Fatalf("savepoint: %v", err)
			}
			return nested
		}, func(ctx context.Context, e auditctx.Execer) error { return auditctx.SetLocal(ctx, e, full) }, 1},
		{"SetSession", func(t *testing.T, conn *pgx.Conn) auditctx.Execer { return conn },
			func(ctx context.Context, e auditctx.Execer) error { return auditctx.SetSession(ctx, e, full) }, 1},
		{"BeginTx: BEGIN, then the settings", func(t *testing.T, conn *pgx.Conn) auditctx.Execer { return conn },
			func(ctx context.Context, e auditctx.Execer) error {
				tx, err := auditctx.BeginTx(auditctx.NewContext(ctx, full), e.(*pgx.Conn), pgx.TxOptions{})
				if err == nil {
					err = tx.Rollback(ctx)
				}
				return err
			}, 3}, // BEGIN, the settings, ROLLBACK
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, writes := connectCounting(t, dsn)
			e := tc.prepare(t, conn)
			// The first call on a connection costs the same as later ones:
			// nothing is prepared.
			for i := range 3 {
				before := writes.Load()
				if err := tc.call(t.Context(), e); err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
				if n := writes.Load() - before; n != tc.want {
					t.Errorf("call %d: %d round trips, want %d", i+1, n, tc.want)
				}
			}
		})
	}
}

// TestOneRoundTripSQL: through database/sql with pgx's stdlib driver in its
// default mode, which prepares every statement that has parameters, the
// helpers still prepare nothing: each call costs one round trip, the first
// one on a connection too.
func TestOneRoundTripSQL(t *testing.T) {
	t.Parallel()
	cfg, writes := countingConfig(t, srv.NewDB(t))
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	db.SetMaxIdleConns(0) // each case starts on a connection of its own
	ctx := auditctx.NewContext(t.Context(), full)
	cases := []struct {
		name string
		// prepare readies a fresh connection; call is then counted.
		prepare func(t *testing.T, c *sql.Conn) auditctx.SQLExecer
		call    func(e auditctx.SQLExecer) error
		want    int64
	}{
		{"SetLocalSQL", func(t *testing.T, c *sql.Conn) auditctx.SQLExecer {
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			t.Cleanup(func() { tx.Rollback() })
			return tx
		}, func(e auditctx.SQLExecer) error { return auditctx.SetLocalSQL(ctx, e, full) }, 1},
		{"SetSessionSQL", func(t *testing.T, c *sql.Conn) auditctx.SQLExecer { return c },
			func(e auditctx.SQLExecer) error { return auditctx.SetSessionSQL(ctx, e, full) }, 1},
		{"BeginTxSQL: BEGIN, then the settings", func(t *testing.T, c *sql.Conn) auditctx.SQLExecer { return c },
			func(e auditctx.SQLExecer) error {
				tx, err := auditctx.BeginTxSQL(ctx, e.(*sql.Conn), nil)
				if err == nil {
					err = tx.Rollback()
				}
				return err
			}, 3}, // BEGIN, the settings, ROLLBACK
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatalf("conn: %v", err)
			}
			t.Cleanup(func() { c.Close() })
			e := tc.prepare(t, c)
			for i := range 3 {
				before := writes.Load()
				if err := tc.call(e); err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
				if n := writes.Load() - before; n != tc.want {
					t.Errorf("call %d: %d round trips, want %d", i+1, n, tc.want)
				}
			}
		})
	}
}

func TestBeginTx(t *testing.T) {
	t.Parallel()
	dsn := srv.NewDB(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	cases := []struct {
		name      string
		withCtx   bool // ctx carries full
		pool      bool // begin on the pool instead of a connection whose session has other values
		txOptions pgx.TxOptions
		prefix    string
		want      [5]string
		wantJSON  string
		wantIso   string
	}{
		{name: "context from ctx", withCtx: true, prefix: "audit", want: fullWant, wantJSON: fullJSON, wantIso: "read committed"},
		{name: "no context in ctx clears the session's", prefix: "audit", wantIso: "read committed"},
		{name: "on a pool", withCtx: true, pool: true, prefix: "audit", want: fullWant, wantJSON: fullJSON, wantIso: "read committed"},
		{name: "transaction options", withCtx: true, prefix: "audit", txOptions: pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadOnly},
			want: fullWant, wantJSON: fullJSON, wantIso: "serializable"},
		{name: "custom prefix", withCtx: true, prefix: "app", want: fullWant, wantJSON: fullJSON, wantIso: "read committed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.withCtx {
				ctx = auditctx.NewContext(ctx, full)
			}
			conn := pgtest.Connect(t, dsn)
			other := auditctx.Context{ActorID: "session", Actor: "s", IP: "192.0.2.1", UserAgent: "ua", RequestID: "r", Extra: map[string]any{"s": 1}}
			if err := auditctx.SetSession(t.Context(), conn, other, auditctx.WithPrefix(tc.prefix)); err != nil {
				t.Fatalf("SetSession: %v", err)
			}
			var db auditctx.TxBeginner = conn
			if tc.pool {
				db = pool
			}
			tx, err := auditctx.BeginTx(ctx, db, tc.txOptions, auditctx.WithPrefix(tc.prefix))
			if err != nil {
				t.Fatalf("BeginTx: %v", err)
			}
			t.Cleanup(func() { tx.Rollback(context.Background()) })
			checkSettings(t, tx, settings(t, tx, tc.prefix), tc.want, tc.wantJSON)
			var iso, readOnly string
			if err := tx.QueryRow(ctx, "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')").Scan(&iso, &readOnly); err != nil {
				t.Fatalf("read transaction settings: %v", err)
			}
			if wantRO := map[bool]string{true: "on", false: "off"}[tc.txOptions.AccessMode == pgx.ReadOnly]; iso != tc.wantIso || readOnly != wantRO {
				t.Errorf("isolation %q, read only %q; want %q, %q", iso, readOnly, tc.wantIso, wantRO)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("commit: %v", err)
			}
			if !tc.pool {
				checkSettings(t, conn, settings(t, conn, tc.prefix), [5]string{"session", "s", "192.0.2.1", "ua", "r"}, `{"s": 1}`)
			}
		})
	}
}

type sqlQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// settingsSQL is settings for database/sql.
func settingsSQL(t *testing.T, q sqlQuerier, prefix string) []*string {
	t.Helper()
	got := make([]*string, len(names))
	dest := make([]any, len(names))
	for i := range got {
		dest[i] = &got[i]
	}
	if err := q.QueryRowContext(t.Context(), readSettings, prefix).Scan(dest...); err != nil {
		t.Fatalf("read settings: %v", err)
	}
	return got
}

// TestDatabaseSQL uses database/sql with pgx's stdlib driver.
func TestDatabaseSQL(t *testing.T) {
	t.Parallel()
	dsn := srv.NewDB(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	jsonConn := pgtest.Connect(t, dsn) // compares JSON; its session plays no part

	conn := func(t *testing.T) *sql.Conn {
		c, err := db.Conn(t.Context())
		if err != nil {
			t.Fatalf("conn: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	commit := func(t *testing.T, tx *sql.Tx) {
		if err := tx.Commit(); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}

	t.Run("SetLocalSQL", func(t *testing.T) {
		c := conn(t)
		tx, err := c.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		defer tx.Rollback()
		for range 2 {
			if err := auditctx.SetLocalSQL(t.Context(), tx, full); err != nil {
				t.Fatalf("SetLocalSQL: %v", err)
			}
			checkSettings(t, jsonConn, settingsSQL(t, tx, "audit"), fullWant, fullJSON)
		}
		commit(t, tx)
		got := settingsSQL(t, c, "audit")
		checkCleared(t, got)
	})
	// The values travel as literals in the statement's text: whatever they
	// hold, and however the session reads backslashes and quotes, they
	// arrive intact.
	for _, session := range []string{"standard_conforming_strings = on", "standard_conforming_strings = off", "backslash_quote = off"} {
		for _, tc := range valueCases {
			t.Run("SetLocalSQL values/"+session+"/"+tc.name, func(t *testing.T) {
				c := conn(t)
				if _, err := c.ExecContext(t.Context(), "SET "+session); err != nil {
					t.Fatalf("set %s: %v", session, err)
				}
				tx, err := c.BeginTx(t.Context(), nil)
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				defer tx.Rollback()
				if err := auditctx.SetLocalSQL(t.Context(), tx, tc.c); err != nil {
					t.Fatalf("SetLocalSQL: %v", err)
				}
				checkSettings(t, jsonConn, settingsSQL(t, tx, "audit"), tc.want, tc.wantJSON)
			})
		}
	}
	t.Run("SetSessionSQL", func(t *testing.T) {
		c := conn(t)
		if err := auditctx.SetSessionSQL(t.Context(), c, full, auditctx.WithPrefix("app")); err != nil {
			t.Fatalf("SetSessionSQL: %v", err)
		}
		tx, err := c.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		defer tx.Rollback()
		checkSettings(t, jsonConn, settingsSQL(t, tx, "app"), fullWant, fullJSON)
		commit(t, tx)
		checkSettings(t, jsonConn, settingsSQL(t, c, "app"), fullWant, fullJSON)
	})
	t.Run("BeginTxSQL on a *sql.DB", func(t *testing.T) {
		ctx := auditctx.NewContext(t.Context(), full)
		tx, err := auditctx.BeginTxSQL(ctx, db, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("BeginTxSQL: %v", err)
		}
		defer tx.Rollback()
		checkSettings(t, jsonConn, settingsSQL(t, tx, "audit"), fullWant, fullJSON)
		var readOnly string
		if err := tx.QueryRowContext(ctx, "SHOW transaction_read_only").Scan(&readOnly); err != nil || readOnly != "on" {
			t.Errorf("transaction_read_only = %q (%v), want on", readOnly, err)
		}
		commit(t, tx)
	})
	t.Run("BeginTxSQL without context clears the session's", func(t *testing.T) {
		c := conn(t)
		if err := auditctx.SetSessionSQL(t.Context(), c, full); err != nil {
			t.Fatalf("SetSessionSQL: %v", err)
		}
		tx, err := auditctx.BeginTxSQL(t.Context(), c, nil)
		if err != nil {
			t.Fatalf("BeginTxSQL: %v", err)
		}
		defer tx.Rollback()
		checkCleared(t, settingsSQL(t, tx, "audit"))
		commit(t, tx)
		checkSettings(t, jsonConn, settingsSQL(t, c, "audit"), fullWant, fullJSON)
	})
}

func TestNewContext(t *testing.T) {
	t.Parallel()
	if c, ok := auditctx.FromContext(context.Background()); ok {
		t.Errorf("FromContext of an empty context = %+v, true; want false", c)
	}
	outer := auditctx.NewContext(context.Background(), full)
	inner := auditctx.NewContext(outer, auditctx.Context{ActorID: "7"})
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want auditctx.Context
	}{
		{"outer", outer, full},
		{"inner replaces outer", inner, auditctx.Context{ActorID: "7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := auditctx.FromContext(tc.ctx)
			if !ok || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("FromContext = %+v, %v; want %+v, true", got, ok, tc.want)
			}
		})
	}
}
