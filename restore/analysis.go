package restore

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/walscribe/walscribe/jsonb"
	"github.com/walscribe/walscribe/rules"
)

// analysis checks an entry against its table and decides what the
// statements write and compare.
type analysis struct {
	p     *Plan
	e     *Entry
	t     *table
	rules tableRules

	write   []*column                  // inserted or set, in the table's order
	from    map[string]json.RawMessage // their values
	compare []*column                  // compared with the row now, in the table's order
	want    map[string]json.RawMessage // their values, and the key's
	key     []*column                  // the primary key, in key order
}

// restoreDelete: the old image is inserted again. Every column of the
// table must be in it, be generated, or be one added since that may take
// its default.
func (a *analysis) restoreDelete() {
	old, ok := object(a.e.Old)
	if !ok {
		a.p.refuse(CodeIncomplete, "", "the entry has no old image of the row")
		return
	}
	newest := (*column)(nil) // the image's column added last
	for _, name := range slices.Sorted(maps.Keys(old)) {
		c, v := a.t.byName[name], old[name]
		switch {
		case c == nil:
			a.p.refuse(CodeColumnGone, name, "column %s of the deleted row no longer exists in %s", quoteName(name), a.table())
		case c.generated:
			a.p.note("column %s is generated now: the server computes it", quoteName(name))
		default:
			if newest == nil || c.num > newest.num {
				newest = c
			}
			a.masked(name, v)
			a.lossy(c, v, "deleted row")
			a.jsonNotes(c, v)
		}
	}
	a.excluded("its value was never stored")
	if a.keyOnly(old) {
		a.p.refuse(CodeIncomplete, "", "the old image holds only the key: %s was not REPLICA IDENTITY FULL when the row was deleted", a.table())
	}
	for _, c := range a.t.cols {
		if _, in := old[c.name]; in || c.generated || a.rules.excluded[c.name] {
			continue
		}
		switch {
		case newest != nil && c.num < newest.num:
			a.p.refuse(CodeColumnMissing, c.name, "column %s is not in the image, though column %s, which is, was added to the table after it: the image does not match the table (was %s dropped and added again?)",
				quoteName(c.name), quoteName(newest.name), quoteName(newest.name))
		case c.notNull && !c.hasDefault && c.identity == 0:
			a.p.refuse(CodeColumnMissing, c.name, "column %s is not in the image (added since the entry?), is NOT NULL and has no default", quoteName(c.name))
		default:
			a.p.note("column %s is not in the image (added since the entry?): it takes its default", quoteName(c.name))
		}
	}
	for _, c := range a.t.cols {
		if _, in := old[c.name]; in && !c.generated {
			a.write = append(a.write, c)
		}
	}
	a.from = old
	a.want = a.keyFrom(old)
}

// revertUpdate: the changed columns are set back to their old values, if
// they still hold the new ones.
func (a *analysis) revertUpdate() {
	old, okOld := object(a.e.Old)
	nw, okNew := object(a.e.New)
	switch {
	case !okOld || !okNew:
		a.p.refuse(CodeIncomplete, "", "the entry has no old image: %s was not REPLICA IDENTITY FULL when the row was updated", a.table())
		return
	case len(a.e.Changed) == 0:
		a.p.refuse(CodeIncomplete, "", "the entry records no changed column (the update changed nothing recorded, or the old image holds only the key)")
		return
	}
	for _, name := range a.e.Changed {
		c := a.t.byName[name]
		ov, inOld := old[name]
		nv, inNew := nw[name]
		switch {
		case c == nil:
			a.p.refuse(CodeColumnGone, name, "column %s, which the update changed, no longer exists in %s", quoteName(name), a.table())
		case c.generated:
			a.p.refuse(CodeGenerated, name, "column %s, which the update changed, is a generated column now", quoteName(name))
		case c.identity == 'a':
			a.p.refuse(CodeUnsupported, name, "column %s, which the update changed, is GENERATED ALWAYS AS IDENTITY: it can only be set to its default", quoteName(name))
		case !inOld || !inNew:
			a.p.refuse(CodeIncomplete, name, "column %s is in the entry's changed columns but not in both images", quoteName(name))
		default:
			a.masked(name, ov, nv)
			a.lossy(c, ov, "old")
			a.lossy(c, nv, "new")
			a.jsonNotes(c, ov)
		}
	}
	a.excluded("whether the update changed it is unknown, and its old value was never stored")
	if a.rules.diff {
		a.p.note("the rules kept only the changed columns of updates (diff: changes): all a revert needs")
	}
	if a.p.fidelityRefused() {
		return
	}
	for _, c := range a.t.cols {
		if slices.Contains(a.e.Changed, c.name) {
			a.write = append(a.write, c)
		}
	}
	a.from = old
	a.compare = a.write
	a.want = a.keyFrom(nw)
}

