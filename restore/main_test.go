package restore

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/auditctx"
	"github.com/walscribe/walscribe/daemon"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/rules"
	"github.com/walscribe/walscribe/setup"
	"github.com/walscribe/walscribe/sink"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

// capture is a source database with walscribe set up and its daemon
// running in process: the entries the tests restore are the ones
// walscribe really writes.
type capture struct {
	t        *testing.T
	dsn      string    // the source, as the superuser
	trailDSN string    // the trail: the source, or another database
	src      *pgx.Conn // the source
	trail    *pgx.Conn // the trail
	r        *Restorer
	cancel   context.CancelFunc
	done     chan error
}

// secret is a masking key as config decodes it (32 random bytes).
var secret = []byte{0x86, 0xbe, 0x47, 0xfc, 0xc8, 0x59, 0x40, 0x12, 0x79, 0x82, 0x07, 0x80, 0x03, 0xd0, 0x04, 0x1e,
	0xb6, 0x56, 0xcf, 0x39, 0xd3, 0xfc, 0x87, 0x25, 0x81, 0xde, 0xb4, 0x4c, 0xeb, 0x04, 0xfa, 0x45}

// options of a capture.
type options struct {
	tables        []rules.TableConfig // rules besides the catch-all *.*
	separateTrail bool                // the trail in another database
	prefix        string              // context.prefix; "" the default
}

// newCapture creates a source database holding ddl (plus a marker table),
// sets walscribe up with the rules of o.tables (every table is tracked by
// a catch-all entry), and starts the daemon. The source's time zone is not
// UTC, unlike the stream's, on purpose.
func newCapture(t *testing.T, ddl string, o options) *capture {
	t.Helper()
	ctx := context.Background()
	c := &capture{t: t, dsn: srv.NewDB(t), r: New(Config{Prefix: o.prefix})}
	c.trailDSN = c.dsn
	separateTrail, tables := o.separateTrail, o.tables
	if separateTrail {
		c.trailDSN = srv.NewDB(t)
	}
	pgtest.Exec(t, c.dsn, `ALTER DATABASE `+pgx.Identifier{dbName(c.dsn)}.Sanitize()+` SET TimeZone = 'Asia/Kolkata'`,
		`CREATE TABLE marker (id serial PRIMARY KEY)`, ddl)
	rs, err := rules.New(rules.Config{Secret: secret, SkipUnchangedUpdates: true,
		Tables: append([]rules.TableConfig{{Name: "*.*", SkipUnchangedUpdates: true}}, tables...)})
	if err != nil {
		t.Fatal(err)
	}
	sinkDSN := ""
	if separateTrail {
		sinkDSN = c.trailDSN
	}
	err = setup.Run(ctx, setup.Config{SourceDSN: c.dsn, SinkDSN: sinkDSN, SinkSchema: "audit", Slot: "walscribe",
		Publication: "walscribe", Rules: rs, SlotTimeout: 30 * time.Second, ContextPrefix: o.prefix}, func(string, ...any) {})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	snk := sink.NewPostgres(sink.Config{DSN: c.trailDSN, Schema: "audit", Slot: "walscribe",
		BatchMaxEntries: 1000, BatchMaxWait: 10 * time.Millisecond}, zap.NewNop())
	d := daemon.New(daemon.Config{SourceDSN: c.dsn, Slot: "walscribe", Publication: "walscribe", BridgeSchema: "audit",
		StatusInterval: 200 * time.Millisecond, Rules: rs}, snk, zap.NewNop())
	runCtx, cancel := context.WithCancel(ctx)
	c.cancel, c.done = cancel, make(chan error, 1)
	go func() { c.done <- d.Run(runCtx) }()
	t.Cleanup(c.stop)
	c.src = pgtest.Connect(t, c.dsn)
	c.trail = pgtest.Connect(t, c.trailDSN)
	return c
}

func (c *capture) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.t.Error("the daemon did not stop within 30s")
	}
}

func dbName(dsn string) string {
	u, _ := url.Parse(dsn)
	return strings.TrimPrefix(u.Path, "/")
}

// exec runs statements on the source.
func (c *capture) exec(sql ...string) {
	c.t.Helper()
	for _, q := range sql {
		if _, err := c.src.Exec(context.Background(), q); err != nil {
			c.t.Fatalf("exec %q: %v", q, err)
		}
	}
}

