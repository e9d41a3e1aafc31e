package retention

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/daily"
	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/migrations"
	"github.com/walscribe/walscribe/prune"
	"github.com/walscribe/walscribe/sink"
	"github.com/walscribe/walscribe/verify"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

// trail is a sink over a fresh audit schema, with the integrity log on, and
// what verifying it needs.
type trail struct {
	dsn      string
	sink     *sink.Postgres
	verifier note.Verifier
	lsn      pglogrepl.LSN
}

func newTrail(t *testing.T, classes ...string) *trail {
	t.Helper()
	ctx := context.Background()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := integrity.GenerateKey("test.example/retention")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.ParseSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	s := sink.NewPostgres(sink.Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: time.Second,
		Metrics: metrics.New(prometheus.NewRegistry(), ""), Classes: classes,
		Integrity: &sink.IntegrityConfig{Signer: signer, Interval: time.Millisecond, LeafHashing: sink.HashBoth}}, zap.NewNop())
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(ctx) })
	return &trail{dsn: dsn, sink: s, verifier: verifier, lsn: 0x1000000}
}

// write stores one transaction of n rows of table, committed at at, with
// the retention class class.
func (tr *trail) write(t *testing.T, table, class string, at time.Time, n int) {
	t.Helper()
	tx := &audit.Transaction{Xid: uint32(tr.lsn >> 12), CommitLSN: tr.lsn, EndLSN: tr.lsn + 0x100, CommittedAt: at}
	tr.lsn += 0x1000
	for i := range n {
		tx.Entries = append(tx.Entries, audit.Entry{Seq: int32(i + 1), Schema: "public", Table: table, Action: audit.Insert,
			PK: fmt.Appendf(nil, `{"id":%d}`, i), New: fmt.Appendf(nil, `{"id":%d,"note":"row %d of %s"}`, i, i, table), Class: class})
	}
	if err := tr.sink.Write(context.Background(), []*audit.Transaction{tx}); err != nil {
		t.Fatal(err)
	}
}

