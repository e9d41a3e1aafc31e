package restore

import (
	"context"
	"strings"
	"testing"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/rules"
)

const refuseDDL = `
CREATE TABLE masked (id int PRIMARY KEY, name text, card text, ssn text);
CREATE TABLE excluded (id int PRIMARY KEY, name text, secret text);
CREATE TABLE diffonly (id int PRIMARY KEY, a text, b int, c jsonb);
CREATE TABLE shape (id int PRIMARY KEY, a text, b text);
CREATE TABLE gone (id int PRIMARY KEY, v text);
CREATE TABLE nokey (v text);
CREATE TABLE docs (id int PRIMARY KEY, doc json);
CREATE TABLE longkey (k text PRIMARY KEY, v text);
CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
CREATE TABLE gen (id int PRIMARY KEY, v int, twice int GENERATED ALWAYS AS (v * 2) STORED);
CREATE TABLE conv (id int PRIMARY KEY, v text)`

var refuseRules = []rules.TableConfig{
	{Name: "public.masked", Mask: map[string]rules.Style{"card": rules.Hash, "ssn": rules.Redact}},
	{Name: "public.excluded", Exclude: []string{"secret"}},
	{Name: "public.diffonly", Diff: rules.Changes},
}

// TestRefusals: what the images cannot restore faithfully is refused,
// with the reason; what they can is restored.
func TestRefusals(t *testing.T) {
	c := newCapture(t, refuseDDL, options{tables: refuseRules})
	ctx := context.Background()
	c.exec(`INSERT INTO masked VALUES (1, 'Ada', '4111 1111 1111 1111', '078-05-1120'), (2, 'Bob', NULL, NULL)`,
		`UPDATE masked SET name = 'Ada L.' WHERE id = 1`,
		`UPDATE masked SET card = '5500 0000 0000 0004' WHERE id = 1`,
		`INSERT INTO excluded VALUES (1, 'a', 's3cr3t')`, `UPDATE excluded SET name = 'b'`,
		`INSERT INTO diffonly VALUES (1, 'x', 1, '{"k": [1]}')`, `UPDATE diffonly SET a = 'y', c = '{"k": [2]}'`,
		`INSERT INTO docs VALUES (1, '{"a": "\u0000"}'), (2, 'null')`,
		`INSERT INTO longkey VALUES (repeat('k', 2000), 'v')`,
		`INSERT INTO ident (v) VALUES ('a')`, `UPDATE ident SET v = 'b'`,
		`INSERT INTO gen (id, v) VALUES (1, 21)`,
		`INSERT INTO conv VALUES (1, 'abc')`, `DELETE FROM conv`,
		`INSERT INTO nokey VALUES ('v')`, `INSERT INTO gone VALUES (1, 'v')`, `INSERT INTO shape VALUES (1, 'a', 'b'), (2, 'a', 'b')`)
	c.sync()

	t.Run("masked", func(t *testing.T) {
		ups := c.ids("public", "masked", audit.Update)
		name, card := c.plan(ups[0]), c.plan(ups[1])
		mustNotRefuse(t, name) // the masked columns did not change
		mustRefuse(t, card, CodeMasked, "card")
		c.apply(name)
		c.exec(`DELETE FROM masked`)
		c.sync()
		ada, bob := c.plan(c.find("masked", audit.Delete, `{"id": 1}`)), c.plan(c.find("masked", audit.Delete, `{"id": 2}`))
		mustRefuse(t, ada, CodeMasked, "card")
		mustRefuse(t, ada, CodeMasked, "ssn")
		if ada.Change.SQL != "" {
			t.Fatalf("a refused plan holds a statement:\n%s", ada.Change.Text)
		}
		mustNotRefuse(t, bob) // masked NULLs stay NULL
		c.apply(bob)
		if got := c.snapshot("masked"); !strings.Contains(got, `(2,Bob,,)`) {
			t.Fatalf("masked: %s", got)
		}
	})

	t.Run("excluded", func(t *testing.T) {
		mustRefuse(t, c.plan(c.last("public", "excluded", audit.Update)), CodeExcluded, "secret")
		c.exec(`DELETE FROM excluded`)
		c.sync()
		mustRefuse(t, c.plan(c.last("public", "excluded", audit.Delete)), CodeExcluded, "secret")
	})

	t.Run("diff only", func(t *testing.T) {
		id := c.last("public", "diffonly", audit.Update)
		e, err := c.r.Load(ctx, c.trail, id)
		if err != nil {
			t.Fatal(err)
		}
		if old, _ := object(e.Old); len(old) != 2 {
			t.Fatalf("old image %s: want only the changed columns", e.Old)
		}
		p := c.plan(id)
		mustNotRefuse(t, p)
		if !strings.Contains(strings.Join(p.Notes, "\n"), "diff: changes") {
			t.Errorf("notes %v", p.Notes)
		}
		c.apply(p)
		if got := c.snapshot("diffonly"); !strings.Contains(got, `{"a": "x", "b": 1, "c": {"k": [1]}, "id": 1}`) {
			t.Fatalf("diffonly: %s", got)
		}
	})

	t.Run("json that jsonb refuses", func(t *testing.T) {
		c.exec(`DELETE FROM docs`)
		c.sync()
		mustRefuse(t, c.plan(c.find("docs", audit.Delete, `{"id": 1}`)), CodeLossy, "doc")
		p := c.plan(c.find("docs", audit.Delete, `{"id": 2}`))
		mustNotRefuse(t, p)
		if !strings.Contains(strings.Join(p.Notes, "\n"), "SQL NULL") {
			t.Errorf("notes %v", p.Notes)
		}
	})

	t.Run("hashed key", func(t *testing.T) {
		c.exec(`DELETE FROM longkey`)
		c.sync()
		id := c.last("public", "longkey", audit.Delete)
		e, err := c.r.Load(ctx, c.trail, id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(e.Flags, ","), audit.FlagPKHashed) {
			t.Fatalf("flags %v, want pk_hashed", e.Flags)
		}
		p := c.plan(id)
		mustNotRefuse(t, p)
		c.apply(p)
		if got := c.snapshot("longkey"); !strings.Contains(got, strings.Repeat("k", 2000)) {
			t.Fatalf("longkey: %.100s", got)
		}
	})

	t.Run("identity and generated columns", func(t *testing.T) {
		up := c.plan(c.last("public", "ident", audit.Update))
		mustNotRefuse(t, up)
		c.apply(up)
		c.exec(`DELETE FROM ident`, `DELETE FROM gen`)
		c.sync()
		p := c.plan(c.last("public", "ident", audit.Delete))
		mustNotRefuse(t, p)
		if !strings.Contains(p.Change.SQL, "OVERRIDING SYSTEM VALUE") {
			t.Fatalf("identity column inserted without OVERRIDING SYSTEM VALUE:\n%s", p.Change.Text)
		}
		c.apply(p)
		g := c.plan(c.last("public", "gen", audit.Delete))
		mustNotRefuse(t, g)
		c.apply(g)
		if got := c.snapshot("ident") + c.snapshot("gen"); !strings.Contains(got, `(1,a)`) || !strings.Contains(got, `(1,21,42)`) {
			t.Fatalf("ident, gen: %s", got)
		}
	})

	t.Run("shape changed", func(t *testing.T) {
		c.exec(`DELETE FROM shape`)
		c.sync()
		first := c.find("shape", audit.Delete, `{"id": 1}`)
		c.exec(`ALTER TABLE shape DROP COLUMN b`)
		mustRefuse(t, c.plan(first), CodeColumnGone, "b")
		c.exec(`INSERT INTO shape VALUES (3, 'a')`, `DELETE FROM shape`)
		c.sync()
		third := c.last("public", "shape", audit.Delete)
		c.exec(`ALTER TABLE shape ADD COLUMN d int NOT NULL DEFAULT 1`, `ALTER TABLE shape ALTER COLUMN d DROP DEFAULT`)
		mustRefuse(t, c.plan(first), CodeColumnGone, "b")
		mustRefuse(t, c.plan(third), CodeColumnMissing, "d")
		c.exec(`ALTER TABLE shape ALTER COLUMN d SET DEFAULT 5`)
		p := c.plan(third)
		mustNotRefuse(t, p)
		if !strings.Contains(strings.Join(p.Notes, "\n"), "takes its default") {
			t.Errorf("notes %v", p.Notes)
		}
		c.apply(p)
		if got := c.snapshot("shape"); !strings.Contains(got, `(3,a,5)`) {
			t.Fatalf("shape: %s", got)
		}
	})

	t.Run("type changed", func(t *testing.T) {
		c.exec(`ALTER TABLE conv ALTER COLUMN v TYPE int USING 0`)
		p := c.plan(c.last("public", "conv", audit.Delete))
		mustRefuse(t, p, CodeConversion, "")
		if !strings.Contains(p.Refusals[0].Reason, "invalid input syntax for type integer") {
			t.Errorf("reason %q", p.Refusals[0].Reason)
		}
	})

	t.Run("table gone, no key", func(t *testing.T) {
		c.exec(`DELETE FROM gone`, `DELETE FROM nokey`)
		c.sync()
		c.exec(`DROP TABLE gone`)
		mustRefuse(t, c.plan(c.last("public", "gone", audit.Delete)), CodeTableGone, "")
		mustRefuse(t, c.plan(c.last("public", "nokey", audit.Delete)), CodeNoKey, "")
	})

	t.Run("not a row change", func(t *testing.T) {
		c.exec(`TRUNCATE nokey`, `SELECT audit.log_event('exported', 'public.nokey', '1', '{"format": "csv"}')`)
		c.sync()
		mustRefuse(t, c.plan(c.last("public", "nokey", audit.Truncate)), CodeUnsupported, "")
		mustRefuse(t, c.plan(c.last("public", "nokey", "exported")), CodeUnsupported, "")
	})

	t.Run("flags and rules", func(t *testing.T) {
		e, err := c.r.Load(ctx, c.trail, c.last("public", "nokey", audit.Delete))
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Rules) != 1 || e.Rules[0].Slot != "walscribe" {
			t.Fatalf("rules %+v", e.Rules)
		}
		for flags, want := range map[string]Code{
			"json_reencoded": CodeFlagged, "text_escaped": CodeFlagged, "truncated": CodeFlagged, "unstorable": CodeFlagged,
			"type_unknown": CodeFlagged, "table_unknown": CodeFlagged, "pk_incomplete": CodeFlagged, "someday_new": CodeFlagged,
			"text_clipped,no_context,generated_absent,pk_hashed": CodeNoKey, // harmless: the table's own problem remains
		} {
			f := *e
			f.Flags = strings.Split(flags, ",")
			p, err := c.r.Plan(ctx, c.src, &f)
			if err != nil {
				t.Fatal(err)
			}
			mustRefuse(t, p, want, "")
			if want == CodeNoKey && len(p.Refusals) != 1 {
				t.Errorf("flags %s: refusals %v", flags, p.Refusals)
			}
		}
		f := *e
		f.Rules = nil
		p, err := c.r.Plan(ctx, c.src, &f)
		if err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, p, CodeNoRules, "")
		f = *e
		f.Schema = "walscribe"
		if p, err = c.r.Plan(ctx, c.src, &f); err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, p, CodeUnsupported, "")
	})
}
