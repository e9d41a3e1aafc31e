// Package audit holds the domain types shared by the decoder and the sinks:
// an audit entry, its action, and the committed transaction that carries them.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pglogrepl"
	"golang.org/x/text/unicode/norm"

	"github.com/walscribe/walscribe/jsonb"
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
	// Flags say what had to change for the entry to be stored, or why it
	// could not be stored as decoded (nil: stored as decoded).
	Flags []string
	// Ctx is who acted and from where; nil when nothing is known. Entries
	// of one transaction share it until the application changes it.
	Ctx *Context
	// Class is the entry's retention class: its table's retention period
	// (such as 90d or 7y) when written; "" for DefaultClass.
	Class string
}

// DefaultClass is the retention class of entries kept until a cleanup
// names them: those of tables without a retention period.
const DefaultClass = "default"

// RetentionClass is the class the entry is stored with.
func (e *Entry) RetentionClass() string {
	if e.Class == "" {
		return DefaultClass
	}
	return e.Class
}

// Actions only walscribe itself writes: the row actions and its own
// records. An application event never takes one of these.
var reserved = map[string]bool{"insert": true, "update": true, "delete": true, "truncate": true,
	"gap": true, "pruned": true, "rules": true}

// NormalizeAction is an event's action as walscribe (and, more simply, the
// bridge's log_event in SQL) compares it with the reserved words: in NFKC
// form (full-width letters become plain ones), without white space, control
// and format characters (zero-width spaces, soft hyphens, byte order marks)
// and combining marks anywhere in it, in lower case.
func NormalizeAction(a string) string {
	a = strings.ToLower(norm.NFKC.String(a))
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Mn, unicode.Me) {
			return -1
		}
		return r
	}, a)
}

// Reserved reports whether an event's action, normalised, is one only
// walscribe writes.
func Reserved(a string) bool { return reserved[NormalizeAction(a)] }

// Flags of an entry.
const (
	// FlagJSONReencoded: a JSON value held what jsonb refuses (\u0000, a
	// lone surrogate, a number beyond numeric's range, too deep a nesting,
	// text that is not JSON) and was re-encoded into what it accepts.
	FlagJSONReencoded = "json_reencoded"
	// FlagTextEscaped: text held NUL or invalid UTF-8, escaped.
	FlagTextEscaped = "text_escaped"
	// FlagPKHashed: the key was too large for the trail's index (a wide row
	// of a table without a primary key) and is stored as its SHA-256; the
	// row is whole in old and new.
	FlagPKHashed = "pk_hashed"
	// FlagUnstorable: the server refused the entry as decoded for a reason
	// not foreseen; its values are stored as escaped text.
	FlagUnstorable = "unstorable"
	// FlagReservedAction: an event claimed an action only walscribe writes
	// (insert, update, delete, truncate, gap, ...): it is stored as
	// "event:<action>", never as a change.
	FlagReservedAction = "reserved_action"
	// FlagTruncated: a context field or an event's data was larger than the
	// configured limit; the JSON keeps its size, SHA-256 and beginning.
	FlagTruncated = "truncated"
	// FlagNoContext: a row change arrived without the context bridge's
	// message before it in its transaction: its trigger was missing or
	// disabled, or a session kept the message from being written. Who made
	// the change, and what the database saw, are unknown.
	FlagNoContext = "no_context"
	// FlagGeneratedAbsent: the table has stored generated columns, which the
	// stream does not carry before PostgreSQL 18: old and new lack them.
	FlagGeneratedAbsent = "generated_absent"
	// FlagPKIncomplete: a primary-key column is one of those, so pk holds
	// the replica identity (every column sent) instead of the key.
	FlagPKIncomplete = "pk_incomplete"
	// FlagPartitionTruncate: a TRUNCATE of one partition (new names it),
	// which PostgreSQL does not stream when publishing through the root:
	// recorded from the context bridge's report, under the root's name.
	FlagPartitionTruncate = "partition_truncate"
	// FlagTypeUnknown: a column's type was not in the source's catalog when
	// walscribe decoded the change (dropped since, or created by a
	// transaction streamed while in progress), so its value is stored as
	// the text the server sent, not as its type renders.
	FlagTypeUnknown = "type_unknown"
	// FlagTableUnknown: the table was not in the catalog (dropped since, or
	// created by a transaction streamed while in progress): its primary key
	// unknown, pk holds every column.
	FlagTableUnknown = "table_unknown"
)

// IsRowAction reports whether a is one of the row actions the stream
// carries (insert, update, delete, truncate).
func IsRowAction(a Action) bool {
	return a == Insert || a == Update || a == Delete || a == Truncate
}

// Flag adds f to the entry's flags, once.
func (e *Entry) Flag(f string) {
	for _, g := range e.Flags {
		if g == f {
			return
		}
	}
	e.Flags = append(e.Flags, f)
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
	DBUser          string       // the role that wrote: SET ROLE's, else the login role
	LoginUser       string       // the role that logged in, when DBUser is another
	ClientAddr      netip.Prefix // inet_client_addr()
	ApplicationName string
	// Extra is a JSON object of everything else: the application's own
	// context, and what could not be read (invalid_context, invalid_ip).
	Extra []byte
	// Flags say what had to change in the context for it to be stored;
	// they are stored with the flags of every entry it applies to.
	Flags []string `json:",omitempty"`
}

