package catalog

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/decoder"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/internal/rendertest"
)

// typesSQL creates the non-built-in types the resolver must handle.
var typesSQL = []string{
	`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy "quoted"', 'with,comma', 'NULL', 'ü👍')`,
	`CREATE DOMAIN posint AS int CHECK (VALUE > 0)`,
	`CREATE DOMAIN amount AS numeric(30,10)`,
	`CREATE DOMAIN doc AS jsonb`,
	`CREATE DOMAIN at_time AS timestamptz`,
	`CREATE DOMAIN small_posint AS posint CHECK (VALUE < 100)`,
	`CREATE DOMAIN doc2 AS doc`,
	`CREATE DOMAIN int_list AS int[]`,
	`CREATE DOMAIN mood_d AS mood`,
	`CREATE TYPE pair AS (a int, b text)`,
	`CREATE TYPE floatrange AS RANGE (subtype = float8)`,
	`CREATE EXTENSION citext`,
	`CREATE SCHEMA "Other Schema"`,
	`CREATE TYPE "Other Schema"."Colour" AS ENUM ('red', 'green')`,
}

// shape is the expected rendering of a type: its Kind, and its element's
// for arrays.
type shape struct {
	kind decoder.Kind
	elem *shape
}

func checkShape(t *testing.T, got *decoder.Type, want shape) {
	t.Helper()
	if got == nil {
		t.Fatalf("ResolveType returned a nil Type")
	}
	if got.Kind != want.kind {
		t.Fatalf("Kind = %d, want %d", got.Kind, want.kind)
	}
	if want.elem == nil {
		return
	}
	if got.Delim != ',' {
		t.Errorf("array delimiter = %q, want ','", got.Delim)
	}
	checkShape(t, got.Elem, *want.elem)
}

func TestResolveType(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, typesSQL...)
	conn := rendertest.Connect(t, dsn)
	ctx := context.Background()
	c := New(dsn)
	t.Cleanup(func() { c.Close(ctx) })

	str, num, jsb := shape{kind: decoder.KindString}, shape{kind: decoder.KindNumber}, shape{kind: decoder.KindJSONB}
	tstz := shape{kind: decoder.KindTimestampTZ}
	arr := func(e shape) shape { return shape{kind: decoder.KindArray, elem: &e} }
	cases := []struct {
		name string
		expr string
		want shape
	}{
		{"enum", `'happy "quoted"'::mood`, str},
		{"enum unicode", `'ü👍'::mood`, str},
		{"enum in quoted schema", `'green'::"Other Schema"."Colour"`, str},
		{"domain over int", `42::posint`, num},
		{"domain over numeric", `'12345678901234567890.0123456789'::amount`, num},
		{"domain over jsonb", `'{"n": 9007199254740993, "a": [1, "x"]}'::doc`, jsb},
		{"domain over timestamptz", `'2024-01-02 03:04:05.25+05:30'::at_time`, tstz},
		{"domain over timestamptz infinity", `'-infinity'::at_time`, tstz},
		{"domain over domain over int", `7::small_posint`, num},
		{"domain over domain over jsonb", `'[{"x": null}]'::doc2`, jsb},
		{"domain over enum", `'ok'::mood_d`, str},
		{"domain over int[]", `'{1,NULL,3}'::int_list`, arr(num)},
		{"enum[]", `ARRAY['sad', 'happy "quoted"', 'with,comma', 'NULL', NULL]::mood[]`, arr(str)},
		{"enum[] 2-D", `'{{sad,ok},{ok,sad}}'::mood[]`, arr(str)},
		{"domain over int[] as array", `ARRAY[1, 2]::posint[]`, arr(num)},
		{"domain over domain[]", `ARRAY[1, 99]::small_posint[]`, arr(num)},
		{"domain over jsonb[]", `ARRAY['{"a": "b,c"}', '9007199254740993']::doc[]`, arr(jsb)},
		{"domain over timestamptz[]", `ARRAY['2024-01-02 03:04:05+02', 'infinity']::at_time[]`, arr(tstz)},
		{"domain over numeric[] bounds", `'[3:4]={1.50,NaN}'::amount[]`, arr(num)},
		{"extension type", `'MiXeD "Case"'::citext`, str},
		{"extension type[]", `ARRAY['a,b', NULL]::citext[]`, arr(str)},
		{"range of float8", `'[1.5,2.5)'::floatrange`, str},
		{"range of float8 array", `ARRAY['[1.5,2.5)'::floatrange, 'empty']`, arr(str)},
		{"multirange of float8", `'{[1,2), [3,4)}'::floatmultirange`, str},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := rendertest.Render(ctx, conn, tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			typ, err := c.ResolveType(ctx, r.OID)
			if err != nil {
				t.Fatalf("ResolveType(%d): %v", r.OID, err)
			}
			checkShape(t, typ, tc.want)
			again, err := c.ResolveType(ctx, r.OID)
			if err != nil || again != typ {
				t.Fatalf("second ResolveType(%d) = %p, %v; want the cached %p", r.OID, again, err, typ)
			}
			requireRendersLikeServer(t, conn, typ, r)
		})
	}

	// A composite renders as the string of its text: to_jsonb makes an
	// object of it, which the decoder does not attempt.
	t.Run("composite falls back to string", func(t *testing.T) {
		var (
			oid        uint32
			text, want string
		)
		err := conn.QueryRow(ctx, `SELECT pg_typeof(v)::oid, v::text, to_jsonb(v::text)::text
			FROM (SELECT ROW(1, 'a "b", c')::pair AS v) s`).Scan(&oid, &text, &want)
		if err != nil {
			t.Fatal(err)
		}
		typ, err := c.ResolveType(ctx, oid)
		if err != nil {
			t.Fatalf("ResolveType(%d): %v", oid, err)
		}
		checkShape(t, typ, str)
		requireRendersLikeServer(t, conn, typ, rendertest.Rendering{OID: oid, Text: []byte(text), ToJSONB: []byte(want)})
	})

	t.Run("built-in types need no query", func(t *testing.T) {
		want, _ := decoder.BuiltinType(3802)
		got, err := c.ResolveType(ctx, 3802)
		if err != nil || got != want {
			t.Fatalf("ResolveType(jsonb) = %p, %v; want the built-in %p", got, err, want)
		}
	})

	t.Run("a type the catalog no longer has is nil, not an error", func(t *testing.T) {
		typ, err := c.ResolveType(ctx, 4294967000)
		if err != nil || typ != nil {
			t.Fatalf("ResolveType(unknown) = %+v, %v; want nil, nil (the decoder renders it as text)", typ, err)
		}
	})

	t.Run("a failed lookup is an error, not a guess", func(t *testing.T) {
		bad := New("postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
		defer bad.Close(ctx)
		if typ, err := bad.ResolveType(ctx, 4294967000); err == nil {
			t.Fatalf("ResolveType on an unreachable server = %+v, nil; want an error", typ)
		}
		if keys, err := bad.PrimaryKey(ctx, 1259); err == nil {
			t.Fatalf("PrimaryKey on an unreachable server = %v, nil; want an error", keys)
		}
	})
}

