package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/mod/sumdb/note"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/internal/oracle"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/rules"
	"github.com/walscribe/walscribe/setup"
	"github.com/walscribe/walscribe/sink"
)

var srv *pgtest.Server

// A small logical_decoding_work_mem makes the server stream every
// transaction above 64 kB while it is in progress: the tests exercise
// protocol v2 streaming, interleaving and subtransaction aborts.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, &srv, pgtest.Options{Settings: map[string]string{"logical_decoding_work_mem": "64kB"}}))
}

type harness struct {
	t       testing.TB
	dsn     string
	conn    *pgx.Conn
	cfg     Config
	sinkCfg sink.Config
	tables  []cdc.Table
	log     *zap.Logger
	prefix  string // context.prefix; "" is the default
	// setupRules, when set, make setup pick the tables from the rules'
	// names and patterns, and install the capture of new tables.
	setupRules *rules.Set

	cancel context.CancelFunc
	done   chan error
	d      *Daemon
}

// newHarness creates a database with the oracle, runs schema, and sets up
// walscribe for tables (plus the marker table).
func newHarness(t testing.TB, schema string, tables ...string) *harness {
	t.Helper()
	dsn := srv.NewDB(t)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	pgtest.Exec(t, dsn, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` SET TimeZone = 'UTC'`)
	h := &harness{t: t, dsn: dsn, log: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))}
	pgtest.Exec(t, dsn, `CREATE TABLE marker (id serial PRIMARY KEY)`, schema)
	h.conn = pgtest.Connect(t, dsn)
	if err := oracle.Install(context.Background(), h.conn); err != nil {
		t.Fatal(err)
	}
	for _, name := range append([]string{"marker"}, tables...) {
		h.tables = append(h.tables, cdc.Table{Schema: "public", Name: name, Key: name})
		if err := oracle.Attach(context.Background(), h.conn, "public."+name); err != nil {
			t.Fatal(err)
		}
	}
	h.cfg = Config{
		SourceDSN:      dsn,
		Slot:           "walscribe",
		Publication:    "walscribe",
		BridgeSchema:   "audit",
		StatusInterval: 200 * time.Millisecond,
	}
	h.sinkCfg = sink.Config{DSN: dsn, Schema: "audit", Slot: "walscribe",
		BatchMaxEntries: 1000, BatchMaxWait: 20 * time.Millisecond,
		// Every test writes with the integrity log, the sink's leaf hashes
		// compared with the server's for every row: a value the sink
		// renders otherwise than the server fails the write.
		Integrity: &sink.IntegrityConfig{Signer: testSigner(t), Interval: 100 * time.Millisecond, LeafHashing: sink.HashBoth}}
	h.setup()
	t.Cleanup(h.stopQuietly)
	return h
}

func (h *harness) setup() {
	h.t.Helper()
	err := setup.Run(context.Background(), setup.Config{
		SourceDSN: h.dsn, SinkSchema: "audit", Slot: h.cfg.Slot, Publication: h.cfg.Publication,
		Tables: h.tables, SlotTimeout: 30 * time.Second, ContextPrefix: h.prefix, Rules: h.setupRules,
	}, h.t.Logf)
	if err != nil {
		h.t.Fatalf("setup: %v", err)
	}
}

func (h *harness) exec(sql string, args ...any) {
	h.t.Helper()
	if _, err := h.conn.Exec(context.Background(), sql, args...); err != nil {
		h.t.Fatalf("exec %q: %v", sql, err)
	}
}

func (h *harness) start() {
	h.t.Helper()
	sc := h.sinkCfg
	if sc.Metrics == nil {
		sc.Metrics = h.cfg.Metrics
	}
	h.startWith(sink.NewPostgres(sc, h.log))
}

// startWith starts the daemon writing to snk.
func (h *harness) startWith(snk Sink) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	h.d = New(h.cfg, snk, h.log)
	go func() { h.done <- h.d.Run(ctx) }()
}

// stop stops the daemon and fails the test if it did not exit cleanly.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("daemon: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Fatal("daemon did not stop within 30s")
	}
}

func (h *harness) stopQuietly() {
	if h.cancel != nil {
		h.cancel()
		h.cancel = nil
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
		}
	}
}

// sync writes a marker row and waits until the daemon has stored it: every
// transaction committed before it is then stored too.
func (h *harness) sync() {
	h.t.Helper()
	var id int
	if err := h.conn.QueryRow(context.Background(), `INSERT INTO marker DEFAULT VALUES RETURNING id`).Scan(&id); err != nil {
		h.t.Fatal(err)
	}
	h.waitFor(fmt.Sprintf("marker %d stored", id), func() bool {
		return h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'marker' AND pk = jsonb_build_object('id', $1::int)`, id) == 1
	})
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case err := <-h.done:
			h.cancel = nil
			h.t.Fatalf("daemon exited while waiting for %s: %v", what, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (h *harness) count(sql string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// checkOracle fails the test unless the audit trail holds exactly the
// changes of the shadow log: each transaction's changes, in order, once.
func (h *harness) checkOracle() {
	h.t.Helper()
	r, err := oracle.Compare(context.Background(), h.conn, "audit", []string{"marker"}, 10)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, m := range r.Mismatches {
		h.t.Error(m)
	}
	if r.Changes == 0 {
		h.t.Error("the workload changed nothing: the comparison proves nothing")
	}
	h.t.Logf("oracle: %d changes in %d transactions compared", r.Changes, r.Transactions)
}

// checkDense fails the test unless the entry ids run from 1 without a hole.
func (h *harness) checkDense(what string) {
	h.t.Helper()
	if n := h.count(`SELECT count(*) FROM (SELECT count(*) = max(id) AND min(id) = 1 AS dense FROM audit.entries) x WHERE dense`); n != 1 {
		h.t.Error("entry ids are not dense " + what)
	}
}

func deref(s *string) string {
	if s == nil {
		return "(null)"
	}
	return *s
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// pgtestExecQuiet runs sql on dsn, ignoring errors: for cleanup.
func pgtestExecQuiet(dsn, sql string) {
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	conn.Exec(context.Background(), sql)
}

func pgtestConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// useServer runs the rest of the test on a server of its own, started with
// opts (settings that need a restart, or a server the test stops).
func useServer(t *testing.T, opts pgtest.Options) *pgtest.Server {
	t.Helper()
	s, err := pgtest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	saved := srv
	srv = s
	t.Cleanup(func() {
		srv = saved
		s.Close()
	})
	return s
}

// loseRow stores row id of t through the daemon, then writes row lost and
// moves the slot past it behind the daemon's back: a gap of one change.
func (h *harness) loseRow(id, lost int) {
	h.t.Helper()
	h.start()
	h.exec(`INSERT INTO t VALUES ($1)`, id)
	h.sync()
	h.stop()
	h.exec(`INSERT INTO t VALUES ($1)`, lost)
	h.exec(`SELECT pg_replication_slot_advance('walscribe', pg_current_wal_lsn())`)
}

// unguard drops the event triggers that guard the audit schema, as a
// superuser may, for tests that put a trigger of their own on it.
const unguard = `DROP EVENT TRIGGER IF EXISTS walscribe_guard_audit; DROP EVENT TRIGGER IF EXISTS walscribe_guard_audit_drop`

// testSigner is a new signer of checkpoints.
func testSigner(t testing.TB) note.Signer {
	t.Helper()
	skey, _, err := integrity.GenerateKey("test.example/daemon")
	if err != nil {
		t.Fatal(err)
	}
	s, err := integrity.ParseSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