// TestRetention: an expired month of one class is dropped whole; a month
// holding a held table stays, and the other tables' rows in it are
// deleted; a table whose period was shortened loses its older entries of
// the longer class; the default class and unexpired months stay. The dry
// run's counts are what goes, every purge is recorded, and the trail
// verifies intact with exactly those holes.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	tr := newTrail(t, "30d", "1y")
	now := time.Now().UTC()
	old := time.Date(now.Year(), now.Month(), 1, 12, 0, 0, 0, time.UTC).AddDate(0, -6, 0) // six months ago
	older := old.AddDate(0, -1, 0)

	tr.write(t, "a", "30d", older, 40) // a's partition of that month: a and h (held)
	tr.write(t, "h", "30d", older, 5)  // held: stays, and keeps the partition
	tr.write(t, "a", "30d", old, 30)   // a month of a alone: dropped whole
	tr.write(t, "b", "1y", old, 20)    // 1y, and b's period is 1y: stays
	tr.write(t, "d", "1y", old, 10)    // written as 1y; d's period is now 30d: deleted
	tr.write(t, "c", "", old, 7)       // the default class: stays
	tr.write(t, "a", "30d", now, 9)    // this month: stays
	tr.write(t, "d", "1y", now, 3)     // d, recent: stays
	const removed = 40 + 30 + 10

	conn := pgtest.Connect(t, tr.dsn)
	periods := map[string]string{"a": "30d", "h": "30d", "b": "1y", "d": "30d", "c": ""}
	pol := Policy{Holds: []string{"public.h"}, Period: func(schema, table string) string { return periods[table] }}
	plan, err := Make(ctx, conn, `"audit"`, pol, time.Now(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Entries() != removed {
		t.Errorf("the plan removes %d entries, want %d: %+v", plan.Entries(), removed, plan.Steps)
	}
	if len(plan.Held) != 1 || plan.Held[0].Table != "h" || plan.Held[0].Entries != 5 {
		t.Errorf("held: %+v, want h's 5 entries", plan.Held)
	}
	drops := 0
	for _, s := range plan.Steps {
		if s.Drop {
			drops++
			if want := "entries_" + old.Format("2006m01") + "_30d"; s.Scope.Leaf != want || s.Entries != 30 {
				t.Errorf("drop %s of %d entries, want %s of 30", s.Scope.Leaf, s.Entries, want)
			}
		}
	}
	if drops != 1 {
		t.Errorf("%d partitions dropped, want 1: %+v", drops, plan.Steps)
	}
	before := tableCounts(t, conn)
	// The days of the old months counted, and today's.
	for _, d := range []time.Time{older, old, now} {
		if _, err := daily.Count(ctx, conn, `"audit"`, d); err != nil {
			t.Fatal(err)
		}
	}

	got, err := Execute(ctx, plan, func(ctx context.Context, scope prune.Scope, limit int) (int64, error) {
		p, err := tr.sink.Prune(ctx, scope, limit, nil)
		if err != nil {
			return 0, err
		}
		return p.Entries, nil
	}, 7, nil) // small batches: the deletions take several transactions
	if err != nil {
		t.Fatal(err)
	}
	if got != removed {
		t.Errorf("removed %d entries, want %d", got, removed)
	}
	after := tableCounts(t, conn)
	for table, want := range map[string]int64{"a": before["a"] - 70, "h": 5, "b": 20, "d": 3, "c": 7} {
		if after[table] != want {
			t.Errorf("%s: %d entries left, want %d", table, after[table], want)
		}
	}
	// The days purged are to be counted again; the others stay counted.
	for _, c := range []struct {
		day     time.Time
		counted bool
	}{{older, false}, {old, false}, {now, true}} {
		var counted bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit.daily_days WHERE day = $1::date)`, c.day.Format(time.DateOnly)).Scan(&counted); err != nil || counted != c.counted {
			t.Errorf("the daily counts of %s: counted %v, want %v (%v)", c.day.Format(time.DateOnly), counted, c.counted, err)
		}
	}
	var leafGone bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('audit.entries_`+old.Format("2006m01")+`_30d') IS NULL`).Scan(&leafGone); err != nil || !leafGone {
		t.Errorf("the expired partition is still there (%v): emptied rather than dropped", err)
	}
	var prunes, prunedEntries int64
	if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(sum(entries), 0) FROM audit.prunes`).Scan(&prunes, &prunedEntries); err != nil {
		t.Fatal(err)
	}
	var prunedActions int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE action = 'pruned'`).Scan(&prunedActions); err != nil {
		t.Fatal(err)
	}
	if prunedEntries != removed || prunedActions != prunes || prunes < 3 {
		t.Errorf("%d prune records of %d entries, %d pruned entries; want records of %d entries, one entry each", prunes, prunedEntries, prunedActions, removed)
	}

	// Nothing is left to expire.
	again, err := Make(ctx, conn, `"audit"`, pol, time.Now(), Options{})
	if err != nil || again.Entries() != 0 {
		t.Errorf("a second plan: %v, %+v; want nothing", err, again)
	}

	r := runVerify(t, tr)
	if !r.Intact || r.Pruned != removed || r.Prunes != int(prunes) {
		t.Errorf("verify: %+v; want intact, %d entries pruned by %d records", r, removed, prunes)
	}

	// A hole without a record is still missing; a record not signed with
	// the log's key is refused, and its ids stay missing.
	pgtest.Exec(t, tr.dsn, unguard,
		`ALTER TABLE audit.entries DISABLE TRIGGER USER`,
		`DELETE FROM audit.entries WHERE table_name = 'b' AND id = (SELECT min(id) FROM audit.entries WHERE table_name = 'b')`,
		`INSERT INTO audit.prunes (entry_id, scope, ids, entries, ids_sha256, note)
		 SELECT max(id) + 1000, '{}', int8multirange(int8range(1, 2)), 1, '\x00', 'walscribe prune v1' FROM audit.entries`)
	r = runVerify(t, tr)
	kinds := map[string]int{}
	for _, f := range r.Findings {
		kinds[f.Kind]++
	}
	if r.Intact || kinds[verify.Missing] != 1 || kinds[verify.Prune] != 1 {
		t.Errorf("verify after a deletion and a forged record: %+v; want one missing, one prune finding", r.Findings)
	}
}

// unguard drops the trail's guards, as a superuser tampering would.
const unguard = `DO $$ BEGIN
	IF EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'walscribe_guard_audit') THEN
		DROP EVENT TRIGGER walscribe_guard_audit; DROP EVENT TRIGGER walscribe_guard_audit_drop;
	END IF; END $$`

func runVerify(t *testing.T, tr *trail) *verify.Report {
	t.Helper()
	c1, c2 := pgtest.Connect(t, tr.dsn), pgtest.Connect(t, tr.dsn)
	r, err := verify.Run(context.Background(), c1, c2, verify.Options{Schema: "audit", Verifier: tr.verifier})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return r
}

