package integrity

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

// entriesDDL is a plain table with the columns of the audit table entries.
const entriesDDL = `CREATE TEMP TABLE entries (
	id bigint NOT NULL, commit_lsn pg_lsn NOT NULL, seq integer NOT NULL, xid bigint,
	committed_at timestamptz NOT NULL, captured_at timestamptz NOT NULL,
	schema_name text NOT NULL, table_name text NOT NULL, action text NOT NULL,
	pk jsonb, old jsonb, new jsonb, changed text[],
	actor_id text, actor text, ip inet, user_agent text, request_id text,
	db_user text, client_addr inet, application_name text, context jsonb,
	retention_class text NOT NULL, flags text[], login_user text)`

// entryRows are varied rows of entries, as INSERT values.
var entryRows = []string{
	// Every nullable column NULL.
	`(1, '0/0', 1, NULL, '1970-01-01 00:00:00+00', '1970-01-01 00:00:00+00', 's', 't', 'insert',
	  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'default', NULL, NULL)`,
	// Empty strings, empty arrays, empty JSON.
	`(2, 'FFFFFFFF/FFFFFFFF', 2147483647, 0, '2024-02-29 12:34:56.789012+05:30', '1969-12-31 23:59:59.999999+00', '', '', '',
	  '{}', '[]', '""', '{}', '', '', '0.0.0.0/0', '', '', '', '::/0', '', 'null', '', '{}', '')`,
	// Arrays with quotes, commas, braces, backslashes, NULL elements.
	`(3, '16/B374D848', -2147483648, 9223372036854775807, '1900-01-01 00:00:00.000001+00', '9999-12-31 23:59:59.999999+00',
	  'public', 'orders', 'update', '{"id": 1}', '{"a": 1.50}', '{"a": 1e2}',
	  ARRAY['a,b', '"q"', NULL, 'back\slash', '{x}', ' sp ', 'NULL', '', 'é'],
	  'u1', 'Zoë', '192.168.1.5/24', E'tab\there\r\nnewline', 'req-1', 'app', '10.0.0.1', 'psql', '{"k": [1, 2]}',
	  'légal', ARRAY[NULL, NULL]::text[], 'alice')`,
	// JSON with Unicode, escapes and numbers jsonb keeps as written.
	`(4, '1/0', 0, -1, '4713-11-24 00:00:00+00 BC', '2000-01-01 00:00:00.5+00', 'schéma', 'таблица 表', 'délete',
	  '{"é": "ü\u00e9😀", "esc": "a\"b\\c\n\t\u0001/", "n": [1.50, 1e2, -0, 0.0, -0.0, 1E-7, 12345678901234567890123.000]}',
	  '[null, true, false, "\ud83d\ude00", {"": ""}]', '"just a string"', ARRAY['x'],
	  '😀', '"', '::1', ' ', '', '', '2001:db8::1/64', '', '{"nested": {"deeper": {"deepest": [[], {}]}}}',
	  'default', ARRAY['flag', 'other flag'], '')`,
	// IPv4-mapped IPv6, host masks.
	`(5, '0/1', 3, 42, '2262-04-11 23:47:16.854775+00', '1677-09-21 00:12:43.145225+00', 's', 't', 'app.event',
	  '1.5', '-0', '1e2', NULL, NULL, NULL, '::ffff:1.2.3.4', NULL, NULL, NULL, '10.1.2.3/32', NULL, NULL, 'x', NULL, NULL)`,
}

// bigRows are rows built in SQL: a large nested object and texts longer
// than 64 KiB, whose length takes three bytes.
var bigRows = []string{
	`SELECT 6, '0/2', 1, 1, now(), now(), 's', 't', 'insert',
	  (SELECT jsonb_object_agg('k' || i, jsonb_build_object('i', i, 'f', i / 7.0, 's', repeat('é', i), 'a', jsonb_build_array(i, -i, NULL)))
	     FROM generate_series(1, 2000) i),
	  NULL, NULL, NULL, repeat('x', 70000), repeat('€', 30000), NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'default', NULL, NULL`,
}