// undoInsert: the row is deleted if every column still holds the value
// the insert gave it.
func (a *analysis) undoInsert() {
	nw, ok := object(a.e.New)
	if !ok {
		a.p.refuse(CodeIncomplete, "", "the entry has no new image of the row")
		return
	}
	newest := (*column)(nil)
	for _, name := range slices.Sorted(maps.Keys(nw)) {
		c, v := a.t.byName[name], nw[name]
		switch {
		case c == nil:
			a.p.refuse(CodeColumnGone, name, "column %s of the inserted row no longer exists in %s", quoteName(name), a.table())
		case !c.generated:
			if newest == nil || c.num > newest.num {
				newest = c
			}
			a.masked(name, v)
		}
	}
	a.excluded("whether it changed since the insert cannot be told")
	for _, c := range a.t.cols {
		_, in := nw[c.name]
		switch {
		case in && !c.generated:
			a.compare = append(a.compare, c)
		case in || c.generated || a.rules.excluded[c.name]:
		case newest != nil && c.num < newest.num:
			a.p.refuse(CodeColumnMissing, c.name, "column %s is not in the image, though column %s, which is, was added to the table after it: the image does not match the table (was %s dropped and added again?)",
				quoteName(c.name), quoteName(newest.name), quoteName(newest.name))
		default:
			a.p.note("column %s is not in the image (added since the entry?): it is not compared", quoteName(c.name))
		}
	}
	a.want = a.keyFrom(nw)
}

// keyFrom finds the primary key's values, in img or else in the entry's
// key, and returns a copy of img with them.
func (a *analysis) keyFrom(img map[string]json.RawMessage) map[string]json.RawMessage {
	pk, _ := object(a.e.PK) // a hashed key ({"sha256": ...}) holds no column of the table
	out := make(map[string]json.RawMessage, len(img)+len(a.t.pk))
	for k, v := range img {
		out[k] = v
	}
	for _, name := range a.t.pk {
		v, ok := img[name]
		if !ok {
			v, ok = pk[name]
		}
		switch {
		case !ok:
			a.p.refuse(CodeIncomplete, name, "primary-key column %s is neither in the entry's key nor in its image", quoteName(name))
		case isNull(v):
			a.p.refuse(CodeIncomplete, name, "primary-key column %s is null in the entry", quoteName(name))
		default:
			a.masked(name, v)
			out[name] = v
		}
		a.key = append(a.key, a.t.byName[name])
	}
	return out
}

// masked refuses a column the rules masked, unless every value of it the
// restore needs is null (a masked NULL stays NULL).
func (a *analysis) masked(name string, vals ...json.RawMessage) {
	st, ok := a.rules.masked[name]
	if !ok || !slices.ContainsFunc(vals, func(v json.RawMessage) bool { return !isNull(v) }) {
		return
	}
	if slices.ContainsFunc(a.p.Refusals, func(r Refusal) bool { return r.Code == CodeMasked && r.Column == name }) {
		return
	}
	stored := "a keyed hash (HMAC-SHA256) of the value"
	if st == rules.Redact {
		stored = `"` + rules.Redacted + `"`
	}
	a.p.refuse(CodeMasked, name, "column %s was masked by the rules in force when the entry was written: the trail holds %s, not the value", quoteName(name), stored)
}

// excluded refuses the columns of the table the rules left out.
func (a *analysis) excluded(why string) {
	for _, c := range a.t.cols {
		if a.rules.excluded[c.name] && !c.generated {
			a.p.refuse(CodeExcluded, c.name, "column %s was excluded by the rules in force when the entry was written: %s", quoteName(c.name), why)
		}
	}
}

// lossy refuses a json value that the decoder kept as a string of its
// text because jsonb refuses the document (\u0000, a lone surrogate, a
// number beyond numeric): restored, it would be a JSON string.
func (a *analysis) lossy(c *column, v json.RawMessage, image string) {
	if !c.jsonText || len(v) == 0 || v[0] != '"' {
		return
	}
	var s string
	if json.Unmarshal(v, &s) != nil || !json.Valid([]byte(s)) || jsonb.Check([]byte(s)) == nil {
		return
	}
	a.p.refuse(CodeLossy, c.name, "json column %s of the %s image holds a document jsonb refuses, which the trail keeps as a string of its text", quoteName(c.name), image)
}

// jsonNotes says what a json or jsonb value written back may lose.
func (a *analysis) jsonNotes(c *column, v json.RawMessage) {
	switch {
	case !c.json:
	case isNull(v) && !c.notNull:
		a.p.note("column %s is null in the image and is written as SQL NULL: had it held a JSON null, the image could not tell", quoteName(c.name))
	case c.jsonText && !isNull(v):
		a.p.note("json column %s is written as the trail stores it, as jsonb prints it: white space and key order as jsonb keeps them, duplicate keys once", quoteName(c.name))
	}
}

// keyOnly reports whether an image holds nothing but primary-key (or the
// entry's key) columns while the table has other columns to fill.
func (a *analysis) keyOnly(img map[string]json.RawMessage) bool {
	pk, _ := object(a.e.PK)
	for name := range img {
		if _, in := pk[name]; !in && !slices.Contains(a.t.pk, name) {
			return false
		}
	}
	return slices.ContainsFunc(a.t.cols, func(c *column) bool {
		_, in := img[c.name]
		return !in && !c.generated && !a.rules.excluded[c.name]
	})
}

func (a *analysis) table() string { return qualified(a.e.Schema, a.e.Table) }