func TestPrimaryKey(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn,
		`CREATE TABLE single (id bigint PRIMARY KEY, note text)`,
		`CREATE TABLE composite (a int, b text, c int, d date, PRIMARY KEY (c, a))`,
		`CREATE TABLE no_key (a int, b text UNIQUE)`,
		`CREATE TABLE dropped (gone int, x int, y int, PRIMARY KEY (y, x))`,
		`ALTER TABLE dropped DROP COLUMN gone`,
		`CREATE TABLE renamed (k1 int, k2 int, PRIMARY KEY (k2, k1))`,
		`ALTER TABLE renamed RENAME COLUMN k2 TO "Key Two"`,
		`CREATE TABLE parted (region text, id int, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`,
		`CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu')`,
		`CREATE SCHEMA other`,
		`CREATE TABLE other.single (id bigint, code text, PRIMARY KEY (code))`,
	)
	ctx := context.Background()
	conn := pgtest.Connect(t, dsn)
	c := New(dsn)
	t.Cleanup(func() { c.Close(ctx) })
	cases := []struct {
		table string
		want  []string
	}{
		{"single", []string{"id"}},
		{"composite", []string{"c", "a"}},
		{"no_key", nil},
		{"dropped", []string{"y", "x"}},
		{"renamed", []string{"Key Two", "k1"}},
		{"parted", []string{"id", "region"}},
		{"parted_eu", []string{"id", "region"}},
		{"other.single", []string{"code"}},
	}
	for _, tc := range cases {
		t.Run(tc.table, func(t *testing.T) {
			var oid uint32
			if err := conn.QueryRow(ctx, `SELECT $1::regclass::oid`, tc.table).Scan(&oid); err != nil {
				t.Fatal(err)
			}
			got, err := c.PrimaryKey(ctx, oid)
			if err != nil {
				t.Fatalf("PrimaryKey(%s): %v", tc.table, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("PrimaryKey(%s) = %q, want %q", tc.table, got, tc.want)
			}
		})
	}
}

// TestCatalogReconnects checks that a lost catalog connection costs no
// answer: the call that finds it broken reconnects.
func TestCatalogReconnects(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, typesSQL...)
	pgtest.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY)`)
	ctx := context.Background()
	admin := pgtest.Connect(t, dsn)
	var tableOID, enumOID uint32
	if err := admin.QueryRow(ctx, `SELECT 't'::regclass::oid, 'mood'::regtype::oid`).Scan(&tableOID, &enumOID); err != nil {
		t.Fatal(err)
	}
	c := New(dsn + "&application_name=catalog_reconnect_test")
	t.Cleanup(func() { c.Close(ctx) })
	if _, err := c.PrimaryKey(ctx, tableOID); err != nil {
		t.Fatalf("PrimaryKey: %v", err)
	}
	var killed int
	err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'catalog_reconnect_test'`).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminate the catalog's backend: killed %d, %v", killed, err)
	}
	// The call that finds the connection broken reconnects and answers.
	if _, err := c.ResolveType(ctx, enumOID); err != nil {
		t.Fatalf("ResolveType after the connection was lost: %v", err)
	}
	keys, err := c.PrimaryKey(ctx, tableOID)
	if err != nil || !slices.Equal(keys, []string{"id"}) {
		t.Fatalf("PrimaryKey after reconnecting = %q, %v; want [id]", keys, err)
	}
}

// requireRendersLikeServer renders r's text with typ and requires valid JSON
// equal to r.ToJSONB as jsonb, and byte-identical once the server has
// normalised both.
func requireRendersLikeServer(t *testing.T, conn *pgx.Conn, typ *decoder.Type, r rendertest.Rendering) {
	t.Helper()
	got := decoder.AppendValue(nil, typ, r.Text)
	if !json.Valid(got) {
		t.Fatalf("AppendValue(%q) = %s: not valid JSON", r.Text, got)
	}
	rendertest.RequireSameJSONB(t, conn, got, r.ToJSONB)
}
