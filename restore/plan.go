package restore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/walscribe/walscribe/audit"
)

// Kind is what a plan does.
type Kind string

// The kinds of restore, as the "restored" event's data names them.
const (
	// RestoreDelete inserts the row a delete entry removed.
	RestoreDelete Kind = "restore-delete"
	// RevertUpdate sets the columns an update entry changed back to their
	// old values, if they still hold the new ones.
	RevertUpdate Kind = "revert-update"
	// UndoInsert deletes the row an insert entry added, if it is unchanged.
	UndoInsert Kind = "undo-insert"
)

// Plan is how to undo one entry, or why it cannot be undone. Building it
// changes nothing.
type Plan struct {
	EntryID int64
	Kind    Kind // "" when the entry is not a row change
	Schema  string
	Table   string
	// Key is the row's primary key as a JSON object text, as the trail
	// writes keys ({"id": 42}); the "restored" event's object_id.
	Key string
	// Columns are the columns inserted (RestoreDelete), set back
	// (RevertUpdate) or compared (UndoInsert), in the table's order.
	Columns []string
	// Check reads, and locks, the row as it is now, before the change:
	// for RestoreDelete whether a row with the key exists (one row, a
	// boolean); otherwise one row (none when the row is gone) holding an
	// array of booleans, one per compared column, true where the column
	// still holds the entry's value.
	Check Statement
	// Change makes the change. It repeats the check in its own condition
	// (UPDATE and DELETE change no row that changed since; INSERT fails on
	// the primary key), so it is safe to run by hand too.
	Change Statement
	// Notes say what the restore does not bring back exactly, or assumes.
	Notes []string
	// Refusals say why the entry cannot be undone; when there are any,
	// Apply refuses the plan, and Check and Change are empty unless the
	// only reason is CodeChangedSince.
	Refusals []Refusal

	probe   Statement // Check without the lock, run while planning
	compare []string  // the columns Check compares, in its order
}

// Refused reports whether the plan cannot be applied.
func (p *Plan) Refused() bool { return len(p.Refusals) > 0 }

// Err is a *RefusedError when the plan is refused, nil otherwise.
func (p *Plan) Err() error {
	if !p.Refused() {
		return nil
	}
	return &RefusedError{EntryID: p.EntryID, Refusals: slices.Clone(p.Refusals)}
}

func (p *Plan) refuse(code Code, col, format string, args ...any) {
	p.Refusals = append(p.Refusals, Refusal{Code: code, Column: col, Reason: fmt.Sprintf(format, args...)})
}

func (p *Plan) note(format string, args ...any) {
	p.Notes = append(p.Notes, fmt.Sprintf(format, args...))
}

// fidelityRefused reports whether a refusal other than CodeChangedSince
// was made: the images cannot restore the row, so no statement is built.
func (p *Plan) fidelityRefused() bool {
	return slices.ContainsFunc(p.Refusals, func(r Refusal) bool { return r.Code != CodeChangedSince })
}

// Flags that do not stop a restore, and why.
var harmlessFlags = map[string]bool{
	audit.FlagPKHashed:        true, // the key is hashed; old and new hold the row whole
	audit.FlagTextClipped:     true, // only context fields are clipped (names cannot be that long)
	audit.FlagNoContext:       true, // who acted is unknown; the images are whole
	audit.FlagGeneratedAbsent: true, // generated columns are never written: the server computes them
}

// What each flag that stops a restore means for it.
var flagReasons = map[string]string{
	audit.FlagJSONReencoded:     "a JSON value of the entry was re-encoded to be stored",
	audit.FlagTextEscaped:       "text of the entry held NUL or invalid UTF-8 and was escaped to be stored",
	audit.FlagTruncated:         "part of the entry was larger than walscribe keeps and was cut",
	audit.FlagUnstorable:        "the server refused the entry as decoded; its values are stored as escaped text",
	audit.FlagPKIncomplete:      "a primary-key column is generated and was not in the stream, so the key is not known",
	audit.FlagTypeUnknown:       "a column's type was unknown when the entry was decoded: its value is the server's text, not its type's rendering",
	audit.FlagTableUnknown:      "the table was unknown when the entry was decoded",
	audit.FlagReservedAction:    "it is an application event",
	audit.FlagPartitionTruncate: "it is a truncate",
}

