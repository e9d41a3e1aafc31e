package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/setup"
	"github.com/walscribe/walscribe/sink"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

// oracleSQL keeps a shadow log of every row change, written by triggers in
// the same transaction as the change: what the audit trail must hold.
const oracleSQL = `
CREATE TABLE shadow (id bigserial PRIMARY KEY, xid bigint, tbl text, op text, old jsonb, new jsonb);
CREATE FUNCTION shadow_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO shadow (xid, tbl, op, old, new) VALUES (txid_current() % 4294967296, TG_TABLE_NAME, lower(TG_OP),
    CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END, CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
  RETURN NULL;
END $$;
CREATE FUNCTION shadow_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO shadow (xid, tbl, op) VALUES (txid_current() % 4294967296, TG_TABLE_NAME, 'truncate');
  RETURN NULL;
END $$;
CREATE FUNCTION shadow_attach(t regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE TRIGGER shadow_row AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION shadow_row()', t);
  EXECUTE format('CREATE TRIGGER shadow_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION shadow_truncate()', t);
END $$;
CREATE TABLE marker (id serial PRIMARY KEY);
`

type harness struct {
	t      *testing.T
	dsn    string
	conn   *pgx.Conn
	cfg    Config
	tables []cdc.Table
	log    *zap.Logger

	cancel context.CancelFunc
	done   chan error
	d      *Daemon
}

// newHarness creates a database with the oracle, runs schema, and sets up
// walscribe for tables (plus the marker table).
func newHarness(t *testing.T, schema string, tables ...string) *harness {
	t.Helper()
	dsn := srv.NewDB(t)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	pgtest.Exec(t, dsn, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` SET TimeZone = 'UTC'`)
	h := &harness{t: t, dsn: dsn, log: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))}
	pgtest.Exec(t, dsn, oracleSQL, schema)
	h.conn = pgtest.Connect(t, dsn)
	for _, name := range append([]string{"marker"}, tables...) {
		h.tables = append(h.tables, cdc.Table{Schema: "public", Name: name, Key: name})
		h.exec(`SELECT shadow_attach($1)`, "public."+name)
	}
	h.cfg = Config{
		SourceDSN:      dsn,
		Slot:           "walscribe",
		Publication:    "walscribe",
		StatusInterval: 200 * time.Millisecond,
		Sink: sink.Config{DSN: dsn, Schema: "audit", Slot: "walscribe",
			BatchMaxEntries: 1000, BatchMaxWait: 20 * time.Millisecond},
	}
	h.setup()
	t.Cleanup(h.stopQuietly)
	return h
}

func (h *harness) setup() {
	h.t.Helper()
	err := setup.Run(context.Background(), setup.Config{
		SourceDSN: h.dsn, SinkSchema: "audit", Slot: h.cfg.Slot, Publication: h.cfg.Publication,
		Tables: h.tables, SlotTimeout: 30 * time.Second,
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
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	h.d = New(h.cfg, h.log)
	go func() { h.done <- h.d.Run(ctx) }()
}

// stop stops the daemon and fails the test if it did not exit cleanly.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("daemon: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Fatal("daemon did not stop within 30s")
	}
	h.cancel = nil
}

func (h *harness) stopQuietly() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
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
	rows, err := h.conn.Query(context.Background(), `
	WITH want AS (
		SELECT xid, jsonb_agg(jsonb_build_object('t', tbl, 'op', op, 'old', old, 'new', new) ORDER BY id) AS changes
		FROM shadow WHERE tbl <> 'marker' GROUP BY xid),
	got AS (
		SELECT xid, jsonb_agg(jsonb_build_object('t', table_name, 'op', action, 'old', old,
			'new', CASE WHEN action = 'truncate' THEN NULL ELSE new END) ORDER BY seq) AS changes
		FROM audit.entries WHERE table_name <> 'marker' GROUP BY commit_lsn, xid)
	SELECT coalesce(w.xid, g.xid), w.changes::text, g.changes::text
	FROM want w FULL JOIN got g ON g.xid = w.xid AND g.changes = w.changes
	WHERE w.xid IS NULL OR g.xid IS NULL
	ORDER BY 1 LIMIT 10`)
	if err != nil {
		h.t.Fatal(err)
	}
	type diff struct {
		xid       int64
		want, got *string
	}
	diffs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (diff, error) {
		var d diff
		return d, r.Scan(&d.xid, &d.want, &d.got)
	})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, d := range diffs {
		h.t.Errorf("xid %d:\n  oracle: %s\n  trail:  %s", d.xid, deref(d.want), deref(d.got))
	}
	if n := h.count(`SELECT count(*) FROM shadow WHERE tbl <> 'marker'`); n == 0 {
		h.t.Error("the workload changed nothing: the comparison proves nothing")
	}
}

func deref(s *string) string {
	if s == nil {
		return "(missing)"
	}
	return *s
}

// errIs reports whether err wraps target, for tests.
func errIs(err, target error) bool { return errors.Is(err, target) }
