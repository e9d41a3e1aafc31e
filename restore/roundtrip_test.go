package restore

import (
	"context"
	"strings"
	"testing"

	"github.com/walscribe/walscribe/audit"
)

// typesDDL is a table with a column of every kind of type the decoder
// renders differently, and a name that needs quoting.
const typesDDL = `
CREATE TYPE mood AS ENUM ('happy', 'sad', 'it''s "odd"');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN nnint AS int NOT NULL;
CREATE TYPE pair AS (a int, b text);
CREATE TABLE types (
	id int PRIMARY KEY,
	"Weird ""col""; --" text,
	t text, n numeric, i2 int2, i8 int8, f4 float4, f8 float8, b bool,
	ts timestamptz, tsl timestamp, d date, tm time, tmz timetz, iv interval,
	by bytea, j json, jb jsonb, jbnn jsonb NOT NULL, ja int[], ta text[], tsa timestamptz[], jba jsonb[],
	u uuid, ip inet, cid cidr, mac macaddr, m mood, ma mood[], pd posint, nn nnint,
	pr pair, prs pair[], r int4range, mr int4multirange, bits varbit, ch char(5), vc varchar(10),
	x xml, tsv tsvector, pt point, mo money,
	gen text GENERATED ALWAYS AS (upper(t)) STORED
)`

// typesCols are the columns of types one may write.
const typesCols = `id, "Weird ""col""; --", t, n, i2, i8, f4, f8, b, ts, tsl, d, tm, tmz, iv, by, j, jb, jbnn, ja, ta, tsa, jba,
	u, ip, cid, mac, m, ma, pd, nn, pr, prs, r, mr, bits, ch, vc, x, tsv, pt, mo`

