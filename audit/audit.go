// Package audit holds the domain types shared by the decoder and the sinks:
// an audit entry, its action, and the committed transaction that carries them.
package audit

import (
	"net/netip"
	"time"

	"github.com/jackc/pglogrepl"
)

// Action is what happened to a row, or an application-defined event word.
type Action string

// The row actions captured from the replication stream.
const (
	Insert   Action = "insert"
	Update   Action = "update"
	Delete   Action = "delete"
	Truncate Action = "truncate"
)

// Entry is one audit record: a row change or an event. JSON fields hold
// encoded JSON (nil means SQL NULL).
type Entry struct {
	Seq     int32 // order within the transaction, from 1
	Schema  string
	Table   string
	Action  Action
	PK      []byte   // JSON object: primary-key column → value
	Old     []byte   // JSON object: the row before (update, delete)
	New     []byte   // JSON object: the row after (insert, update); truncate options
	Changed []string // columns whose value changed (update)
	// Ctx is who acted and from where; nil when nothing is known. Entries
	// of one transaction share it until the application changes it.
	Ctx *Context
}

// Context is what the application said about who is acting (set through
// session variables and carried by the context bridge), and what the
// database itself saw. Empty strings and invalid addresses are unknown
// (NULL).
type Context struct {
	ActorID         string
	Actor           string
	IP              netip.Prefix // the client as the application reports it
	UserAgent       string
	RequestID       string
	DBUser          string       // current_user
	ClientAddr      netip.Prefix // inet_client_addr()
	ApplicationName string
	// Extra is a JSON object of everything else: the application's own
	// context, and what could not be read (invalid_context, invalid_ip).
	Extra []byte
}

// Transaction is one committed source transaction and its entries, in WAL
// order. A transaction with no entries still carries progress (EndLSN).
type Transaction struct {
	Xid         uint32
	CommitLSN   pglogrepl.LSN // the commit record's LSN; entries are keyed by it
	EndLSN      pglogrepl.LSN // the end of the commit record: the position to acknowledge
	CommittedAt time.Time
	Entries     []Entry
	// Spilled, when set, holds the entries instead of Entries: a
	// transaction too large to keep in memory, read back from a file.
	Spilled EntryReader
	// Count is the number of entries, in Entries or Spilled.
	Count int
	// Rules, when set, is a record of the rules in force from RulesFrom on
	// (JSON), carried in order with the transactions; such an item has no
	// entries and moves no progress.
	Rules       []byte
	RulesFrom   pglogrepl.LSN
	RulesReason string
}

// EntryReader reads the entries of a transaction kept out of memory.
type EntryReader interface {
	// Next returns the next entry, valid until the next call; nil at the
	// end.
	Next() (*Entry, error)
	// Rewind starts again from the first entry.
	Rewind() error
	// Close releases what holds the entries.
	Close() error
}

// Len is the number of entries of the transaction.
func (t *Transaction) Len() int {
	if t.Spilled != nil {
		return t.Count
	}
	return len(t.Entries)
}

// Gap is a stretch of the source's history the trail cannot hold.
type Gap struct {
	Reason string        // slot_missing, slot_lost, slot_ahead
	From   pglogrepl.LSN // the last position stored before the gap
	To     pglogrepl.LSN // where the trail resumes; 0 when it does not
	Detail string        // what happened, for people
}
