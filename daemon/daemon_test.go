package daemon

import (
	"context"

	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/workload"
)

const typedSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN money_amount AS numeric(12,2);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE typed (
	id    serial PRIMARY KEY,
	i2 smallint, i4 integer, i8 bigint, n numeric, f4 real, f8 double precision, b boolean,
	t text, vc varchar(20), bp char(5), by bytea, u uuid,
	ts timestamp, tstz timestamptz, d date, tm time, tmtz timetz, iv interval,
	j json, jb jsonb,
	ai integer[], at text[], a2 integer[][], ajb jsonb[], atstz timestamptz[], anum numeric[], ab boolean[],
	ip inet, ci cidr, mac macaddr, mo mood, amo mood[], dom posint, adom posint[], amt money_amount,
	m money, bits varbit, pt point, r int4range, tsv tsvector, x xml
);`

// typedRows are literal rows for typed, covering the edges of each type.
var typedRows = []string{
	`DEFAULT, 1, 2, 3, 1.5, 1.5, 2.5, true, 'plain', 'v', 'ab', '\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	 '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+02', '2024-02-29', '13:14:15', '13:14:15+05:30', '1 year 2 mons 3 days 04:05:06.7',
	 '{"a": [1, 2, {"b": null}], "c": "d"}', '{"big": 123456789012345678901234567890, "u": "\u00fc"}',
	 '{1,2,NULL}', '{"a,b","c\"d",NULL,"NULL","","back\\slash","{br}"}', '{{1,2},{3,4}}', ARRAY['{"k": 1}'::jsonb, '[]'], '{"2024-01-02 03:04:05+00"}', '{1.5,NaN}', '{t,f}',
	 '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 'happy', '{sad,ok}', 7, '{1,2}', 12.5,
	 12.34, B'1011', '(1.5,2)', '[1,10)', 'a fat cat', '<a>x</a>'`,
	`DEFAULT, -32768, -2147483648, 9223372036854775807, 'NaN', 'NaN', 'Infinity', false,
	 E'uni\u00e9 "quote" \\ back\nline\ttab \x01 ☃ 😀', 'ü', 'x', '\x', '00000000-0000-0000-0000-000000000000',
	 'infinity', '-infinity', 'infinity', '00:00:00', '00:00:00-00:00:07', '-1 days -00:00:01',
	 '[]', '{}',
	 '{}', '{}', '[2:3]={7,8}', '{}', '{infinity}', '{}', '{}',
	 '::1', '::/0', '00:00:00:00:00:00', 'sad', '{}', 1, '{}', -0.01,
	 -1, B'', '(0,0)', 'empty', '', '<r/>'`,
	`DEFAULT, 0, 0, -9007199254740993, 123456789012345678901234567890.123456789, '-Infinity', '1e-310', NULL,
	 '', NULL, NULL, NULL, NULL,
	 '0044-03-15 12:00:00 BC', '1999-12-31 23:59:59.999999-08', '0001-01-01 BC', '23:59:59.999999', NULL, '00:00:00',
	 '"just a string"', '9007199254740993',
	 '{{NULL,NULL},{NULL,NULL}}', '{" spaced ",x}', NULL, NULL, NULL, '{-Infinity}', '{NULL}',
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL`,
}

// TestTypesRenderAsToJSONB checks that every image in the trail equals
// to_jsonb() of the row, as the server renders it, for inserts, updates and
// deletes.
func TestTypesRenderAsToJSONB(t *testing.T) {
	h := newHarness(t, typedSchema, "typed")
	h.start()
	for _, r := range typedRows {
		h.exec(`INSERT INTO typed VALUES (` + r + `)`)
	}
	h.exec(`INSERT INTO typed (id) VALUES (DEFAULT)`) // every column NULL
	h.exec(`CREATE TABLE snapshot AS SELECT id, to_jsonb(typed) AS row FROM typed`)
	h.sync()
	rows := len(typedRows) + 1
	h.expectMatches("inserts", rows, `SELECT e.new::text, to_jsonb(tr)::text, e.new = to_jsonb(tr)
		FROM typed tr JOIN audit.entries e ON e.table_name = 'typed' AND e.action = 'insert' AND e.pk = jsonb_build_object('id', tr.id)`)

	h.exec(`UPDATE typed SET t = coalesce(t, '') || '!', i4 = i4`)
	h.sync()
	h.expectMatches("update new images", rows, `SELECT e.new::text, to_jsonb(tr)::text, e.new = to_jsonb(tr) AND e.changed = '{t}'
		FROM typed tr JOIN audit.entries e ON e.table_name = 'typed' AND e.action = 'update' AND e.pk = jsonb_build_object('id', tr.id)`)
	h.expectMatches("update old images", rows, `SELECT e.old::text, s.row::text, e.old = s.row
		FROM snapshot s JOIN audit.entries e ON e.table_name = 'typed' AND e.action = 'update' AND e.pk = jsonb_build_object('id', s.id)`)

	h.exec(`CREATE TABLE snapshot2 AS SELECT id, to_jsonb(typed) AS row FROM typed`)
	h.exec(`DELETE FROM typed`)
	h.sync()
	h.expectMatches("delete old images", rows, `SELECT e.old::text, s.row::text, e.old = s.row AND e.new IS NULL
		FROM snapshot2 s JOIN audit.entries e ON e.table_name = 'typed' AND e.action = 'delete' AND e.pk = jsonb_build_object('id', s.id)`)
	h.stop()
}

// expectMatches runs a query of (got, want, equal) rows and requires n rows,
// all equal.
func (h *harness) expectMatches(what string, n int, query string) {
	h.t.Helper()
	rows, err := h.conn.Query(context.Background(), query)
	if err != nil {
		h.t.Fatalf("%s: %v", what, err)
	}
	seen := 0
	for rows.Next() {
		var got, want *string
		var equal *bool
		if err := rows.Scan(&got, &want, &equal); err != nil {
			h.t.Fatal(err)
		}
		seen++
		if equal == nil || !*equal {
			h.t.Errorf("%s differ:\n  trail:    %s\n  to_jsonb: %s", what, deref(got), deref(want))
		}
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	if seen != n {
		h.t.Errorf("%s: %d entries matched rows, want %d", what, seen, n)
	}
}

// TestUnknownTypeKeepsText checks that a type the decoder cannot render
// structurally (a composite) is stored as its text form, and the change is
// recorded.
func TestUnknownTypeKeepsText(t *testing.T) {
	h := newHarness(t, `CREATE TYPE pair AS (a int, b text); CREATE TABLE c (id int PRIMARY KEY, p pair)`, "c")
	h.start()
	h.exec(`INSERT INTO c VALUES (1, ROW(1, 'x y'))`)
	h.sync()
	if n := h.count(`SELECT count(*) FROM audit.entries e JOIN c ON e.table_name = 'c' AND e.new->'p' = to_jsonb(c.p::text)`); n != 1 {
		t.Fatalf("composite stored as its text form: %d entries, want 1", n)
	}
	h.stop()
}

// TestUnchangedToastComesFromOldImage updates a row whose large value is
// stored out of line: pgoutput sends it as "unchanged", and the entry must
// still carry it in new, never null and never missing.
func TestUnchangedToastComesFromOldImage(t *testing.T) {
	h := newHarness(t, `CREATE TABLE notes (id int PRIMARY KEY, body text, rev int);
		ALTER TABLE notes ALTER COLUMN body SET STORAGE EXTERNAL`, "notes")
	h.start()
	h.exec(`INSERT INTO notes SELECT 1, string_agg(md5(random()::text), ''), 0 FROM generate_series(1, 600)`) // 19 kB
	h.exec(`UPDATE notes SET rev = 1`)
	h.sync()
	var length int
	var sameNew, sameOld bool
	var changed []string
	err := h.conn.QueryRow(context.Background(), `SELECT length(e.new->>'body'), e.new->>'body' = n.body, e.old->>'body' = n.body, e.changed
		FROM audit.entries e JOIN notes n ON e.table_name = 'notes' AND e.action = 'update'`).Scan(&length, &sameNew, &sameOld, &changed)
	if err != nil {
		t.Fatal(err)
	}
	if length != 600*32 || !sameNew || !sameOld {
		t.Errorf("TOASTed body: new length %d (want %d), new equal %v, old equal %v", length, 600*32, sameNew, sameOld)
	}
	if strings.Join(changed, ",") != "rev" {
		t.Errorf("changed = %v, want [rev]", changed)
	}
	h.stop()
	h.checkOracle()
}

// TestTruncate records one entry per truncated table, cascaded ones
// included, with the options.
func TestTruncate(t *testing.T) {
	h := newHarness(t, `CREATE TABLE parent (id serial PRIMARY KEY);
		CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent)`, "parent", "child")
	h.start()
	h.exec(`INSERT INTO parent DEFAULT VALUES`)
	h.exec(`INSERT INTO child (parent_id) SELECT id FROM parent`)
	h.exec(`TRUNCATE parent CASCADE`)
	h.exec(`TRUNCATE child RESTART IDENTITY`)
	h.exec(`TRUNCATE parent, child RESTART IDENTITY CASCADE`)
	h.sync()
	rows, err := h.conn.Query(context.Background(), `SELECT table_name, new::text FROM audit.entries
		WHERE action = 'truncate' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var table, opts string
		err := r.Scan(&table, &opts)
		return table + " " + opts, err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`parent {"cascade": true, "restart_identity": false}`,
		`child {"cascade": true, "restart_identity": false}`,
		`child {"cascade": false, "restart_identity": true}`,
		`parent {"cascade": true, "restart_identity": true}`,
		`child {"cascade": true, "restart_identity": true}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("truncate entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	h.stop()
	h.checkOracle()
}

// TestSchemaChanges decodes each change with the table's shape at that
// point of the stream: changes between transactions and inside one.
func TestSchemaChanges(t *testing.T) {
	h := newHarness(t, `CREATE TABLE s (id int PRIMARY KEY, a text, b int)`, "s")
	h.start()
	h.exec(`INSERT INTO s VALUES (1, 'one', 1)`)
	h.exec(`ALTER TABLE s ADD COLUMN c text DEFAULT 'x'`)
	h.exec(`INSERT INTO s VALUES (2, 'two', 2)`)
	h.exec(`UPDATE s SET b = b + 10`)
	h.exec(`BEGIN;
		INSERT INTO s VALUES (3, 'three', 3, 'y');
		ALTER TABLE s DROP COLUMN b;
		INSERT INTO s VALUES (4, 'four', 'z');
		ALTER TABLE s RENAME COLUMN a TO a2;
		UPDATE s SET a2 = a2 || '+' WHERE id = 1;
		ALTER TABLE s ALTER COLUMN c DROP DEFAULT, ALTER COLUMN c TYPE int USING length(c);
		INSERT INTO s VALUES (5, 'five', 55);
		DELETE FROM s WHERE id = 2;
		COMMIT`)
	h.exec(`ALTER TABLE s ALTER COLUMN id TYPE bigint`)
	h.exec(`UPDATE s SET id = id * 1000000000000 WHERE id = 3`)
	h.sync()
	h.stop()
	h.checkOracle()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 's' AND new ? 'a2' AND new->>'c' = '55'`); n != 1 {
		t.Errorf("insert after rename and type change: %d entries with the new shape, want 1", n)
	}
}