// tableCounts is how many entries of each table the trail holds.
func tableCounts(t *testing.T, conn *pgx.Conn) map[string]int64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT table_name, count(*) FROM audit.entries WHERE schema_name = 'public' GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	var table string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&table, &n}, func() error { out[table] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRetentionFunctions: what the audit schema's retention functions
// refuse, whoever calls them, and that they record what they remove
// themselves, reckoning months in UTC whatever the session's settings.
func TestRetentionFunctions(t *testing.T) {
	ctx := context.Background()
	tr := newTrail(t, "30d")
	now := time.Now().UTC()
	tr.write(t, "a", "30d", now.AddDate(0, -6, 0), 3)
	tr.write(t, "a", "30d", now.Add(-time.Hour), 2)
	conn := pgtest.Connect(t, tr.dsn)
	refused := func(what, sql string, args ...any) {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		var n int64
		if err := tx.QueryRow(ctx, sql, args...).Scan(&n); err == nil {
			t.Errorf("%s: removed %d entries", what, n)
		}
	}
	var recent, old []int64
	rows, _ := conn.Query(ctx, `SELECT id FROM audit.entries WHERE committed_at > now() - interval '1 day' ORDER BY id`)
	recent, _ = pgx.CollectRows(rows, pgx.RowTo[int64])
	rows, _ = conn.Query(ctx, `SELECT id FROM audit.entries WHERE committed_at < now() - interval '1 day' ORDER BY id`)
	old, _ = pgx.CollectRows(rows, pgx.RowTo[int64])
	refused("entries of the last day", `SELECT audit.expire_rows('public', 'a', now(), NULL, $1, 99, '{}', NULL, NULL)`, recent)
	refused("walscribe's own entries", `SELECT audit.expire_rows('walscribe', 'retention', now() - interval '2 days', NULL, $1, 99, '{}', NULL, NULL)`, old)
	refused("ids of other entries", `SELECT audit.expire_rows('public', 'a', now() - interval '2 days', NULL, $1, 99, '{}', NULL, NULL)`, append(old, recent[0]))
	refused("a partition not expired", `SELECT audit.expire_leaf($1, 99, '{}', NULL, NULL, NULL)`, "entries_"+now.Format("2006m01")+"_30d")
	refused("a table that is not a partition", `SELECT audit.expire_leaf('checkpoints', 99, '{}', NULL, NULL, NULL)`)

	// Called directly, a removal is still recorded, by the function.
	var n int64
	if err := conn.QueryRow(ctx, `SELECT audit.expire_rows('public', 'a', now() - interval '2 days', NULL, $1, 99, '{}', NULL, NULL)`, old).Scan(&n); err != nil || n != 3 {
		t.Fatalf("expire_rows: %d, %v", n, err)
	}
	var recorded, count int64
	if err := conn.QueryRow(ctx, `SELECT entries, (SELECT count(*) FROM audit.prunes) FROM audit.prunes WHERE entry_id = 99`).Scan(&recorded, &count); err != nil || recorded != 3 || count != 1 {
		t.Errorf("the prune record: %d entries, %d records, %v", recorded, count, err)
	}

	// Months are UTC months, however the session reckons time.
	pgtest.Exec(t, tr.dsn, `ALTER DATABASE `+pgx.Identifier{conn.Config().Database}.Sanitize()+` SET TimeZone = 'America/Los_Angeles'`,
		`ALTER DATABASE `+pgx.Identifier{conn.Config().Database}.Sanitize()+` SET DateStyle = 'SQL, DMY'`)
	other := pgtest.Connect(t, tr.dsn)
	var start, expires time.Time
	if err := other.QueryRow(ctx, `SELECT month_start, expires_at FROM audit.retention_leaves() WHERE leaf = $1`, "entries_"+now.Format("2006m01")+"_30d").Scan(&start, &expires); err != nil {
		t.Fatal(err)
	}
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	if !start.Equal(month) || !expires.Equal(month.AddDate(0, 1, 30)) {
		t.Errorf("the month's start %s and expiry %s, want %s and %s", start.UTC(), expires.UTC(), month, month.AddDate(0, 1, 30))
	}
	// A month added across a change to summer time: reckoned in Los Angeles,
	// February 2026's 1m partition would expire on 28 March, 23:00 UTC.
	pgtest.Exec(t, tr.dsn, `SELECT audit.ensure_partitions('2026-02-15', '2026-02-15', ARRAY['1m'])`)
	if err := other.QueryRow(ctx, `SELECT expires_at FROM audit.retention_leaves() WHERE leaf = 'entries_2026m02_1m'`).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC); !expires.Equal(want) {
		t.Errorf("February 2026's 1m partition expires %s, want %s", expires.UTC(), want)
	}
}