// leafHashes selects RowSQL and LeafHashSQL of every row of entries,
// checks that Go and SQL agree, and returns the hashes by id.
func leafHashes(t *testing.T, conn *pgx.Conn) map[int64][]byte {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT e.id, `+LeafHashSQL("e")+`, `+RowSQL("e")+` FROM entries e ORDER BY e.id`)
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	defer rows.Close()
	got := make(map[int64][]byte)
	for rows.Next() {
		var id int64
		var sqlHash []byte
		var r string
		if err := rows.Scan(&id, &sqlHash, &r); err != nil {
			t.Fatalf("scan: %v", err)
		}
		if h := LeafHash(r); !bytes.Equal(h[:], sqlHash) {
			t.Errorf("entry %d: LeafHash %x, LeafHashSQL %x; row %.300q", id, h[:], sqlHash, r)
		}
		got[id] = sqlHash
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("select: %v", err)
	}
	return got
}

// TestLeafHashSQL: the server computes the same leaf hashes as Go, whatever
// the session's settings and the server encoding.
func TestLeafHashSQL(t *testing.T) {
	ctx := context.Background()
	load := func(t *testing.T, dsn string, rows []string) *pgx.Conn {
		t.Helper()
		// The texts reach Go in UTF-8 only when client_encoding says so.
		conn := pgtest.Connect(t, dsn+"&search_path=pg_catalog,pg_temp&client_encoding=UTF8")
		if _, err := conn.Exec(ctx, entriesDDL); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if _, err := conn.Exec(ctx, `INSERT INTO entries `+r); err != nil {
				t.Fatalf("insert %s: %v", r, err)
			}
		}
		return conn
	}
	var all []string
	for _, r := range entryRows {
		all = append(all, "VALUES "+r)
	}
	all = append(all, bigRows...)
	conn := load(t, srv.NewDB(t), all)
	want := leafHashes(t, conn)
	if len(want) != len(all) {
		t.Fatalf("%d rows hashed, want %d", len(want), len(all))
	}

	t.Run("settings", func(t *testing.T) {
		for _, set := range []string{
			`SET TimeZone = 'Asia/Kathmandu'`, `SET DateStyle = 'SQL, DMY'`, `SET IntervalStyle = 'sql_standard'`,
			`SET standard_conforming_strings = off`, `SET extra_float_digits = -15`, `SET bytea_output = 'escape'`,
			`SET lc_monetary = 'C'`,
		} {
			if _, err := conn.Exec(ctx, set); err != nil {
				t.Fatalf("%s: %v", set, err)
			}
		}
		for id, h := range leafHashes(t, conn) {
			if !bytes.Equal(h, want[id]) {
				t.Errorf("entry %d: %x with odd settings, %x without", id, h, want[id])
			}
		}
	})

	t.Run("LATIN1", func(t *testing.T) {
		// Rows 1, 2, 3 and 5 fit in LATIN1.
		name := fmt.Sprintf("integrity_latin1_%d", os.Getpid())
		pgtest.Exec(t, srv.DSN("postgres"), `CREATE DATABASE `+name+` ENCODING 'LATIN1' LOCALE 'C' TEMPLATE template0`)
		t.Cleanup(func() { srv.DropDB(name) })
		var rows []string
		for _, i := range []int{0, 1, 2, 4} {
			rows = append(rows, "VALUES "+entryRows[i])
		}
		for id, h := range leafHashes(t, load(t, srv.DSN(name), rows)) {
			if !bytes.Equal(h, want[id]) {
				t.Errorf("entry %d: %x in LATIN1, %x in UTF8", id, h, want[id])
			}
		}
	})
}

// TestColumns: Columns are the columns of entries, in table order, with
// Micros on the timestamptz ones.
func TestColumns(t *testing.T) {
	conn := pgtest.Connect(t, srv.DSN("postgres"))
	ctx := context.Background()
	if _, err := conn.Exec(ctx, entriesDDL); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT attname, atttypid::regtype::text FROM pg_attribute
		WHERE attrelid = 'pg_temp.entries'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
	if err != nil {
		t.Fatal(err)
	}
	var names, types []string
	for rows.Next() {
		var n, typ string
		if err := rows.Scan(&n, &typ); err != nil {
			t.Fatal(err)
		}
		names, types = append(names, n), append(types, typ)
	}
	if len(names) != len(Columns) {
		t.Fatalf("%d columns in entries, %d in Columns", len(names), len(Columns))
	}
	for i, c := range Columns {
		if c.Name != names[i] || c.Micros != (types[i] == "timestamp with time zone") {
			t.Errorf("column %d: %+v, entries has %s %s", i, c, names[i], types[i])
		}
	}
}

// TestMicros: the timestamptz projection is exact to the microsecond, far
// from 1970 on both sides.
func TestMicros(t *testing.T) {
	conn := pgtest.Connect(t, srv.DSN("postgres"))
	expr := Column{Name: "x", Micros: true}.SQL("v") + "::text"
	cases := []struct {
		literal string
		want    time.Time
	}{
		{"1970-01-01 00:00:00+00", time.Unix(0, 0)},
		{"1969-12-31 23:59:59.999999+00", time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{"2024-02-29 12:34:56.789012+05:30", time.Date(2024, 2, 29, 7, 4, 56, 789012000, time.UTC)},
		{"1900-01-01 00:00:00.000001+00", time.Date(1900, 1, 1, 0, 0, 0, 1000, time.UTC)},
		{"4713-11-24 00:00:00.000001+00 BC", time.Date(-4712, 11, 24, 0, 0, 0, 1000, time.UTC)},
		{"9999-12-31 23:59:59.999999+00", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{"200000-06-30 12:00:00.000007+00", time.Date(200000, 6, 30, 12, 0, 0, 7000, time.UTC)},
	}
	for _, c := range cases {
		var got string
		q := `SELECT ` + expr + ` FROM (SELECT $1::timestamptz AS x) v`
		if err := conn.QueryRow(context.Background(), q, c.literal).Scan(&got); err != nil {
			t.Errorf("%s: %v", c.literal, err)
			continue
		}
		if want := fmt.Sprint(c.want.UnixMicro()); got != want {
			t.Errorf("%s: %s µs, want %s", c.literal, got, want)
		}
	}
	// Past 294247 the microseconds leave bigint, and infinity has none: the
	// projection still gives a text (an entry altered to hold one is
	// reported, not a failed query).
	for literal, want := range map[string]string{"294276-12-31 23:59:59.999999+00": "9224318016000000000", "infinity": "Infinity", "-infinity": "-Infinity"} {
		var got string
		q := `SELECT ` + expr + ` FROM (SELECT $1::timestamptz AS x) v`
		if err := conn.QueryRow(context.Background(), q, literal).Scan(&got); err != nil || got != want {
			t.Errorf("%s: %s, %v; want %s", literal, got, err, want)
		}
	}
}

// TestEncodeLeaf pins the version 1 encoding, and what the row's text form
// tells apart: NULL from the empty string, a comma inside a value from one
// between values, whatever the settings.
func TestEncodeLeaf(t *testing.T) {
	if got := string(EncodeLeaf(`(1,"")`)); got != "walscribe leaf v1\n(1,\"\")" {
		t.Fatalf("EncodeLeaf: %q", got)
	}
	conn := pgtest.Connect(t, srv.DSN("postgres"))
	texts := map[string]string{}
	for _, v := range []string{`ROW(NULL::text, 'x')`, `ROW(''::text, 'x')`, `ROW('a,b'::text, 'c')`, `ROW('a'::text, 'b,c')`,
		`ROW('"'::text, '\')`, `ROW(' '::text, NULL)`, `ROW('('::text, ')')`} {
		var text string
		if err := conn.QueryRow(context.Background(), `SELECT `+v+`::text`).Scan(&text); err != nil {
			t.Fatal(err)
		}
		if other, ok := texts[text]; ok {
			t.Errorf("%s and %s have the same text %q", v, other, text)
		}
		texts[text] = v
	}
}
