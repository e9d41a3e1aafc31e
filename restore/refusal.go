package restore

import (
	"fmt"
	"strings"
)

// Code classifies why an entry cannot be restored.
type Code string

// The reasons a plan is refused.
const (
	// CodeUnsupported: the entry is not a row change this package undoes
	// (a truncate, an application event, walscribe's own records), or the
	// change cannot be made (a GENERATED ALWAYS identity column to set).
	CodeUnsupported Code = "unsupported"
	// CodeFlagged: the entry's flags say its images are not the row as it
	// was (re-encoded, escaped, truncated, quarantined as text, a type or
	// table unknown when decoded, a key replaced by the replica identity).
	CodeFlagged Code = "flagged"
	// CodeNoRules: the trail holds no record of the rules in force when
	// the entry was written, so which columns were masked or left out is
	// unknown.
	CodeNoRules Code = "no_rules"
	// CodeMasked: a value needed is masked (a keyed hash or "[redacted]").
	CodeMasked Code = "masked"
	// CodeExcluded: the rules left a column of the table out of the images.
	CodeExcluded Code = "excluded"
	// CodeIncomplete: an image lacks what the restore needs (no old image,
	// the key only, no changed columns).
	CodeIncomplete Code = "incomplete_image"
	// CodeLossy: a value was stored in a form that does not convert back
	// to the value it was (a json document that jsonb refuses, kept as a
	// string).
	CodeLossy Code = "lossy_value"
	// CodeTableGone: the table no longer exists (or is not a table).
	CodeTableGone Code = "table_gone"
	// CodeNoKey: the table has no primary key now, so the row cannot be
	// told apart.
	CodeNoKey Code = "no_primary_key"
	// CodeColumnGone: a column the restore needs no longer exists.
	CodeColumnGone Code = "column_gone"
	// CodeColumnMissing: a column of the table is not in the image and
	// cannot be left to its default.
	CodeColumnMissing Code = "column_missing"
	// CodeGenerated: a column to set is a generated column now.
	CodeGenerated Code = "generated"
	// CodeConversion: the server does not take a stored value as the
	// column's type now.
	CodeConversion Code = "conversion"
	// CodeChangedSince: the row is no longer as the entry left it (or, for
	// a delete, a row with its key exists again).
	CodeChangedSince Code = "changed_since"
)

// Refusal is one reason a plan cannot be applied.
type Refusal struct {
	Code   Code
	Column string // the column concerned, "" when none
	Reason string // for people: what is wrong and, where there is one, what to do
}

func (r Refusal) String() string { return string(r.Code) + ": " + r.Reason }

// RefusedError is returned by Apply (and Plan.Err) for a plan that is
// refused: the entry cannot be restored faithfully, or the row changed
// since. Nothing was changed.
type RefusedError struct {
	EntryID  int64
	Refusals []Refusal
}

func (e *RefusedError) Error() string {
	reasons := make([]string, len(e.Refusals))
	for i, r := range e.Refusals {
		reasons[i] = r.Reason
	}
	return fmt.Sprintf("entry %d cannot be restored: %s", e.EntryID, strings.Join(reasons, "; "))
}

// Has reports whether one of the refusals has code c.
func (e *RefusedError) Has(c Code) bool {
	for _, r := range e.Refusals {
		if r.Code == c {
			return true
		}
	}
	return false
}
