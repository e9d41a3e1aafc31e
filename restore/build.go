package restore

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// build writes the plan's statements. Stored values reach the server as
// one jsonb document per image, converted to the columns' types by
// jsonb_to_record (the input functions, as to_jsonb's renderings need);
// only the columns listed are converted. The current row is compared
// with the entry's values through jsonb_build_array, which renders both
// sides alike for every type (even those without an equality operator)
// and takes NULL as a value.
func (a *analysis) build() error {
	p := a.p
	p.Key = jsonObject(names(a.key), func(k string) []byte { return a.want[k] })
	switch p.Kind {
	case RestoreDelete:
		p.Columns = names(a.write)
		return a.buildInsert()
	case RevertUpdate:
		p.Columns = names(a.write)
		return a.buildUpdate()
	default:
		p.Columns = names(a.compare)
		return a.buildDelete()
	}
}

// buildInsert: INSERT ... SELECT from the old image.
func (a *analysis) buildInsert() error {
	doc := jsonObject(names(a.write), func(k string) []byte { return a.from[k] })
	var ch stmt
	ch.raw("INSERT INTO ", a.t.ident, " (", identList(a.write), ")")
	for _, c := range a.write {
		if c.identity == 'a' {
			ch.raw("\nOVERRIDING SYSTEM VALUE")
			break
		}
	}
	ch.raw("\nSELECT ")
	for i, c := range a.write {
		if i > 0 {
			ch.raw(", ")
		}
		ch.raw(valueExpr(c, "r"))
	}
	ch.raw("\n  FROM pg_catalog.jsonb_to_record(").jsonb(doc).raw(") AS r(", defs(a.write), ")")

	var chk stmt
	chk.raw("SELECT EXISTS (SELECT 1 FROM ", a.t.ident, " AS t WHERE ", keyCond(a.key, "r"), ")",
		"\n  FROM pg_catalog.jsonb_to_record(").jsonb(doc).raw(") AS r(", defs(a.write), ")")
	return a.finish(&chk, &ch, false)
}

// buildUpdate: UPDATE ... SET the changed columns from the old image
// WHERE the key matches and they hold the new image's values.
func (a *analysis) buildUpdate() error {
	oldDoc := jsonObject(names(a.write), func(k string) []byte { return a.from[k] })
	nCols := withKey(a.compare, a.key)
	newDoc := jsonObject(names(nCols), func(k string) []byte { return a.want[k] })
	from := func(s *stmt) {
		s.raw("pg_catalog.jsonb_to_record(").jsonb(oldDoc).raw(") AS o(", defs(a.write), "),\n       ",
			"pg_catalog.jsonb_to_record(").jsonb(newDoc).raw(") AS n(", defs(nCols), ")")
	}
	var ch stmt
	ch.raw("UPDATE ", a.t.ident, " AS t\n   SET ")
	for i, c := range a.write {
		if i > 0 {
			ch.raw(",\n       ")
		}
		ch.raw(ident(c.name), " = ", valueExpr(c, "o"))
	}
	ch.raw("\n  FROM ")
	from(&ch)
	ch.raw("\n WHERE ", keyCond(a.key, "n"), sameCond(a.compare, "n"))

	var chk stmt
	chk.raw("SELECT ", sameArray(a.compare, "n"), "\n  FROM ", a.t.ident, " AS t,\n       ")
	from(&chk)
	chk.raw("\n WHERE ", keyCond(a.key, "n"))
	return a.finish(&chk, &ch, true)
}

// buildDelete: DELETE the row WHERE the key matches and every column
// holds the new image's value.
func (a *analysis) buildDelete() error {
	nCols := withKey(a.compare, a.key)
	doc := jsonObject(names(nCols), func(k string) []byte { return a.want[k] })
	var ch stmt
	ch.raw("DELETE FROM ", a.t.ident, " AS t\n USING pg_catalog.jsonb_to_record(").jsonb(doc).raw(") AS n(", defs(nCols), ")",
		"\n WHERE ", keyCond(a.key, "n"), sameCond(a.compare, "n"))

	var chk stmt
	chk.raw("SELECT ", sameArray(a.compare, "n"), "\n  FROM ", a.t.ident, " AS t,\n       ",
		"pg_catalog.jsonb_to_record(").jsonb(doc).raw(") AS n(", defs(nCols), ")",
		"\n WHERE ", keyCond(a.key, "n"))
	return a.finish(&chk, &ch, true)
}

// finish stores the statements; a check that compares the row locks it.
func (a *analysis) finish(chk, ch *stmt, lock bool) error {
	var err error
	if a.p.probe, err = chk.done(); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if lock {
		chk.raw("\n   FOR UPDATE OF t")
	}
	if a.p.Check, err = chk.done(); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if a.p.Change, err = ch.done(); err != nil {
		return fmt.Errorf("change: %w", err)
	}
	a.p.compare = names(a.compare)
	return nil
}

// valueExpr is the value of column c in record alias, as written: a JSON
// null in a NOT NULL json or jsonb column was a JSON null, not SQL NULL
// (which the image cannot tell apart).
func valueExpr(c *column, alias string) string {
	v := alias + "." + ident(c.name)
	if c.json && c.notNull {
		return "COALESCE(" + v + ", 'null'::" + c.typ + ")"
	}
	return v
}

// keyCond matches the row of table alias t with the key in record alias.
func keyCond(key []*column, alias string) string {
	parts := make([]string, len(key))
	for i, c := range key {
		parts[i] = "t." + ident(c.name) + " = " + alias + "." + ident(c.name)
	}
	return strings.Join(parts, " AND ")
}

// same is true where column c of the row holds the value in alias.
func same(c *column, alias string) string {
	return "pg_catalog.jsonb_build_array(t." + ident(c.name) + ") = pg_catalog.jsonb_build_array(" + alias + "." + ident(c.name) + ")"
}

func sameCond(cols []*column, alias string) string {
	var b strings.Builder
	for _, c := range cols {
		b.WriteString("\n   AND " + same(c, alias))
	}
	return b.String()
}

func sameArray(cols []*column, alias string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = same(c, alias)
	}
	return "ARRAY[" + strings.Join(parts, ",\n              ") + "]"
}

// defs is the column definition list of jsonb_to_record.
func defs(cols []*column) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = ident(c.name) + " " + c.typ
	}
	return strings.Join(parts, ", ")
}

func identList(cols []*column) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = ident(c.name)
	}
	return strings.Join(parts, ", ")
}

// withKey is cols followed by the key columns not among them.
func withKey(cols, key []*column) []*column {
	out := append([]*column(nil), cols...)
	for _, k := range key {
		found := false
		for _, c := range cols {
			found = found || c == k
		}
		if !found {
			out = append(out, k)
		}
	}
	return out
}

func names(cols []*column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.name
	}
	return out
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// rawJSON marshals v without escaping <, > and &.
func rawJSON(v any) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