// Flag adds f to the context's flags, once.
func (c *Context) Flag(f string) {
	for _, g := range c.Flags {
		if g == f {
			return
		}
	}
	c.Flags = append(c.Flags, f)
}

// MakeStorable changes, in place, what the server would refuse of c: NUL
// or invalid UTF-8 in text, indexed fields longer than the index takes,
// JSON that jsonb does not take. Each kind of change is flagged.
func (c *Context) MakeStorable() {
	for _, s := range []*string{&c.ActorID, &c.Actor, &c.UserAgent, &c.RequestID, &c.DBUser, &c.LoginUser, &c.ApplicationName} {
		if t := jsonb.Text(*s); t != *s {
			*s = t
			c.Flag(FlagTextEscaped)
		}
	}
	for _, s := range []*string{&c.ActorID, &c.RequestID} {
		if len(*s) > MaxIndexedContext {
			*s = strings.ToValidUTF8((*s)[:MaxIndexedContext], "")
			c.Flag(FlagTextClipped)
		}
	}
	if len(c.Extra) > jsonb.MaxBytes {
		c.Extra = jsonb.Stub(c.Extra)
		c.Flag(FlagTruncated)
	} else if c.Extra != nil {
		if out, ch := jsonb.Sanitize(c.Extra); ch {
			c.Extra = out
			c.Flag(FlagJSONReencoded)
		}
	}
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

// Limits of what the trail's indexes take: a btree row holds at most about
// 2.7 kB, and pk, actor_id and request_id are indexed.
const (
	MaxKeyBytes       = 1024 // pk, as JSON text; larger keys are stored hashed
	MaxIndexedContext = 1024 // actor_id and request_id, in bytes; longer ones are clipped
	// MaxNameBytes bounds schema_name, table_name and action, which the
	// row history index holds beside pk (an event's target and action are
	// anyone's words).
	MaxNameBytes = 256
)

// FlagTextClipped: an indexed context field (actor_id, request_id) was
// longer than the index takes, and was clipped.
const FlagTextClipped = "text_clipped"

// MakeStorable changes, in place, what the server would refuse of e — JSON
// jsonb does not take, NUL or invalid UTF-8 in text, a key too large for the
// trail's index, indexed context fields too long — and flags each kind of
// change. It reports whether it changed anything. A shared Ctx is copied
// before it is changed.
func (e *Entry) MakeStorable() bool {
	changed := false
	for _, j := range []*[]byte{&e.PK, &e.Old, &e.New} {
		if *j == nil {
			continue
		}
		if len(*j) > jsonb.MaxBytes {
			*j = jsonb.Stub(*j)
			e.Flag(FlagTruncated)
			changed = true
			continue
		}
		if out, ch := jsonb.Sanitize(*j); ch {
			*j = out
			e.Flag(FlagJSONReencoded)
			changed = true
		}
	}
	text := func(s *string) {
		if t := jsonb.Text(*s); t != *s {
			*s = t
			e.Flag(FlagTextEscaped)
			changed = true
		}
	}
	action := string(e.Action)
	for _, s := range []*string{&e.Schema, &e.Table, &action} {
		text(s)
		if len(*s) > MaxNameBytes {
			*s = strings.ToValidUTF8((*s)[:MaxNameBytes], "")
			e.Flag(FlagTextClipped)
			changed = true
		}
	}
	e.Action = Action(action)
	for i := range e.Changed {
		text(&e.Changed[i])
	}
	if e.Ctx != nil {
		c := *e.Ctx
		c.Flags = nil
		c.MakeStorable()
		if c.Flags != nil {
			for _, f := range c.Flags {
				e.Flag(f)
			}
			c.Flags = e.Ctx.Flags
			e.Ctx = &c
			changed = true
		}
	}
	if e.HashLargeKey() {
		changed = true
	}
	return changed
}

// HashLargeKey replaces a key too large for the trail's index (the whole
// row of a wide table without a primary key) with its SHA-256, flagged;
// the row stays whole in old and new. It reports whether it did.
func (e *Entry) HashLargeKey() bool {
	if len(e.PK) <= MaxKeyBytes {
		return false
	}
	sum := sha256.Sum256(e.PK)
	e.PK = []byte(`{"sha256": "` + hex.EncodeToString(sum[:]) + `"}`)
	e.Flag(FlagPKHashed)
	return true
}

// Quarantine stores what the server refused of e for a reason
// MakeStorable did not foresee: every JSON value becomes a JSON string of
// its text, and the entry is flagged unstorable. Nothing of it is dropped.
func (e *Entry) Quarantine() {
	e.MakeStorable()
	asText := func(b []byte) []byte {
		s := jsonb.String(string(b))
		if len(s) > jsonb.MaxBytes { // escaping can grow it six-fold
			e.Flag(FlagTruncated)
			return jsonb.Stub(b)
		}
		return s
	}
	for _, j := range []*[]byte{&e.PK, &e.Old, &e.New} {
		if *j != nil {
			*j = asText(*j)
		}
	}
	e.HashLargeKey()
	if e.Ctx != nil && e.Ctx.Extra != nil {
		c := *e.Ctx
		c.Extra = asText(c.Extra)
		e.Ctx = &c
	}
	e.Flag(FlagUnstorable)
}