// TestIdleSlotAdvances writes only to a table that is not published: the
// slot must still move forward, or the server keeps that WAL for ever.
func TestIdleSlotAdvances(t *testing.T) {
	h := newHarness(t, `CREATE TABLE tracked (id int); CREATE TABLE other (id int, pad text)`, "tracked")
	h.start()
	h.sync()
	ctx := context.Background()
	tx, err := h.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO other SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	var beforeCommit string
	if err := tx.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&beforeCommit); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the slot to pass "+beforeCommit, func() bool {
		return h.count(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walscribe' AND confirmed_flush_lsn >= $1::pg_lsn`, beforeCommit) == 1
	})
	if n := h.count(`SELECT count(*) FROM audit.checkpoints WHERE end_lsn >= $1::pg_lsn AND entries = 0`, beforeCommit); n == 0 {
		t.Error("no checkpoint records the idle progress")
	}
	h.stop()
}

// TestStopDrains stops the daemon while entries wait in a batch that would
// not be written for a long time: they are written before it exits, and
// acknowledged.
func TestStopDrains(t *testing.T) {
	h := newHarness(t, `CREATE TABLE d (id int)`, "d")
	h.sinkCfg.BatchMaxWait = time.Minute
	h.sinkCfg.BatchMaxEntries = 1_000_000
	h.start()
	h.exec(`INSERT INTO d SELECT generate_series(1, 500)`)
	time.Sleep(time.Second) // received, waiting in the batch
	if n := h.count(`SELECT count(*) FROM audit.entries`); n != 0 {
		t.Fatalf("%d entries written before the batch was due: the test proves nothing", n)
	}
	began := time.Now()
	h.stop()
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("stop took %s", took)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'd'`); n != 500 {
		t.Errorf("entries after stop = %d, want 500", n)
	}
	if n := h.count(`SELECT count(*) FROM pg_replication_slots s WHERE slot_name = 'walscribe'
		AND confirmed_flush_lsn = (SELECT max(end_lsn) FROM audit.checkpoints)`); n != 1 {
		t.Error("the slot's confirmed position is not the stored checkpoint after a clean stop")
	}
}

// TestExactlyOnceThroughFaults runs a concurrent workload (savepoints,
// rollbacks, truncates, schema changes, large values) while the daemon is
// stopped and restarted, its walsender terminated and the server itself
// crashed, then compares the trail with the oracle.
func TestExactlyOnceThroughFaults(t *testing.T) {
	var tables []string
	for _, q := range workload.Tables {
		tables = append(tables, strings.TrimPrefix(q, "public."))
	}
	h := newHarness(t, workload.Schema, tables...)
	h.start()
	ctx, stopLoad := context.WithCancel(context.Background())
	statsCh := make(chan *workload.Stats, 1)
	go func() {
		statsCh <- workload.Run(ctx, h.dsn, workload.Options{Clients: 4, DDL: true, Truncate: true, Seed: 7, Pause: 2 * time.Millisecond})
	}()

	defer stopLoad()

	cycles := 9
	if testing.Short() {
		cycles = 3
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range cycles {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		switch i % 3 {
		case 0:
			t.Logf("cycle %d: stop and restart the daemon", i)
			h.stop()
			h.start()
		case 1:
			t.Logf("cycle %d: terminate the walsender", i)
			h.terminateWalsender()
		case 2:
			t.Logf("cycle %d: crash PostgreSQL (immediate shutdown) and restart it", i)
			srv.Crash()
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			h.conn = pgtest_reconnect(t, h.dsn)
		}
	}
	time.Sleep(500 * time.Millisecond)
	stopLoad()
	st := <-statsCh
	t.Logf("workload: %d commits, %d rollbacks, %d errors", st.Commits.Load(), st.Rollbacks.Load(), st.Errors.Load())
	h.sync()
	h.stop()
	h.checkOracle()
	h.checkDense("from 1")
}

func (h *harness) terminateWalsender() {
	h.t.Helper()
	db := h.dsn[strings.LastIndex(h.dsn, "/")+1 : strings.Index(h.dsn, "?")]
	h.waitFor("a walsender", func() bool {
		return h.count(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = $1`, db) > 0
	})
}

func pgtest_reconnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	var conn *pgx.Conn
	var err error
	for range 100 {
		if conn, err = pgx.Connect(context.Background(), dsn); err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("reconnect: %v", err)
	return nil
}
