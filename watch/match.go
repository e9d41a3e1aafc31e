package watch

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/rules"
)

// pattern is one item of a watch's tables: schema and table parts, each a
// name or a glob.
type pattern struct {
	schema, table string
	exact         bool
}

// compilePattern splits a table name or pattern at its first dot; a name
// without one is in public, as in the tables list.
func compilePattern(name string) (pattern, error) {
	schema, table, ok := strings.Cut(name, ".")
	if !ok {
		schema, table = "public", name
	}
	for _, p := range []string{schema, table} {
		if _, err := path.Match(p, ""); err != nil {
			return pattern{}, fmt.Errorf("%q: %w", name, err)
		}
	}
	return pattern{schema: schema, table: table, exact: !strings.ContainsAny(schema+table, `*?[\`)}, nil
}

func (p pattern) match(schema, table string) bool {
	if p.exact {
		return p.schema == schema && p.table == table
	}
	return rules.MatchName(p.schema, schema) && rules.MatchName(p.table, table)
}

// filter is what an entry must be for a watch to look at it.
type filter struct {
	tables  []pattern // nil: every table
	actions []string  // nil: every action
	columns []string  // nil: any entry
}

func newFilter(r Rule) (filter, error) {
	var f filter
	for _, t := range r.Tables {
		p, err := compilePattern(t)
		if err != nil {
			return filter{}, err
		}
		f.tables = append(f.tables, p)
	}
	f.actions = r.Actions
	f.columns = r.Columns
	return f, nil
}

func (f *filter) matchTable(schema, table string) bool {
	if f.tables == nil {
		return true
	}
	for _, p := range f.tables {
		if p.match(schema, table) {
			return true
		}
	}
	return false
}

// matchEntry checks what matchTable does not: the action and the columns.
func (f *filter) matchEntry(e *audit.Entry) bool {
	if f.actions != nil {
		ok := false
		for _, a := range f.actions {
			if string(e.Action) == a {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if f.columns == nil {
		return true
	}
	for _, c := range e.Changed {
		for _, want := range f.columns {
			if c == want {
				return true
			}
		}
	}
	return objectHasKey(e.New, f.columns) || objectHasKey(e.Old, f.columns)
}

// objectHasKey reports whether the JSON object b has one of names as a
// top-level key. It reads b without decoding it (a key written with
// escapes is decoded alone), and returns false for anything but an object.
func objectHasKey(b []byte, names []string) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return false // the end of the object, or not JSON
		}
		end, escaped := stringEnd(b, i)
		if end < 0 {
			return false
		}
		if keyIn(b[i:end+1], escaped, names) {
			return true
		}
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		if i = skipValue(b, skipSpace(b, i+1)); i < 0 {
			return false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			return false
		}
		i++
	}
}

// keyIn compares a quoted key with names.
func keyIn(quoted []byte, escaped bool, names []string) bool {
	raw := quoted[1 : len(quoted)-1]
	if escaped {
		var s string
		if json.Unmarshal(quoted, &s) != nil {
			return false
		}
		raw = []byte(s)
	}
	for _, n := range names {
		if string(raw) == n {
			return true
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index of the quote closing the string that starts
// at b[i], and whether it holds escapes; -1 when it is not closed.
func stringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j, escaped
		}
	}
	return -1, escaped
}

// skipValue returns the index just past the JSON value starting at b[i],
// or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		if end < 0 {
			return -1
		}
		return end + 1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// tableKey is a table's schema and name.
type tableKey struct{ schema, table string }

// maxCachedTables bounds the cache of which watches look at which table:
// an application event's target is anyone's word. Past it, tables not in
// the cache are matched anew for each entry.
const maxCachedTables = 10_000

// tableRules returns the indexes of the watches whose tables match, from a
// cache (the last table asked for, then a map): nothing is allocated for a
// table already seen. The result is valid until the next call.
func (e *Evaluator) tableRules(schema, table string) []int {
	if e.lastOK && schema == e.lastTable.schema && table == e.lastTable.table {
		return e.lastRules
	}
	k := tableKey{schema, table}
	rs, ok := e.tables[k]
	if !ok {
		rs = e.scratch[:0]
		for i, c := range e.rules {
			if c.f.matchTable(schema, table) {
				rs = append(rs, i)
			}
		}
		e.scratch = rs
		if len(e.tables) >= maxCachedTables {
			e.lastOK = false
			return rs
		}
		if len(rs) > 0 {
			rs = append([]int(nil), rs...)
		} else {
			rs = nil
		}
		k = tableKey{strings.Clone(schema), strings.Clone(table)}
		e.tables[k] = rs
	}
	e.lastTable, e.lastRules, e.lastOK = k, rs, true
	return rs
}
