package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/rules"
)

// corpusSchema is the schema the corpus starts from: every kind of table a
// real install meets, with values of most built-in types.
const corpusSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE kinds (
	id bigint PRIMARY KEY, i2 smallint, i4 int, n numeric, f4 real, f8 double precision, b boolean,
	t text, vc varchar(20), c char(3), by bytea, d date, ts timestamp, tz timestamptz, tm time, iv interval,
	u uuid, j json, jb jsonb, ip inet, cidr cidr, mac macaddr, bits bit(4), vb varbit, m money,
	tsv tsvector, r int4range, mr int4multirange, arr int[], arr2 text[][], pt point, bx box, ci circle,
	e mood, dom posint, comp pair, x xml);
CREATE TABLE keyless (a int, b text);
CREATE TABLE events (id int, at date, note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE animals (id int PRIMARY KEY, name text);
CREATE TABLE dogs (breed text) INHERITS (animals);
CREATE TABLE gen (id int PRIMARY KEY, a int, twice int GENERATED ALWAYS AS (a * 2) STORED);
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id int PRIMARY KEY, total numeric(12,2), status text DEFAULT 'new');`

// corpus is the workload: DML of every kind, values at the edges of their
// types, DDL inside transactions, partitions attached and detached,
// savepoints rolled back.
var corpus = []string{
	`INSERT INTO kinds VALUES (1, 32767, -2147483648, 'NaN', 'Infinity', '-Infinity', true,
		E'multi\nline \u00e9 \U0001F600 "q"', 'vc', 'ab', '\x00ff10', '4713-01-01 BC', '294276-12-31 23:59:59', 'infinity', '24:00', '-1 year 2 mons 3 days 04:05:06.789',
		'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2.50, "x"]}', '{"k": {"n": 1e3}}', '::ffff:1.2.3.4/120', '10.0.0.0/8', '08:00:2b:01:02:03',
		B'1010', B'101', '$1,234.56', 'a fat cat', '[1,5)', '{[1,3), [5,7)}', '[2:3]={7,8}', '{{a,b},{c,NULL}}',
		'(1.5,2)', '((0,0),(1,1))', '<(0,0),2>', 'happy', 5, ROW(1, 'x'), '<a>1</a>')`,
	`INSERT INTO kinds (id, n, t, arr, jb) VALUES (2, 123456789012345678901234567890.123456789, '', '{}', 'null')`,
	`INSERT INTO kinds (id) VALUES (3)`,
	`UPDATE kinds SET n = n + 1, t = t || '!', e = 'sad' WHERE id IN (1, 2)`,
	`UPDATE kinds SET id = 30 WHERE id = 3`,
	`DELETE FROM kinds WHERE id = 2`,
	`INSERT INTO keyless SELECT i % 3, 'v' || (i % 2) FROM generate_series(1, 12) i`,
	`UPDATE keyless SET b = 'w' WHERE a = 1`,
	`DELETE FROM keyless WHERE a = 2`,
	`INSERT INTO events SELECT i, date '2024-03-01' + i * 3, 'n' FROM generate_series(1, 150) i`,
	`UPDATE events SET at = at + 200 WHERE id % 10 = 0`, // across partitions
	`BEGIN; INSERT INTO events VALUES (1000, '2025-06-01', 'x'); SAVEPOINT s; DELETE FROM events; ROLLBACK TO s; UPDATE events SET note = 'y' WHERE id = 1000; COMMIT`,
	`CREATE TABLE events_2026 (id int, at date, note text, PRIMARY KEY (id, at))`,
	`INSERT INTO events_2026 VALUES (1, '2026-02-01', 'before attach')`,
	`ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`,
	`INSERT INTO events VALUES (2, '2026-03-01', 'after attach')`,
	`ALTER TABLE events DETACH PARTITION events_2024`,
	`INSERT INTO events_2024 VALUES (5000, '2024-12-31', 'after detach')`,
	`INSERT INTO animals VALUES (1, 'cat'); INSERT INTO dogs VALUES (2, 'rex', 'collie')`,
	`UPDATE animals SET name = upper(name)`, // the dog too, through inheritance
	`INSERT INTO gen (id, a) VALUES (1, 2), (2, 3); UPDATE gen SET a = a + 1`,
	`BEGIN; CREATE TABLE fresh (id int PRIMARY KEY, v text); INSERT INTO fresh VALUES (1, 'first row'); ALTER TABLE fresh ADD COLUMN w int DEFAULT 7; INSERT INTO fresh VALUES (2, 'second', 8); COMMIT`,
	`ALTER TABLE fresh DROP COLUMN v; UPDATE fresh SET w = w * 2`,
	`ALTER TABLE fresh ALTER COLUMN w TYPE bigint; INSERT INTO fresh VALUES (3, 9000000000)`,
	`INSERT INTO shop.orders (id, total) SELECT i, i * 1.5 FROM generate_series(1, 20) i`,
	`BEGIN; UPDATE shop.orders SET status = 'paid' WHERE id < 10; SAVEPOINT a; DELETE FROM shop.orders; ROLLBACK TO a; DELETE FROM shop.orders WHERE id = 20; COMMIT`,
	`CREATE SCHEMA crm CREATE TABLE contacts (id int PRIMARY KEY, email text)`,
	`INSERT INTO crm.contacts VALUES (1, 'a@example.com'), (2, 'b@example.com'); DELETE FROM crm.contacts WHERE id = 2`,
	`ALTER TABLE shop.orders RENAME COLUMN status TO state; UPDATE shop.orders SET state = 'done' WHERE id < 5`,
	`UPDATE shop.orders SET total = total + 1`,
	`BEGIN; ALTER TABLE crm.contacts RENAME TO people; INSERT INTO crm.people VALUES (3, 'c@example.com'); COMMIT`,
	`ALTER TABLE crm.people ALTER COLUMN email TYPE varchar(40); UPDATE crm.people SET email = upper(email)`,
	`TRUNCATE keyless`,
	`INSERT INTO keyless VALUES (9, 'after truncate')`,
}

// TestCorpus runs the corpus through walscribe tracking every table, and
// checks the trail two ways: replayed by key (as multisets for tables
// without one) it gives every table's rows as they are; and it holds, per
// table and action, as many changes as an independent decoding of the same
// WAL (test_decoding) — none missing, none extra, nothing rendered
// differently, except what the entries mark.
func TestCorpus(t *testing.T) {
	h := newHarness(t, corpusSchema)
	rs := mustRules(t, rules.Config{Tables: []rules.TableConfig{{Name: "public.*"}, {Name: "shop.*"}, {Name: "crm.*"}},
		ExcludeTables: []string{"public.oracle_*"}})
	h.cfg.Rules, h.setupRules = rs, rs
	h.setup()
	h.exec(`SELECT pg_create_logical_replication_slot('independent', 'test_decoding')`)
	h.start()
	for _, sql := range corpus {
		h.exec(sql)
	}
	h.sync()
	h.stop()
	ctx := context.Background()

	// Replay, per table as it is now.
	rows, err := h.conn.Query(ctx, `SELECT n.nspname, c.relname, c.relkind = 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname IN ('public', 'shop', 'crm') AND c.relname NOT LIKE 'oracle%'
		  AND c.relname <> 'marker' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type table struct {
		schema, name string
		partitioned  bool
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var tb table
		return tb, r.Scan(&tb.schema, &tb.name, &tb.partitioned)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 10 {
		t.Fatalf("only %d tables in the corpus: %v", len(tables), tables)
	}
	// Rows that moved between tables by ATTACH and DETACH PARTITION are
	// compared as one group: the trail names a row's table as it was when
	// the row changed.
	group := map[string]string{"events_2024": "events", "events_2026": "events"}
	renamed := map[string]string{"crm.people": "contacts"} // its entries before the rename
	want, got := map[string][]string{}, map[string][]string{}
	for _, tb := range tables {
		g := tb.schema + "." + tb.name
		if to, ok := group[tb.name]; ok {
			g = tb.schema + "." + to
		}
		// Composite values are stored as their text (README, "Limits").
		row := `to_jsonb(corpus_row) - 'twice'`
		if tb.name == "kinds" {
			row += ` || jsonb_build_object('comp', corpus_row.comp::text)`
		}
		only := "ONLY " // an inheritance parent's own rows; a partitioned table's are its partitions'
		if tb.partitioned {
			only = ""
		}
		for _, r := range h.strings(fmt.Sprintf(`SELECT (%s)::text FROM %s%s corpus_row`, row, only, pgx.Identifier{tb.schema, tb.name}.Sanitize())) {
			want[g] = append(want[g], canonJSON(t, r))
		}
		names := []string{tb.name}
		if before, ok := renamed[g]; ok {
			names = append(names, before)
		}
		got[g] = append(got[g], h.replay(tb.schema, names...)...)
	}
	got["public.events"] = append(got["public.events"], h.replay("public", "events_2026")...)
	for g := range want {
		sort.Strings(want[g])
		sort.Strings(got[g])
		if !slices.Equal(want[g], got[g]) {
			t.Errorf("%s replayed from the trail differs from the tables: only in the trail %v; only in the tables %v",
				g, minus(got[g], want[g]), minus(want[g], got[g]))
		}
	}

	// The independent decoding: changes per table and action. Partitions
	// are named by their root, as walscribe publishes them.
	roots := map[string]string{}
	for _, r := range h.strings(`SELECT n.nspname || '.' || c.relname || ' ' || pn.nspname || '.' || pc.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class pc ON pc.oid = pg_partition_root(c.oid)
		JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE c.relispartition`) {
		leaf, root, _ := strings.Cut(r, " ")
		roots[leaf] = root
	}
	// A partition detached during the corpus was its root's before.
	roots["public.events_2024"] = "public.events"
	line := regexp.MustCompile(`^table ([^:]+): (INSERT|UPDATE|DELETE|TRUNCATE):`)
	independent := map[string]int{}
	// In the forms the walsender's session gives values (and to_jsonb
	// renders them in), for the comparison of values below.
	for k, v := range cdc.SessionSettings {
		h.exec(fmt.Sprintf(`SET %s = %s`, k, pgx.Identifier{v}.Sanitize()))
	}
	decoded := h.strings(`SELECT data FROM pg_logical_slot_get_changes('independent', NULL, NULL, 'skip-empty-xacts', '1')`)
	var changes []tdChange
	for _, l := range decoded {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		for name := range strings.SplitSeq(m[1], ", ") {
			if strings.HasPrefix(name, "audit.") || strings.Contains(name, "oracle_shadow") || name == "public.marker" {
				continue
			}
			if root, ok := roots[name]; ok && !strings.Contains(l, "after detach") && !strings.Contains(l, "before attach") {
				name = root
			}
			independent[name+" "+strings.ToLower(m[2])]++
			if m[2] != "TRUNCATE" {
				changes = append(changes, parseTestDecoding(t, name, strings.ToLower(m[2]), l[len(m[0]):]))
			}
		}
	}
	trail := map[string]int{}
	for _, r := range h.strings(`SELECT schema_name || '.' || table_name || ' ' || action || ' ' || count(*) FROM audit.entries
		WHERE table_name <> 'marker' AND action IN ('insert', 'update', 'delete', 'truncate') GROUP BY schema_name, table_name, action`) {
		i := strings.LastIndex(r, " ")
		var n int
		fmt.Sscan(r[i+1:], &n)
		trail[r[:i]] = n
	}
	if fmt.Sprint(trail) != fmt.Sprint(independent) {
		t.Errorf("changes per table and action:\n  trail       %v\n  test_decoding %v", trail, independent)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE flags IS NOT NULL AND table_name <> 'gen' AND table_name <> 'marker'`); n != 0 {
		t.Errorf("%d entries flagged outside the table with a generated column", n)
	}
	h.compareValues(changes)
}

// strings runs a query of one text column.
func (h *harness) strings(sql string) []string {
	h.t.Helper()
	rows, err := h.conn.Query(context.Background(), sql)
	if err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// replay applies the trail's entries of one table (named as it was when
// each changed: a renamed table has several names) in order and returns
// its rows as JSON text: by key (pk) for a table with one, as a multiset of
// row images otherwise (pk is then every column).
func (h *harness) replay(schema string, names ...string) []string {
	h.t.Helper()
	rows, err := h.conn.Query(context.Background(), `SELECT action, coalesce(pk::text, ''), coalesce(old::text, ''), coalesce(new::text, '')
		FROM audit.entries WHERE schema_name = $1 AND table_name = ANY($2) ORDER BY id`, schema, names)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	state := map[string][]string{} // canonical key -> rows with it (more than one only without a key)
	canon := func(s string) string { return canonJSON(h.t, s) }
	for rows.Next() {
		var action, pk, old, new string
		if err := rows.Scan(&action, &pk, &old, &new); err != nil {
			h.t.Fatal(err)
		}
		switch action {
		case "insert":
			state[canon(pk)] = append(state[canon(pk)], canon(new))
		case "update":
			key := canon(pk)
			if old != "" {
				oldKey := key
				// The key before the update: old's key columns.
				var oldRow, pkCols map[string]json.RawMessage
				json.Unmarshal([]byte(old), &oldRow)
				json.Unmarshal([]byte(pk), &pkCols)
				for k := range pkCols {
					pkCols[k] = oldRow[k]
				}
				b, _ := json.Marshal(pkCols)
				oldKey = canon(string(b))
				if imgs := state[oldKey]; len(imgs) > 0 {
					i := slices.Index(imgs, canon(old))
					if i < 0 {
						i = 0
					}
					state[oldKey] = slices.Delete(imgs, i, i+1)
				}
			}
			state[key] = append(state[key], canon(new))
		case "delete":
			key := canon(pk)
			if imgs := state[key]; len(imgs) > 0 {
				i := slices.Index(imgs, canon(old))
				if i < 0 {
					i = 0
				}
				state[key] = slices.Delete(imgs, i, i+1)
			}
		case "truncate":
			if strings.Contains(new, "partition") {
				continue // the corpus truncates no partition on its own
			}
			state = map[string][]string{}
		}
	}
	var out []string
	for _, imgs := range state {
		out = append(out, imgs...)
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// canonJSON is s with its keys sorted and no spaces, numbers as written.
func canonJSON(t testing.TB, s string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("JSON %q: %v", s, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// minus is a without b, as multisets.
func minus(a, b []string) []string {
	left := slices.Clone(b)
	var out []string
	for _, x := range a {
		if i := slices.Index(left, x); i >= 0 {
			left = slices.Delete(left, i, i+1)
			continue
		}
		out = append(out, x)
	}
	return out
}
