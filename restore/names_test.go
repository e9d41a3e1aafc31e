package restore

import (
	"context"
	"strings"
	"testing"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/internal/pgtest"
)

// hostileDDL has names that end quotes, hold SQL, markup, parameters,
// line breaks and dots.
const hostileDDL = `
CREATE SCHEMA "s""ch ema";
CREATE TABLE "s""ch ema"."ta""ble; DROP TABLE public.marker; --" (
	"i""d" int PRIMARY KEY,
	"</script><b>" text,
	"back\slash" text,
	"new
line" text,
	"ünï 🚀" text,
	"$1" text,
	"a'b" jsonb,
	"select" int
);
CREATE TABLE public."dot.ted" (id int PRIMARY KEY, v text)`

const hostileTable = `"s""ch ema"."ta""ble; DROP TABLE public.marker; --"`

// TestHostileNames restores rows of tables whose names and values are
// built to break quoting, and runs each plan's text form too.
func TestHostileNames(t *testing.T) {
	c := newCapture(t, hostileDDL, options{})
	ctx := context.Background()
	c.exec(`INSERT INTO `+hostileTable+` VALUES
		(1, '''); DROP TABLE public.marker; --', E'\\'' \\\\ \\x00 $$ $1 :foo \\g', E'line\nbreak\r\n', '</script><script>alert(1)</script>', '$1', '{"''": "\"", "</script>": "\\u0000"}', 1),
		(2, E'\\', '''', '"', '\', '$$', '["''", "\\\\"]', NULL)`,
		`INSERT INTO public."dot.ted" VALUES (1, 'v')`)
	original := c.snapshot(hostileTable)
	const schema, table = `s"ch ema`, `ta"ble; DROP TABLE public.marker; --`

	c.exec(`UPDATE `+hostileTable+` SET "</script><b>" = 'x', "a'b" = '{"k": "''"}', "select" = 2`,
		`UPDATE public."dot.ted" SET v = 'w'`)
	c.sync()
	for _, id := range c.ids(schema, table, audit.Update) {
		p := c.plan(id)
		mustNotRefuse(t, p)
		checkText(t, c, p)
		c.apply(p)
	}
	if got := c.snapshot(hostileTable); got != original {
		t.Fatalf("reverted rows differ:\n got %s\nwant %s", got, original)
	}

	c.exec(`DELETE FROM `+hostileTable, `DELETE FROM public."dot.ted"`)
	c.sync()
	for _, id := range c.ids(schema, table, audit.Delete) {
		p := c.plan(id)
		mustNotRefuse(t, p)
		checkText(t, c, p)
		c.apply(p)
	}
	if got := c.snapshot(hostileTable); got != original {
		t.Fatalf("restored rows differ:\n got %s\nwant %s", got, original)
	}

	c.exec(`INSERT INTO ` + hostileTable + ` ("i""d", "new
line") VALUES (3, E'\\\\')`)
	c.sync()
	p := c.plan(c.last(schema, table, audit.Insert))
	mustNotRefuse(t, p)
	checkText(t, c, p)
	c.apply(p)
	if got := c.snapshot(hostileTable); got != original {
		t.Fatalf("after the undo:\n got %s\nwant %s", got, original)
	}

	// A table whose name holds a dot: the event's target is ambiguous,
	// its data is not.
	p = c.plan(c.last("public", "dot.ted", audit.Delete))
	mustNotRefuse(t, p)
	c.apply(p)
	p = c.plan(c.last("public", "dot.ted", audit.Update))
	mustNotRefuse(t, p)
	c.apply(p)
	c.sync()
	var data string
	err := c.trail.QueryRow(ctx, `SELECT new::text FROM audit.entries WHERE action = 'restored' AND (new->>'entry_id')::bigint = $1`, p.EntryID).Scan(&data)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(data, `"table": "dot.ted"`) || !strings.Contains(data, `"schema": "public"`) {
		t.Fatalf("event data %s", data)
	}
	if n := c.restoredEvents(c.last(schema, table, audit.Insert)); n != 1 {
		t.Fatalf("%d restored events of the undone insert, want 1", n)
	}
}

// TestQuoteLiteral checks QuoteLiteral against the server's quote_literal
// and reads every literal back, under both settings of
// standard_conforming_strings.
func TestQuoteLiteral(t *testing.T) {
	conn := pgtest.Connect(t, srv.NewDB(t))
	ctx := context.Background()
	values := []string{"", "plain", "it's", `back\slash`, `\`, `'`, `''`, `\'`, `'\`, "E'x'", `$$`, `$1`, "line\nbreak\r\n",
		"</script><script>alert(1)</script>", `\u0000`, "ünï 🚀 \u2028 \u00a0", "\t\x01\x1b[31m", `'); DROP TABLE x; --`, `\\'\\''`}
	for _, scs := range []string{"on", "off"} {
		if _, err := conn.Exec(ctx, "SET standard_conforming_strings = "+scs); err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			lit, err := QuoteLiteral(v)
			if err != nil {
				t.Fatal(err)
			}
			var server, back string
			if err := conn.QueryRow(ctx, `SELECT quote_literal($1::text)`, v).Scan(&server); err != nil {
				t.Fatal(err)
			}
			if lit != server {
				t.Errorf("QuoteLiteral(%q) = %s, quote_literal gives %s", v, lit, server)
			}
			if err := conn.QueryRow(ctx, `SELECT `+lit+`::text`).Scan(&back); err != nil {
				t.Fatalf("standard_conforming_strings %s: SELECT %s: %v", scs, lit, err)
			}
			if back != v {
				t.Errorf("standard_conforming_strings %s: %s reads back as %q, want %q", scs, lit, back, v)
			}
		}
	}
	if _, err := QuoteLiteral("a\x00b"); err == nil {
		t.Error("QuoteLiteral took a NUL")
	}
}