// typesRows hold json documents as jsonb prints them (see Plan.Notes).
var typesRows = []string{
	// Everyday values.
	`(1, 'plain', 'hello', 12.50, 7, 42, 1.5, 0.1, true,
	  '2024-02-29 23:59:59.999999+05:30', '2024-01-02 03:04:05.123456', '2024-01-02', '13:14:15.5', '13:14:15+02', '1 day 02:03:04.5',
	  '\x00ff27225c', '{"a": [1, 2, {"c": null}], "b": 1, "s": "</script>"}', '{"nested": {"deep": [true, false, null]}, "num": 1.50}',
	  '{"k": "v"}', '{{1,2},{3,NULL}}', '{"a,b","NULL",NULL,"quote\"d","back\\slash",""}', '{"2024-01-01 00:00:00+00",NULL}',
	  ARRAY['{"a": 1}'::jsonb, NULL],
	  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 'happy', '{happy,"it''s \"odd\""}', 5, 3,
	  ROW(1, 'x, "y"'), ARRAY[ROW(1, 'a')::pair, NULL, ROW(NULL, NULL)::pair], '[1,10)', '{[1,3),[5,7)}', B'10101', 'ab', 'hello',
	  '<a href="x">&amp;</a>', 'a:1 b:2', '(1.5,-2)', '12.34')`,
	// NULL wherever allowed; a JSON null in the NOT NULL jsonb column.
	`(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'null', NULL, NULL, NULL, NULL,
	  NULL, NULL, NULL, NULL, NULL, NULL, NULL, 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
	// Hostile and extreme values.
	`(3, '''); DROP TABLE types; --', E'back\\slash ''quote'' "dq" \n newline\r\t </script><script>alert(1)</script> \\u0000 ünï 🚀 \u2028',
	  123456789012345678901234567890.123456789012345678901234567890, -32768, 9007199254740993, 3.4028235e38, 1e-300, false,
	  'infinity', '0044-03-15 12:00:00 BC', '4713-01-01 BC', '24:00:00', '00:00:00-15:59', '-178000000 years -1 mon +1 day -00:00:00.000001',
	  '\x', '"just a string"', '"</script>\u2028 \\ \""', '[1, "two", {"3": [4]}]', '{}', '{"{}","\\\\",",\"}"}', '{infinity,-infinity}', '{}',
	  '00000000-0000-0000-0000-000000000000', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', 'it''s "odd"', '{}', 2147483647, -1,
	  ROW(NULL, ''), '{}', 'empty', '{}', B'', '     ', '', '<!-- -->', '', '(0,0)', '-92233720368547758.08')`,
	// Special numbers, the far past and future.
	`(4, '', '', 'NaN', 0, -9223372036854775808, 'NaN', '-Infinity', NULL,
	  '-infinity', 'infinity', 'infinity', '00:00', '23:59:59.999999+15:59', '0',
	  NULL, '{"z": [null]}', '0', '[]', '{{{1}}}', '{""}', '{"1999-12-31 23:59:59.5-08"}', ARRAY['"s"'::jsonb],
	  NULL, '0.0.0.0', '0.0.0.0/32', '00:00:00:00:00:00', 'sad', '{sad,sad}', 1, 0,
	  ROW(-1, E'multi\nline'), ARRAY[ROW(2, '(,)')::pair], '(,)', '{(,)}', B'1', 'abcde', 'x',
	  'text', '''quoted'':1', '(-1e-300,1e300)', '0')`,
}

// TestRoundTrip deletes, updates and inserts rows of every type, then
// undoes each entry walscribe wrote, and finds the table as it was. The
// trail is another database than the source.
func TestRoundTrip(t *testing.T) {
	c := newCapture(t, typesDDL, options{separateTrail: true})
	ctx := context.Background()
	c.exec(`INSERT INTO types (` + typesCols + `) VALUES ` + strings.Join(typesRows, ",\n"))
	original := c.snapshot("public.types")
	if !strings.Contains(original, "DROP TABLE types") {
		t.Fatalf("snapshot %s", original)
	}

	t.Run("restore deletes", func(t *testing.T) {
		c.exec(`DELETE FROM types`)
		c.sync()
		ids := c.ids("public", "types", audit.Delete)
		if len(ids) != len(typesRows) {
			t.Fatalf("%d delete entries, want %d", len(ids), len(typesRows))
		}
		for _, id := range ids {
			p := c.plan(id)
			mustNotRefuse(t, p)
			if p.Kind != RestoreDelete {
				t.Fatalf("kind %s", p.Kind)
			}
			checkText(t, c, p)
			c.apply(p)
		}
		if got := c.snapshot("public.types"); got != original {
			t.Fatalf("restored rows differ:\n got %s\nwant %s", got, original)
		}
	})

	t.Run("revert updates", func(t *testing.T) {
		// Every row takes the values of the next one: every column changes.
		set := strings.TrimPrefix(typesCols, "id, ")
		c.exec(`UPDATE types AS t SET (` + set + `) = (SELECT ` + set + ` FROM types s WHERE s.id = t.id % 4 + 1)`)
		c.sync()
		ids := c.ids("public", "types", audit.Update)
		if len(ids) != len(typesRows) {
			t.Fatalf("%d update entries, want %d", len(ids), len(typesRows))
		}
		for _, id := range ids {
			p := c.plan(id)
			mustNotRefuse(t, p)
			checkText(t, c, p)
			c.apply(p)
		}
		if got := c.snapshot("public.types"); got != original {
			t.Fatalf("reverted rows differ:\n got %s\nwant %s", got, original)
		}
	})

	t.Run("undo insert", func(t *testing.T) {
		c.exec(`INSERT INTO types (` + typesCols + `) SELECT 5` + strings.TrimPrefix(typesCols, "id") + ` FROM types WHERE id = 3`)
		c.sync()
		p := c.plan(c.last("public", "types", audit.Insert))
		mustNotRefuse(t, p)
		checkText(t, c, p)
		c.apply(p)
		if got := c.snapshot("public.types"); got != original {
			t.Fatalf("after the undo:\n got %s\nwant %s", got, original)
		}
	})

	t.Run("recorded in the trail", func(t *testing.T) {
		c.sync()
		var events, attributed int
		err := c.trail.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'restored' AND actor_id = '7' AND request_id = 'req-restore-1'
				AND schema_name = 'public' AND table_name = 'types' AND new->>'schema' = 'public' AND new->>'table' = 'types'
				AND new->>'kind' IN ('restore-delete', 'revert-update', 'undo-insert')),
			count(*) FILTER (WHERE action IN ('insert', 'update', 'delete') AND table_name = 'types' AND actor_id = '7' AND actor = 'ada@example.com')
			FROM audit.entries`).Scan(&events, &attributed)
		if err != nil {
			t.Fatal(err)
		}
		want := 2*len(typesRows) + 1
		if events != want || attributed != want {
			t.Fatalf("%d restored events and %d changes by the actor, want %d of each", events, attributed, want)
		}
	})
}

// checkText runs the plan's text form (literals, no parameters) in a
// transaction that is rolled back, and checks that it does what the
// parameterised form does: one row changed.
func checkText(t *testing.T, c *capture, p *Plan) {
	t.Helper()
	ctx := context.Background()
	if strings.Contains(p.Change.Text, "$1") && !strings.Contains(p.Change.SQL, "$1") {
		t.Fatalf("text holds a parameter:\n%s", p.Change.Text)
	}
	tx, err := c.src.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, p.Check.Text); err != nil {
		t.Fatalf("check text: %v\n%s", err, p.Check.Text)
	}
	tag, err := tx.Exec(ctx, p.Change.Text)
	if err != nil {
		t.Fatalf("change text: %v\n%s", err, fmtPlan(p))
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("change text changed %d rows, want 1\n%s", tag.RowsAffected(), fmtPlan(p))
	}
}
