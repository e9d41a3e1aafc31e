package decoder

import (
	"context"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/rendertest"
)

// valueCase is one SQL expression whose value AppendValue must render as the
// server's to_jsonb does. Expected results come from the server at test time.
type valueCase struct {
	name string
	expr string // a typed SQL expression
}

// valueCases lists the built-in types and the values that break naive
// conversions. FuzzAppendValue seeds its corpus from them too.
var valueCases = []valueCase{
	// Integers.
	{"int2", `32767::int2`},
	{"int2 min", `(-32768)::int2`},
	{"int4 min", `(-2147483648)::int4`},
	{"int8 2^53+1", `9007199254740993::int8`},
	{"int8 max", `9223372036854775807::int8`},
	{"int8 min", `(-9223372036854775808)::int8`},
	{"int8 zero", `0::int8`},

	// numeric.
	{"numeric big", `'123456789012345678901234567890.123456789012345678901234567890'::numeric`},
	{"numeric trailing zeros", `'1.2300'::numeric`},
	{"numeric negative small", `'-0.000000000000000000000000001'::numeric`},
	{"numeric zero scale", `'0.000'::numeric`},
	{"numeric typmod", `12.5::numeric(10,4)`},
	{"numeric NaN", `'NaN'::numeric`},
	{"numeric Infinity", `'Infinity'::numeric`},
	{"numeric -Infinity", `'-Infinity'::numeric`},
	{"numeric 1e30", `1e30::numeric`},

	// Floats.
	{"float8 0.1", `0.1::float8`},
	{"float8 NaN", `'NaN'::float8`},
	{"float8 Infinity", `'Infinity'::float8`},
	{"float8 -Infinity", `'-Infinity'::float8`},
	{"float8 denormal", `1e-310::float8`},
	{"float8 -0", `'-0'::float8`},
	{"float8 big", `1.7976931348623157e308::float8`},
	{"float8 exponent", `1.5e-7::float8`},
	{"float8 pi", `pi()`},
	{"float4 0.1", `0.1::float4`},
	{"float4 NaN", `'NaN'::float4`},
	{"float4 Infinity", `'Infinity'::float4`},
	{"float4 -Infinity", `'-Infinity'::float4`},
	{"float4 -0", `'-0'::float4`},
	{"float4 big", `3.4e38::float4`},
	{"float4 tiny", `1e-45::float4`},

	// bool.
	{"bool true", `true`},
	{"bool false", `false`},

	// Text.
	{"text plain", `'hello'::text`},
	{"text empty", `''::text`},
	{"text unicode", `'grüße, 日本語, Ω'::text`},
	{"text quotes", `'say "hi" and ''bye'''::text`},
	{"text backslash", `E'a\\b\\\\c'::text`},
	{"text newline tab", `E'line1\nline2\tcol\r\n'::text`},
	{"text control", `E'\x01\x02\x07\x08\x0b\x0c\x1b\x1f\x7f'::text`},
	{"text emoji", `'👍🏽 🇩🇪 👨‍👩‍👧'::text`},
	{"text U+2028", `E'\u2028\u2029'::text`},
	{"text html", `'<script>&amp;</script>'::text`},
	{"text looks like json", `'{"a":1}'::text`},
	{"text NULL word", `'NULL'::text`},
	{"varchar", `'abc "x"'::varchar(20)`},
	{"bpchar padded", `'ab'::char(5)`},
	{"char", `'x'::"char"`},
	{"name", `'pg_class'::name`},

	// Binary, identifiers, network, money, bits, geometry.
	{"bytea", `'\xdeadbeef00'::bytea`},
	{"bytea empty", `''::bytea`},
	{"uuid", `'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid`},
	{"inet v4", `'192.168.100.128/25'::inet`},
	{"inet v6", `'2001:db8::1'::inet`},
	{"cidr", `'10.1.0.0/16'::cidr`},
	{"macaddr", `'08:00:2b:01:02:03'::macaddr`},
	{"macaddr8", `'08:00:2b:01:02:03:04:05'::macaddr8`},
	{"money", `1234.56::money`},
	{"money negative", `(-0.5)::money`},
	{"bit", `B'10101'::bit(5)`},
	{"varbit", `B'1101'::varbit`},
	{"varbit empty", `B''::varbit`},
	{"point", `'(1.5,-2)'::point`},
	{"lseg", `'[(0,0),(1,1)]'::lseg`},
	{"box", `'((0,0),(1,1))'::box`},
	{"path", `'[(0,0),(1,1),(2,0)]'::path`},
	{"polygon", `'((0,0),(1,1),(1,0))'::polygon`},
	{"line", `'{1,-1,0}'::line`},
	{"circle", `'<(0,0),2>'::circle`},
	{"oid", `1259::oid`},
	{"xid", `'42'::xid`},
	{"pg_lsn", `'16/B374D848'::pg_lsn`},
	{"regclass", `'pg_class'::regclass`},
	{"tid", `'(0,1)'::tid`},

	// Date and time.
	{"timestamp", `'2024-01-02 03:04:05'::timestamp`},
	{"timestamp fraction", `'2024-01-02 03:04:05.123456'::timestamp`},
	{"timestamp BC", `'0044-03-15 12:00:00 BC'::timestamp`},
	{"timestamp infinity", `'infinity'::timestamp`},
	{"timestamp -infinity", `'-infinity'::timestamp`},
	{"timestamp year 10000", `'10000-01-01 00:00:00'::timestamp`},
	{"timestamptz", `'2024-01-02 03:04:05+00'::timestamptz`},
	{"timestamptz offset input", `'2024-06-30 23:59:59.5+05:30'::timestamptz`},
	{"timestamptz negative offset input", `'2024-01-01 00:00:00-08'::timestamptz`},
	{"timestamptz fraction", `'2000-02-29 12:00:00.000001+00'::timestamptz`},
	{"timestamptz BC", `'0100-02-03 04:05:06+00 BC'::timestamptz`},
	{"timestamptz infinity", `'infinity'::timestamptz`},
	{"timestamptz -infinity", `'-infinity'::timestamptz`},
	{"date", `'2024-02-29'::date`},
	{"date BC", `'0044-03-15 BC'::date`},
	{"date infinity", `'infinity'::date`},
	{"date -infinity", `'-infinity'::date`},
	{"time", `'23:59:59.999999'::time`},
	{"time 24", `'24:00:00'::time`},
	{"timetz", `'12:34:56+05:30'::timetz`},
	{"timetz negative", `'01:02:03.5-08'::timetz`},
	{"interval", `'1 year 2 mons 3 days 04:05:06.789'::interval`},
	{"interval negative", `'-1 day -00:00:01'::interval`},
	{"interval zero", `'0'::interval`},

	// JSON.
	{"json nested", `'{"b": [1, 2, {"c": null}], "a": {"x": true}}'::json`},
	{"json duplicate keys", `'{"a": 1, "a": 2}'::json`},
	{"json big number", `'{"n": 9007199254740993, "f": 1.000000000000000000001}'::json`},
	{"json unicode escapes", `'{"s": "\u00e9\ud83d\ude00 \"q\" \\ \n"}'::json`},
	{"json escaped backslash before u0000", `'{"a": "x\\u0000y"}'::json`},
	{"json scalar string", `'"just a string"'::json`},
	{"json whitespace", `E'  [ 1 ,\n 2 ]  '::json`},
	{"jsonb nested", `'{"b": [1, 2, {"c": null}], "a": {"x": true}}'::jsonb`},
	{"jsonb big number", `'{"n": 9007199254740993, "m": 123456789012345678901234567890, "e": 1e400}'::jsonb`},
	{"jsonb unicode escapes", `'{"s": "\u00e9\ud83d\ude00 \u0001"}'::jsonb`},
	{"jsonb empty object", `'{}'::jsonb`},
	{"jsonb empty array", `'[]'::jsonb`},
	{"jsonb null", `'null'::jsonb`},
	{"jsonb number", `'-1.50'::jsonb`},

	// Arrays.
	{"int4[]", `'{1,2,3}'::int4[]`},
	{"int8[] big", `'{9007199254740993,-9223372036854775808}'::int8[]`},
	{"int2[] NULL", `'{1,NULL,3}'::int2[]`},
	{"text[] tricky", `ARRAY['a', NULL, 'with "quotes"', 'with,comma', '{braces}', E'back\\slash', '', 'NULL', 'null', ' spaced ', E'tab\there', 'ü👍']::text[]`},
	{"text[] only NULL", `ARRAY[NULL]::text[]`},
	{"text[] 2-D", `'{{a,b},{c,"d e"}}'::text[]`},
	{"int4[] 2-D", `'{{1,2},{3,4},{5,6}}'::int4[]`},
	{"int4[] 3-D", `'{{{1},{2}},{{3},{4}}}'::int4[]`},
	{"int4[] bounds", `'[2:3]={1,2}'::int4[]`},
	{"int4[] 2-D bounds", `'[0:1][-1:0]={{1,2},{3,4}}'::int4[]`},
	{"int4[] empty", `'{}'::int4[]`},
	{"text[] empty", `'{}'::text[]`},
	{"varchar[]", `ARRAY['x', 'y,z']::varchar[]`},
	{"bpchar[]", `ARRAY['a', 'bb']::char(3)[]`},
	{"jsonb[]", `ARRAY['{"a": [1, {"b": "c,d"}]}', '"s"', '9007199254740993', 'null', NULL]::jsonb[]`},
	{"json[]", `ARRAY['{"a": 1}', '[1, "}"]']::json[]`},
	{"timestamptz[]", `ARRAY['2024-01-02 03:04:05+02', 'infinity', '-infinity', '0044-03-15 00:00:00+00 BC', NULL]::timestamptz[]`},
	{"timestamp[]", `ARRAY['2024-01-02 03:04:05.5', '-infinity']::timestamp[]`},
	{"date[]", `ARRAY['2024-01-02', '0044-03-15 BC', 'infinity']::date[]`},
	{"time[]", `ARRAY['01:02:03']::time[]`},
	{"interval[]", `ARRAY['1 day', '-00:00:01']::interval[]`},
	{"bool[]", `ARRAY[true, false, NULL]::bool[]`},
	{"numeric[] NaN", `ARRAY[1.50, 'NaN', 'Infinity', '-Infinity', NULL, 123456789012345678901234567890.5]::numeric[]`},
	{"float8[]", `ARRAY[0.1, 'NaN', '-Infinity', '-0', 1e-310]::float8[]`},
	{"float4[]", `ARRAY[0.1, 'Infinity']::float4[]`},
	{"box[]", `ARRAY['((0,0),(1,1))'::box, '((2,2),(-1,-1))'::box]`},
	{"point[]", `ARRAY['(1,2)'::point, '(3,4)'::point]`},
	{"uuid[]", `ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[]`},
	{"bytea[]", `ARRAY['\x00ff'::bytea, ''::bytea]`},
	{"inet[]", `ARRAY['10.0.0.1'::inet, '::1'::inet]`},
	{"int4range[]", `ARRAY['[1,5)'::int4range, 'empty'::int4range]`},
	{"oid[]", `ARRAY[1, 2]::oid[]`},
	{"money[]", `ARRAY[1.5::money]`},

	// Ranges, multiranges, text search, vectors, xml.
	{"int4range", `int4range(1, 10)`},
	{"int8range unbounded", `'[5,)'::int8range`},
	{"numrange", `numrange(1.5, 2.5, '[]')`},
	{"daterange", `daterange('2024-01-01', '2024-02-01')`},
	{"tstzrange", `tstzrange('2024-01-01 00:00+02', 'infinity')`},
	{"tsrange empty", `'empty'::tsrange`},
	{"int4multirange", `'{[1,3), [5,7)}'::int4multirange`},
	{"tsvector", `to_tsvector('simple', 'The quick brown fox''s "jump"')`},
	{"tsvector literal", `$$'a':1A 'b\\c':2 'it''s'$$::tsvector`},
	{"tsquery", `'fat & (rat | cat)'::tsquery`},
	{"int2vector", `'1 2 3'::int2vector`},
	{"int2vector one", `'7'::int2vector`},
	{"int2vector empty", `''::int2vector`},
	{"oidvector", `'23 25'::oidvector`},
	{"int2vector[]", `ARRAY['1 2'::int2vector, '3'::int2vector]`},
	{"xml", `'<a href="x">b &amp; c</a>'::xml`},
	{"xml document", `XMLPARSE(DOCUMENT '<?xml version="1.0"?><r><c>1</c></r>')`},
	{"jsonpath", `'$.a[*] ? (@ > 1)'::jsonpath`},
	{"txid_snapshot", `'10:20:10,14,15'::txid_snapshot`},
}