// sync waits until the trail holds every transaction committed so far.
func (c *capture) sync() {
	c.t.Helper()
	ctx := context.Background()
	var id int
	if err := c.src.QueryRow(ctx, `INSERT INTO public.marker DEFAULT VALUES RETURNING id`).Scan(&id); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := c.trail.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE table_name = 'marker' AND pk = jsonb_build_object('id', $1::int)`, id).Scan(&n)
		if err == nil && n == 1 {
			return
		}
		select {
		case err := <-c.done:
			c.cancel = nil
			c.t.Fatalf("the daemon stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("marker %d not stored within 30s (last error %v)", id, err)
		}
	}
}

// ids lists the ids of the entries of one table and action, in order.
func (c *capture) ids(schema, table string, action audit.Action) []int64 {
	c.t.Helper()
	rows, err := c.trail.Query(context.Background(), `SELECT id FROM audit.entries
		WHERE schema_name = $1 AND table_name = $2 AND action = $3 ORDER BY id`, schema, table, string(action))
	if err != nil {
		c.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		c.t.Fatal(err)
	}
	return ids
}

// last is the id of the newest entry of one table and action.
func (c *capture) last(schema, table string, action audit.Action) int64 {
	c.t.Helper()
	ids := c.ids(schema, table, action)
	if len(ids) == 0 {
		c.t.Fatalf("no %s entry of %s.%s", action, schema, table)
	}
	return ids[len(ids)-1]
}

// find is the id of the newest entry of one table, action and key.
func (c *capture) find(table string, action audit.Action, pk string) int64 {
	c.t.Helper()
	var id *int64
	err := c.trail.QueryRow(context.Background(), `SELECT max(id) FROM audit.entries
		WHERE schema_name = 'public' AND table_name = $1 AND action = $2 AND pk = $3::jsonb`, table, string(action), pk).Scan(&id)
	if err != nil || id == nil {
		c.t.Fatalf("no %s entry of %s with key %s (%v)", action, table, pk, err)
	}
	return *id
}

// plan loads entry id and plans its restore.
func (c *capture) plan(id int64) *Plan {
	c.t.Helper()
	ctx := context.Background()
	e, err := c.r.Load(ctx, c.trail, id)
	if err != nil {
		c.t.Fatal(err)
	}
	p, err := c.r.Plan(ctx, c.src, e)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// snapshot is every row of a table as to_jsonb renders it and as text
// (every column's output function: exact where to_jsonb is not, as for
// json), in a stable order.
func (c *capture) snapshot(tableIdent string) string {
	c.t.Helper()
	var s *string
	err := c.src.QueryRow(context.Background(), `SELECT jsonb_agg(x ORDER BY x::text)::text FROM (SELECT jsonb_build_array(to_jsonb(r.*), ROW(r.*)::text) AS x FROM `+tableIdent+` r) s`).Scan(&s)
	if err != nil {
		c.t.Fatal(err)
	}
	if s == nil {
		return "[]"
	}
	return *s
}

var ada = auditctx.Context{ActorID: "7", Actor: "ada@example.com", RequestID: "req-restore-1"}

// apply applies p as ada and fails the test on error.
func (c *capture) apply(p *Plan) {
	c.t.Helper()
	if err := c.r.Apply(context.Background(), c.src, p, ada); err != nil {
		c.t.Fatalf("apply entry %d: %v\nplan:\n%s", p.EntryID, err, p.Change.Text)
	}
}

// restoredEvents counts the "restored" events of entry id in the trail.
func (c *capture) restoredEvents(id int64) int {
	c.t.Helper()
	var n int
	err := c.trail.QueryRow(context.Background(), `SELECT count(*) FROM audit.entries
		WHERE action = 'restored' AND (new->>'entry_id')::bigint = $1`, id).Scan(&n)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func mustNotRefuse(t *testing.T, p *Plan) {
	t.Helper()
	if p.Refused() {
		t.Fatalf("entry %d refused: %v", p.EntryID, p.Refusals)
	}
}

// mustRefuse fails unless p is refused with code (about column col, when
// set).
func mustRefuse(t *testing.T, p *Plan, code Code, col string) {
	t.Helper()
	for _, r := range p.Refusals {
		if r.Code == code && (col == "" || r.Column == col) {
			return
		}
	}
	t.Fatalf("entry %d: want a refusal %s (column %q), got %v", p.EntryID, code, col, p.Refusals)
}

func fmtPlan(p *Plan) string {
	return fmt.Sprintf("kind %s key %s\n-- check\n%s\n-- change\n%s\nnotes %v\nrefusals %v", p.Kind, p.Key, p.Check.Text, p.Change.Text, p.Notes, p.Refusals)
}
