package daemon

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// tdChange is one change as test_decoding prints it: the table (its root
// for a partition), the action, and the old and new rows' columns.
type tdChange struct {
	table    string
	action   string
	old, new []tdColumn
}

// tdColumn is one column of a test_decoding row: its name, its type as
// format_type names it, and its value as the type's output function wrote
// it (null: SQL NULL; toast: an unchanged TOASTed value, not sent).
type tdColumn struct {
	name, typ, value string
	null, toast      bool
}

// parseTestDecoding reads the columns of a test_decoding change line, after
// "table t: ACTION:". An UPDATE prints "old-key: … new-tuple: …" when it has
// the old row; a DELETE prints the old row; an INSERT the new one.
func parseTestDecoding(t testing.TB, table, action, rest string) tdChange {
	t.Helper()
	c := tdChange{table: table, action: action}
	cols := func(s string) []tdColumn {
		var out []tdColumn
		s = strings.TrimSpace(s)
		for s != "" {
			open := strings.IndexByte(s, '[')
			end := strings.Index(s, "]:")
			if open < 0 || end < open {
				t.Fatalf("test_decoding column %q of %s", s, table)
			}
			col := tdColumn{name: s[:open], typ: s[open+1 : end]}
			s = s[end+2:]
			switch {
			case strings.HasPrefix(s, "null"):
				col.null, s = true, s[len("null"):]
			case strings.HasPrefix(s, "unchanged-toast-datum"):
				col.toast, s = true, s[len("unchanged-toast-datum"):]
			case strings.HasPrefix(s, "'"), strings.HasPrefix(s, "B'"):
				i := strings.IndexByte(s, '\'') + 1
				var b strings.Builder
				for ; i < len(s); i++ {
					if s[i] == '\'' {
						if i+1 < len(s) && s[i+1] == '\'' {
							b.WriteByte('\'')
							i++
							continue
						}
						break
					}
					b.WriteByte(s[i])
				}
				col.value, s = b.String(), s[i+1:]
			default:
				sp := strings.IndexByte(s, ' ')
				if sp < 0 {
					sp = len(s)
				}
				col.value, s = s[:sp], s[sp:]
			}
			out = append(out, col)
			s = strings.TrimSpace(s)
		}
		return out
	}
	switch {
	case strings.HasPrefix(strings.TrimSpace(rest), "(no-tuple-data)"):
	case action == "update" && strings.Contains(rest, "old-key:"):
		o, n, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(rest), "old-key:"), " new-tuple:")
		c.old, c.new = cols(o), cols(n)
	case action == "delete":
		c.old = cols(rest)
	default:
		c.new = cols(rest)
	}
	return c
}