// requireRendersLikeServer renders the server's text with typ and requires
// valid JSON equal to the server's to_jsonb.
func requireRendersLikeServer(t *testing.T, conn *pgx.Conn, typ *Type, r rendertest.Rendering) {
	t.Helper()
	prefix := []byte(`{"k":`)
	got := AppendValue(append([]byte(nil), prefix...), typ, r.Text)
	if string(got[:len(prefix)]) != string(prefix) {
		t.Fatalf("AppendValue changed dst's existing bytes: %q", got)
	}
	got = got[len(prefix):]
	if !json.Valid(got) || !utf8.Valid(got) {
		t.Fatalf("AppendValue(%q) = %s: not valid JSON", r.Text, got)
	}
	rendertest.RequireSameJSONB(t, conn, got, r.ToJSONB)
}

func TestAppendValueMatchesToJSONB(t *testing.T) {
	conn := rendertest.Connect(t, srv.NewDB(t))
	ctx := context.Background()
	for _, tc := range valueCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := rendertest.Render(ctx, conn, tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			typ, ok := BuiltinType(r.OID)
			if !ok {
				t.Fatalf("BuiltinType(%d) unknown for %s", r.OID, tc.expr)
			}
			requireRendersLikeServer(t, conn, typ, r)
		})
	}
}