// Plan checks entry e against the source database as it is now and
// builds the statements that undo it, or says why it cannot be undone. It
// only reads (it may run in a read-only transaction). An error means the
// check could not be made; a refusal is in the plan.
func (r *Restorer) Plan(ctx context.Context, src Querier, e *Entry) (*Plan, error) {
	p := &Plan{EntryID: e.ID, Schema: e.Schema, Table: e.Table}
	switch {
	case e.Schema == "walscribe":
		p.refuse(CodeUnsupported, "", "entry %d is one of walscribe's own records (%s), not a row change", e.ID, e.Action)
		return p, nil
	case e.Action == audit.Delete:
		p.Kind = RestoreDelete
	case e.Action == audit.Update:
		p.Kind = RevertUpdate
	case e.Action == audit.Insert:
		p.Kind = UndoInsert
	case e.Action == audit.Truncate:
		p.refuse(CodeUnsupported, "", "entry %d is a truncate, which records no rows to restore", e.ID)
		return p, nil
	default:
		p.refuse(CodeUnsupported, "", "entry %d is an application event (%q), not a row change", e.ID, e.Action)
		return p, nil
	}
	for _, f := range e.Flags {
		switch {
		case harmlessFlags[f]:
		case flagReasons[f] != "":
			p.refuse(CodeFlagged, "", "%s (flag %s)", flagReasons[f], f)
		default:
			p.refuse(CodeFlagged, "", "the entry has flag %q, which this version does not know", f)
		}
	}
	if len(e.Rules) == 0 {
		p.refuse(CodeNoRules, "", "the trail holds no record of the rules in force when entry %d was written (%s.rules up to %s): which columns were masked or left out is unknown", e.ID, r.cfg.Schema, e.CommitLSN)
	}
	if p.Refused() {
		return p, nil
	}
	tr, err := rulesFor(e.Rules, e.Schema, e.Table)
	if err != nil {
		return nil, fmt.Errorf("plan entry %d: %w", e.ID, err)
	}
	t, err := loadTable(ctx, src, e.Schema, e.Table)
	if errors.Is(err, errNoTable) {
		p.refuse(CodeTableGone, "", "table %s no longer exists (%v)", qualified(e.Schema, e.Table), err)
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("plan entry %d: %w", e.ID, err)
	}
	if len(t.pk) == 0 {
		p.refuse(CodeNoKey, "", "table %s has no primary key now, so the row cannot be told apart from others", qualified(e.Schema, e.Table))
		return p, nil
	}
	a := &analysis{p: p, e: e, t: t, rules: tr}
	switch p.Kind {
	case RestoreDelete:
		a.restoreDelete()
	case RevertUpdate:
		a.revertUpdate()
	case UndoInsert:
		a.undoInsert()
	}
	if p.fidelityRefused() {
		return p, nil
	}
	if err := a.build(); err != nil {
		return nil, fmt.Errorf("plan entry %d: %w", e.ID, err)
	}
	if err := r.probe(ctx, src, p); err != nil {
		return nil, fmt.Errorf("plan entry %d: %w", e.ID, err)
	}
	return p, nil
}

// PlanID loads entry id from the trail and plans its restore on the
// source: Load, then Plan.
func (r *Restorer) PlanID(ctx context.Context, trail, src Querier, id int64) (*Plan, error) {
	e, err := r.Load(ctx, trail, id)
	if err != nil {
		return nil, err
	}
	return r.Plan(ctx, src, e)
}

// object parses an image, a JSON object; ok is false for NULL and for
// anything else.
func object(b []byte) (map[string]json.RawMessage, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, false
	}
	return m, true
}

func isNull(v json.RawMessage) bool { return string(v) == "null" }

// qualified is schema.table for messages, quoted as needed.
func qualified(schema, table string) string { return quoteName(schema) + "." + quoteName(table) }

// quoteName quotes a name for a message when it is not a plain lowercase
// identifier.
func quoteName(s string) string {
	plain := s != ""
	for i := 0; plain && i < len(s); i++ {
		c := s[i]
		plain = c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9'
	}
	if plain {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}