// compareValues checks every value of every change test_decoding printed
// against the trail's entry of the same change (the n-th change of a table
// is its n-th entry): each column rendered by the server's to_jsonb from
// the text test_decoding gave, compared with the entry's old and new.
// Differences allowed are those the entries mark or README "Limits" lists:
// a generated column absent (flag generated_absent), a composite value
// stored as its text.
func (h *harness) compareValues(changes []tdChange) {
	t := h.t
	ctx := context.Background()
	// Every value rendered in one query.
	var values, types []string
	for _, c := range changes {
		for _, row := range [][]tdColumn{c.old, c.new} {
			for _, col := range row {
				if !col.null && !col.toast {
					values, types = append(values, col.value), append(types, col.typ)
				}
			}
		}
	}
	h.exec(`CREATE FUNCTION pg_temp.render(v text, t text) RETURNS jsonb LANGUAGE plpgsql AS $$
		DECLARE r jsonb; BEGIN EXECUTE format('SELECT to_jsonb(%L::%s)', v, t) INTO r; RETURN r; END $$`)
	// test_decoding names types without their modifiers: bit(4) as bit,
	// which is bit(1) when cast to; char(3) as character, char(1).
	for i, typ := range types {
		switch typ {
		case "bit", "bit[]":
			types[i] = strings.Replace(typ, "bit", "varbit", 1)
		case "character", "character[]":
			types[i] = strings.Replace(typ, "character", "bpchar", 1)
		}
	}
	rendered := h.stringsArgs(`SELECT pg_temp.render(v, t)::text FROM unnest($1::text[], $2::text[]) WITH ORDINALITY x(v, t, n) ORDER BY n`, values, types)
	composite := map[string]bool{}
	for _, typ := range h.strings(`SELECT format_type(oid, NULL) FROM pg_type WHERE typtype = 'c' AND typrelid IN (SELECT oid FROM pg_class WHERE relkind = 'c')`) {
		composite[typ] = true
	}
	next := 0
	object := func(row []tdColumn, skip func(string) bool) string {
		m := map[string]json.RawMessage{}
		for _, col := range row {
			switch {
			case col.null:
				m[col.name] = json.RawMessage("null")
			case col.toast:
			default:
				v := rendered[next]
				next++
				if composite[col.typ] {
					b, _ := json.Marshal(col.value)
					v = string(b)
				}
				if !skip(col.name) {
					m[col.name] = json.RawMessage(v)
				}
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		return canonJSON(t, string(b))
	}

	type entry struct{ id, action, old, new, flags string }
	trail := map[string][]entry{}
	rows, err := h.conn.Query(ctx, `SELECT e.id::text, e.schema_name || '.' || e.table_name, e.action, coalesce(e.old::text, ''), coalesce(e.new::text, ''), coalesce(e.flags::text, '')
		FROM audit.entries e WHERE e.action IN ('insert', 'update', 'delete') AND e.table_name <> 'marker' ORDER BY e.id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e entry
		var table string
		if err := rows.Scan(&e.id, &table, &e.action, &e.old, &e.new, &e.flags); err != nil {
			t.Fatal(err)
		}
		trail[table] = append(trail[table], e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	seen := map[string]int{}
	compared, differ := 0, 0
	for _, c := range changes {
		i := seen[c.table]
		seen[c.table]++
		var e entry
		if i < len(trail[c.table]) {
			e = trail[c.table][i]
		}
		generatedAbsent := strings.Contains(e.flags, "generated_absent")
		skip := func(name string) bool { return generatedAbsent && c.table == "public.gen" && name == "twice" }
		// Rendered values are taken in order: both sides, always.
		var wantOld, wantNew string
		if c.old != nil {
			wantOld = object(c.old, skip)
		}
		if c.new != nil {
			wantNew = object(c.new, skip)
		}
		if e.action == "" {
			continue // missing from the trail: the counts above say so
		}
		if e.action == c.action && (c.old == nil && e.old != "" || c.new == nil && e.new != "") {
			t.Errorf("entry %s (%s %s) has a row image test_decoding has not: old %q, new %q", e.id, c.table, c.action, e.old, e.new)
		}
		for _, side := range []struct {
			name, want, got string
		}{{"old", wantOld, e.old}, {"new", wantNew, e.new}} {
			if side.want == "" || e.action != c.action {
				continue
			}
			want := side.want
			got := side.got
			if side.name == "old" && got != "" {
				// test_decoding leaves NULL columns out of an old row.
				got, want = withoutNulls(t, got), withoutNulls(t, want)
			}
			compared++
			if got == "" || canonJSON(t, got) != want {
				differ++
				if differ <= 10 {
					t.Errorf("entry %s (%s %s), %s:\n  trail         %s\n  test_decoding %s", e.id, c.table, c.action, side.name, side.got, want)
				}
			}
		}
		if e.action != c.action {
			t.Errorf("entry %s of %s is %s; test_decoding's change %d of it is %s", e.id, c.table, e.action, i+1, c.action)
		}
	}
	if next != len(rendered) {
		t.Fatalf("rendered %d values, used %d", len(rendered), next)
	}
	if compared < 250 {
		t.Errorf("only %d row images compared with test_decoding", compared)
	}
	if differ > 0 {
		t.Errorf("%d of %d row images differ from test_decoding's", differ, compared)
	}
	t.Logf("%d row images compared value by value with test_decoding (%d values)", compared, len(values))
}

// withoutNulls is the JSON object s without its null members, canonical.
func withoutNulls(t testing.TB, s string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	maps.DeleteFunc(m, func(_ string, v json.RawMessage) bool { return string(v) == "null" })
	b, _ := json.Marshal(m)
	return canonJSON(t, string(b))
}

// stringsArgs runs a query of one text column with arguments.
func (h *harness) stringsArgs(sql string, args ...any) []string {
	h.t.Helper()
	rows, err := h.conn.Query(context.Background(), sql, args...)
	if err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}