// TestBuiltinTypesCoverCatalog checks the built-in table against pg_type:
// every built-in base, range and multirange type and its array is known, an
// array renders as an array of its element with the catalog's delimiter, and
// nothing that is not a built-in type is listed.
func TestBuiltinTypesCoverCatalog(t *testing.T) {
	conn := rendertest.Connect(t, srv.NewDB(t))
	ctx := context.Background()
	rows, err := conn.Query(ctx, `
		SELECT t.oid::int8, t.typname::text, t.typtype::text, t.typelem::int8, t.typdelim::text, coalesce(e.typtype::text, ''),
		       t.typelem <> 0 AND t.typsubscript = 'array_subscript_handler'::regproc AND t.typlen = -1 AS is_array
		FROM pg_type t
		LEFT JOIN pg_type e ON e.oid = t.typelem
		WHERE t.oid < 10000
		  AND t.typnamespace = 'pg_catalog'::regnamespace
		  AND t.typtype IN ('b', 'r', 'm')
		  AND (e.oid IS NULL OR e.typtype IN ('b', 'r', 'm', 'p'))`)
	if err != nil {
		t.Fatal(err)
	}
	type pgType struct {
		oid, elem       int64
		name, typtype   string
		delim, elemType string
		isArray         bool
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgType, error) {
		var p pgType
		err := r.Scan(&p.oid, &p.name, &p.typtype, &p.elem, &p.delim, &p.elemType, &p.isArray)
		return p, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 100 {
		t.Fatalf("only %d built-in types found: the query is wrong", len(all))
	}
	// Element types that are arrays of a fixed-length base type, or that
	// the server reads only internally, are not column types.
	seen := map[uint32]bool{}
	for _, p := range all {
		seen[uint32(p.oid)] = true
		typ, ok := BuiltinType(uint32(p.oid))
		if !ok {
			// Fixed-length "arrays" such as point's float8 pairs are not
			// rendered as arrays and need no entry of their own.
			if p.elem != 0 && !p.isArray {
				continue
			}
			t.Errorf("pg_type %s (%d) missing from the built-in types", p.name, p.oid)
			continue
		}
		if !p.isArray {
			continue
		}
		if p.elemType == "p" {
			// cstring[]: no column holds its pseudo-type element.
			if typ.Kind != KindArray {
				t.Errorf("%s (%d): Kind %d, want an array", p.name, p.oid, typ.Kind)
			}
			continue
		}
		elem, ok := BuiltinType(uint32(p.elem))
		if !ok {
			t.Errorf("%s (%d): element %d unknown", p.name, p.oid, p.elem)
			continue
		}
		switch {
		case p.name == "int2vector" || p.name == "oidvector":
			if typ.Kind != KindVector || typ.Elem == nil || typ.Elem.Kind != elem.Kind {
				t.Errorf("%s: Kind %d, want a vector of Kind %d", p.name, typ.Kind, elem.Kind)
			}
		case typ.Kind != KindArray || typ.Elem != elem:
			t.Errorf("%s (%d): not an array of its element %d", p.name, p.oid, p.elem)
		case string(typ.Delim) != p.delim:
			t.Errorf("%s (%d): delimiter %q, the catalog says %q", p.name, p.oid, typ.Delim, p.delim)
		}
	}
	for oid := range builtins {
		if !seen[oid] {
			t.Errorf("built-in type %d is not a base, range or multirange type (or its array) in pg_type", oid)
		}
	}
}

// TestAppendValueJSONWithNULEscape covers json values holding "\u0000": json
// stores them, but jsonb (and so to_jsonb and the audit columns) rejects
// them. Such a value is kept as a JSON string of its text, so the entry can
// still be stored.
func TestAppendValueJSONWithNULEscape(t *testing.T) {
	conn := rendertest.Connect(t, srv.NewDB(t))
	ctx := context.Background()
	cases := []struct {
		name string
		expr string // a json or json[] value
		want string // SQL for the expected jsonb, in terms of v
	}{
		{"json", `'{"a": "x\u0000y"}'::json`, `to_jsonb(v::text)`},
		{"json[]", `ARRAY['"\u0000"', '{"b": 1}']::json[]`, `jsonb_build_array(to_jsonb(v[1]::text), to_jsonb(v[2]))`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := rendertest.Render(ctx, conn, tc.expr)
			if err == nil {
				t.Fatalf("to_jsonb(%s) succeeded: the case no longer needs special handling", tc.expr)
			}
			var (
				oid  uint32
				text string
				want string
			)
			q := `SELECT pg_typeof(v)::oid, v::text, (` + tc.want + `)::text FROM (SELECT ` + tc.expr + ` AS v) s`
			if err := conn.QueryRow(ctx, q).Scan(&oid, &text, &want); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			typ, ok := BuiltinType(oid)
			if !ok {
				t.Fatalf("BuiltinType(%d) unknown", oid)
			}
			r = rendertest.Rendering{OID: oid, Text: []byte(text), ToJSONB: []byte(want)}
			requireRendersLikeServer(t, conn, typ, r)
		})
	}
}
