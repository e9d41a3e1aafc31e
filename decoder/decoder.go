package decoder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/rules"
	"github.com/walscribe/walscribe/spool"
)

// Resolver answers what the stream does not carry: how to render a type that
// is not built in (domains, enums, arrays of them), and a table's primary
// key. It is called only when a Relation message arrives, never per row.
type Resolver interface {
	// ResolveType returns the rendering of a non-built-in type; nil when
	// the catalog no longer has the type (a lagging stream meets dropped
	// types), which renders as text. An error means the lookup failed: the
	// decoder guesses nothing and returns a LookupError.
	ResolveType(ctx context.Context, oid uint32) (*Type, error)
	// PrimaryKey returns the primary-key columns of a table, in key order;
	// none when it has no primary key.
	PrimaryKey(ctx context.Context, relOID uint32) ([]string, error)
	// GeneratedColumns returns a table's generated columns: stored ones,
	// which pgoutput does not send before PostgreSQL 18, and virtual ones
	// (PostgreSQL 18), which it never sends.
	GeneratedColumns(ctx context.Context, relOID uint32) ([]string, error)
}

// Decoder turns pgoutput messages (protocol version 1) into committed
// transactions of audit entries. It keeps the relations last seen in the
// stream and decodes each change with them. It is not safe for concurrent
// use.
type Decoder struct {
	res  Resolver
	rels map[uint32]*relation
	tx   *audit.Transaction
	// arena holds the JSON of the current transaction's entries, so that a
	// row costs a few allocations per slab rather than three per entry.
	arena   []byte
	chunk   int // capacity of the arena's current slab; grows within a transaction
	scratch []byte
	// changedIdx is reused for the changed columns of each update.
	changedIdx []int
	// changedCols is changedIdx in the table's order.
	changedCols []int
	// chg, oldT and newT are reused for each change message.
	chg        change
	oldT, newT tuple

	rules  *rules.Set // nil: every table recorded whole
	limits Limits

	spool *spool.Spool
	txn   *spool.Txn // the records of the current (not streamed) transaction
	// Streamed transactions (protocol v2): their chunks arrive between
	// Stream Start and Stop, interleaved with other transactions, until
	// Stream Commit or Abort.
	inStream  bool
	streamXid uint32
	streams   map[uint32]*stream
	// cur is where the change being decoded goes.
	cur    *spool.Txn
	curSub uint32

	truncs []pendingTrunc // partition TRUNCATEs held (context.go)
	// BridgeSchema is the schema of the context bridge in the source: its
	// table partition_truncates holds reports, never changes to record.
	BridgeSchema string
	// Incomplete lists the relations met since the caller last emptied it
	// whose entries lack what neither the stream nor today's catalog can
	// give; their entries are flagged.
	Incomplete []Incomplete
	// Fallbacks counts columns rendered as text because their type could
	// not be resolved.
	Fallbacks int
	// InvalidContexts counts context values that could not be stored as
	// given (kept as text instead); LastInvalid says what the last one was.
	InvalidContexts int
	LastInvalid     string
}

// stream is an in-progress streamed transaction.
type stream struct {
	txn  *spool.Txn
	rels map[uint32]*relation // relations sent inside it: its own until it commits
	// pending are context and event records waiting for the next change:
	// in a stream the server tags logical messages with the top-level
	// transaction, not the subtransaction that wrote them, and a context
	// message is written just before the changes of its statement, in the
	// same subtransaction. They take that change's subtransaction, so that
	// they go with it if it is rolled back.
	pending []spool.Record
}

// New returns a Decoder that resolves unknown types and keys with res and
// keeps transactions in sp (nil: a spool with the defaults).
func New(res Resolver, sp *spool.Spool) *Decoder {
	if sp == nil {
		sp = spool.New(spool.Config{})
	}
	d := &Decoder{res: res, rels: map[uint32]*relation{}, spool: sp, streams: map[uint32]*stream{}}
	d.SetLimits(Limits{})
	return d
}

type relation struct {
	schema string
	table  string
	cols   []column
	pk     []int // indexes of the primary-key columns; every column when there is none
	ident  []int // indexes of the replica identity columns
	all    []int // 0..len(cols)-1
	// absent are the generated columns the stream does not carry;
	// pkIncomplete, that one of them is in the primary key, which is then
	// replaced by the replica identity (every column sent).
	absent       []string
	pkIncomplete bool
	// untyped are columns rendered as text because today's catalog no
	// longer knows their type; gone, that it no longer knows the table.
	untyped []string
	gone    bool
	// reports: the bridge's table of partition TRUNCATE reports
	// (BridgeSchema.partition_truncates), read as reports, never recorded.
	reports bool

	// What the rules leave of the above: excluded columns removed, in the
	// order rows are rendered (jsonbOrder).
	rules      *rules.Table
	skip       bool // the table is excluded: record nothing
	rec        []int
	pkRec      []int
	identRec   []int
	anyMasked  bool
	anyExclude bool
}

// applyRules sets what the rules in force say of rel.
func (d *Decoder) applyRules(rel *relation) {
	t, ok := d.rules.For(rel.schema, rel.table)
	rel.skip, rel.rules = !ok, t
	if !ok {
		return
	}
	rel.anyMasked, rel.anyExclude = false, false
	for i := range rel.cols {
		c := &rel.cols[i]
		c.excluded = t.Exclude[c.name]
		c.mask = t.Mask[c.name]
		rel.anyMasked = rel.anyMasked || c.mask != rules.None
		rel.anyExclude = rel.anyExclude || c.excluded
	}
	keep := func(idx []int) []int {
		if !rel.anyExclude {
			return idx
		}
		var out []int
		for _, i := range idx {
			if !rel.cols[i].excluded {
				out = append(out, i)
			}
		}
		return out
	}
	rel.rec, rel.pkRec, rel.identRec = rel.jsonbOrder(keep(rel.all)), rel.jsonbOrder(keep(rel.pk)), rel.jsonbOrder(keep(rel.ident))
}

// jsonbOrder returns the columns idx in the order jsonb keeps an object's
// keys (by length, then bytes), which is how rows are rendered: the
// document is then already the text the server gives for it once stored,
// which the integrity log's leaf hashes are computed from.
func (rel *relation) jsonbOrder(idx []int) []int {
	out := slices.Clone(idx)
	slices.SortFunc(out, func(a, b int) int {
		na, nb := rel.cols[a].name, rel.cols[b].name
		if len(na) != len(nb) {
			return len(na) - len(nb)
		}
		return strings.Compare(na, nb)
	})
	return out
}

// SetRules makes rs the rules in force from the next change on, for the
// relations already seen too. nil records every table whole.
func (d *Decoder) SetRules(rs *rules.Set) {
	d.rules = rs
	for _, rel := range d.rels {
		d.applyRules(rel)
	}
}

type column struct {
	name     string
	key      []byte // `"name":`, encoded once
	typ      *Type
	excluded bool        // never stored
	mask     rules.Style // stored masked
}

// InTransaction reports whether a transaction has begun and not yet
// committed.
func (d *Decoder) InTransaction() bool { return d.tx != nil }

// Incomplete is a relation whose entries lack something, and what: Kind is
// the flag its entries carry (audit.FlagGeneratedAbsent,
// audit.FlagTypeUnknown, audit.FlagTableUnknown), Detail the columns.
type Incomplete struct {
	Kind     string
	Relation string // schema.table
	Detail   string
}

// ErrRelationGone is what a Resolver's PrimaryKey returns for a table the
// catalog no longer has (a stream that lags behind a DROP TABLE).
var ErrRelationGone = errors.New("the table is no longer in the catalog")

// ChangeError is an error decoding a row change, with the table it
// changes ("" when the relation is not known yet).
type ChangeError struct {
	Table string
	Err   error
}

func (e *ChangeError) Error() string {
	if e.Table == "" {
		return e.Err.Error()
	}
	return e.Table + ": " + e.Err.Error()
}

func (e *ChangeError) Unwrap() error { return e.Err }

// knownRelation is relation id as the stream described it, nil when it
// has not.
func (d *Decoder) knownRelation(id uint32) *relation {
	if st := d.streams[d.streamXid]; d.inStream && st != nil {
		if rel, ok := st.rels[id]; ok {
			return rel
		}
	}
	return d.rels[id]
}

// relationName is "schema.table" of relation id as the stream described
// it, "" when it has not.
func (d *Decoder) relationName(id uint32) string {
	rel := d.knownRelation(id)
	if rel == nil {
		return ""
	}
	return rel.schema + "." + rel.table
}

// TransactionLSN is the commit position of the transaction being decoded
// (from its Begin), 0 outside one or in a stream.
func (d *Decoder) TransactionLSN() pglogrepl.LSN {
	if d.tx == nil {
		return 0
	}
	return d.tx.CommitLSN
}

// Busy reports whether any transaction, streamed ones included, is in
// progress.
func (d *Decoder) Busy() bool { return d.tx != nil || d.inStream || len(d.streams) > 0 }

// Reset forgets the partly received transactions (streamed ones too) and
// every relation, as a new replication session must.
func (d *Decoder) Reset() {
	if d.txn != nil {
		d.txn.Discard()
	}
	for _, st := range d.streams {
		st.txn.Discard()
	}
	d.tx, d.txn, d.inStream = nil, nil, false
	d.streams = map[uint32]*stream{}
	d.rels = map[uint32]*relation{}
	d.truncs = d.truncs[:0]
}

// target points cur at the transaction a change with (sub)transaction id
// xid (0 outside a stream) belongs to.
func (d *Decoder) target(xid uint32) error {
	if d.inStream {
		st := d.streams[d.streamXid]
		if st == nil {
			return fmt.Errorf("change inside stream %d without its start", d.streamXid)
		}
		d.cur, d.curSub = st.txn, xid
		return nil
	}
	if d.tx == nil {
		return errors.New("change outside a transaction")
	}
	d.cur, d.curSub = d.txn, d.tx.Xid
	return nil
}

// add appends an entry to the current transaction.
func (d *Decoder) add(e audit.Entry) error {
	e.HashLargeKey() // the whole row of a wide table without a primary key
	if err := d.flushPending(d.curSub); err != nil {
		return err
	}
	return d.cur.Add(spool.Record{Subxid: d.curSub, Entry: e})
}

// addMessage appends a context or event record of (sub)transaction xid. In
// a stream, a record tagged with the top-level transaction waits for the
// next change to learn its subtransaction.
func (d *Decoder) addMessage(r spool.Record, xid uint32) error {
	if d.inStream && xid == d.streamXid {
		st := d.streams[d.streamXid]
		st.pending = append(st.pending, r)
		return nil
	}
	r.Subxid = d.curSub
	return d.cur.Add(r)
}

func (d *Decoder) flushPending(subxid uint32) error {
	if !d.inStream {
		return nil
	}
	st := d.streams[d.streamXid]
	for _, r := range st.pending {
		r.Subxid = subxid
		if err := st.txn.Add(r); err != nil {
			return err
		}
	}
	st.pending = st.pending[:0]
	return nil
}

// finish ends a transaction's records into tx.
func finish(txn *spool.Txn, tx *audit.Transaction) error {
	tx.Count = txn.Count()
	entries, spilled, err := txn.Finish()
	if err != nil {
		return err
	}
	tx.Entries, tx.Spilled = entries, spilled
	return nil
}

// Decode handles one pgoutput message (protocol version 1 or 2). It
// returns a transaction when the message ends one (Commit, Stream Commit) or
// is an event kept outside any transaction; otherwise nil.
func (d *Decoder) Decode(ctx context.Context, data []byte) (*audit.Transaction, error) {
	if len(data) == 0 {
		return nil, errors.New("empty pgoutput message")
	}
	switch data[0] {
	case 'I', 'U', 'D':
		if err := d.chg.parse(data, d.inStream, &d.oldT, &d.newT); err != nil {
			return nil, &ChangeError{Table: d.relationName(d.chg.relID), Err: fmt.Errorf("parse pgoutput message %q: %w", data[0], err)}
		}
		var err error
		if rel := d.knownRelation(d.chg.relID); rel != nil && rel.reports {
			err = d.report(rel, &d.chg) // reports of one cascade come together: nothing flushed
		} else if err = d.flushTruncs(d.current()); err == nil {
			err = d.decodeChange(&d.chg)
		}
		if err != nil {
			return nil, &ChangeError{Table: d.relationName(d.chg.relID), Err: err}
		}
		return nil, nil
	}
	msg, err := pglogrepl.ParseV2(data, d.inStream)
	if err != nil {
		return nil, fmt.Errorf("parse pgoutput message %q: %w", data[0], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.TruncateMessageV2:
		var roots []string
		for _, id := range m.RelationIDs {
			roots = append(roots, d.relationName(id))
		}
		if err := d.flushTruncs(d.current(), roots...); err != nil {
			return nil, err
		}
	case *pglogrepl.RelationMessageV2, *pglogrepl.TypeMessageV2, *pglogrepl.OriginMessage:
		// Descriptions the server sends before the TRUNCATE they describe.
	case *pglogrepl.StreamStartMessageV2, *pglogrepl.StreamStopMessageV2:
		// A chunk may end among the reports of a root's TRUNCATE, which
		// comes in the transaction's next chunk.
	case *pglogrepl.StreamCommitMessageV2:
		if err := d.flushTruncs(m.Xid); err != nil {
			return nil, err
		}
	case *pglogrepl.StreamAbortMessageV2:
		if err := d.flushTruncs(m.Xid); err != nil {
			return nil, err
		}
	default:
		if err := d.flushTruncs(d.current()); err != nil {
			return nil, err
		}
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		d.tx = &audit.Transaction{Xid: m.Xid, CommitLSN: m.FinalLSN, CommittedAt: m.CommitTime}
		d.txn = d.spool.Begin()
		d.arena, d.chunk = nil, 0
	case *pglogrepl.CommitMessage:
		tx := d.tx
		if tx == nil {
			return nil, fmt.Errorf("commit at %s without begin", m.CommitLSN)
		}
		tx.CommitLSN, tx.EndLSN, tx.CommittedAt = m.CommitLSN, m.TransactionEndLSN, m.CommitTime
		err := finish(d.txn, tx)
		d.tx, d.txn, d.arena = nil, nil, nil
		if err != nil {
			return nil, err
		}
		return tx, nil
	case *pglogrepl.StreamStartMessageV2:
		d.inStream, d.streamXid = true, m.Xid
		if d.streams[m.Xid] == nil {
			d.streams[m.Xid] = &stream{txn: d.spool.Begin(), rels: map[uint32]*relation{}}
		}
	case *pglogrepl.StreamStopMessageV2:
		d.inStream = false
	case *pglogrepl.StreamAbortMessageV2:
		st := d.streams[m.Xid]
		if st == nil {
			return nil, nil // nothing of it was streamed here
		}
		if m.SubXid == m.Xid || m.SubXid == 0 {
			st.txn.Discard()
			delete(d.streams, m.Xid)
			return nil, nil
		}
		st.txn.Abort(m.SubXid)
	case *pglogrepl.StreamCommitMessageV2:
		st := d.streams[m.Xid]
		if st == nil {
			return nil, fmt.Errorf("stream commit of transaction %d without its start", m.Xid)
		}
		delete(d.streams, m.Xid)
		for _, r := range st.pending {
			r.Subxid = m.Xid
			if err := st.txn.Add(r); err != nil {
				return nil, err
			}
		}
		// What was sent inside it now holds for everyone.
		for id, rel := range st.rels {
			d.rels[id] = rel
		}
		tx := &audit.Transaction{Xid: m.Xid, CommitLSN: m.CommitLSN, EndLSN: m.TransactionEndLSN, CommittedAt: m.CommitTime}
		if err := finish(st.txn, tx); err != nil {
			return nil, err
		}
		return tx, nil
	case *pglogrepl.RelationMessageV2:
		rel, err := d.relation(ctx, &m.RelationMessage)
		if err != nil {
			return nil, err
		}
		if st := d.streams[d.streamXid]; d.inStream && st != nil {
			st.rels[m.RelationID] = rel
		} else {
			d.rels[m.RelationID] = rel
		}
	case *pglogrepl.TruncateMessageV2:
		for _, id := range m.RelationIDs {
			rel, err := d.relationFor(id, m.Xid, audit.Truncate)
			if err != nil {
				return nil, err
			}
			if rel != nil {
				err := d.add(audit.Entry{Schema: rel.schema, Table: rel.table, Action: audit.Truncate, New: truncateOptions[m.Option&3], Class: rel.rules.Retention})
				if err != nil {
					return nil, err
				}
			}
		}
	case *pglogrepl.LogicalDecodingMessageV2:
		return d.message(&m.LogicalDecodingMessage, m.Xid)
	}
	// Type and Origin messages carry nothing to record.
	return nil, nil
}

// report handles a change to the bridge's table of reports: an insert is
// a partition TRUNCATE to hold; nothing of it is recorded as a change.
func (d *Decoder) report(rel *relation, c *change) error {
	if c.kind == 'I' {
		return d.holdTruncate(rel, c)
	}
	return d.target(c.xid)
}

// decodeChange records an insert, update or delete.
func (d *Decoder) decodeChange(c *change) error {
	action := audit.Delete
	switch c.kind {
	case 'I':
		action = audit.Insert
	case 'U':
		action = audit.Update
	}
	rel, err := d.relationFor(c.relID, c.xid, action)
	if rel == nil {
		return err
	}
	switch c.kind {
	case 'I':
		return d.addRow(rel, audit.Entry{Schema: rel.schema, Table: rel.table, Action: audit.Insert,
			New: d.object(rel, rel.rec, c.new, nil),
			PK:  d.object(rel, rel.pkRec, c.new, nil)})
	case 'U':
		return d.update(rel, c)
	default:
		cols := rel.rec
		if c.oldTag == 'K' {
			cols = rel.identRec // the key only; the rest is "not sent", not NULL
		}
		return d.addRow(rel, audit.Entry{Schema: rel.schema, Table: rel.table, Action: audit.Delete,
			Old: d.object(rel, cols, c.old, nil),
			PK:  d.object(rel, rel.pkRec, c.old, nil)})
	}
}

// addRow adds the entry of a row change of rel, flagged with what the
// stream did not carry of the row.
func (d *Decoder) addRow(rel *relation, e audit.Entry) error {
	if len(rel.absent) > 0 {
		e.Flag(audit.FlagGeneratedAbsent)
	}
	if rel.pkIncomplete {
		e.Flag(audit.FlagPKIncomplete)
	}
	if len(rel.untyped) > 0 {
		e.Flag(audit.FlagTypeUnknown)
	}
	if rel.gone {
		e.Flag(audit.FlagTableUnknown)
	}
	e.Class = rel.rules.Retention
	return d.add(e)
}

// LookupError is a Resolver call that failed: the relation cannot be
// decoded as it should (its key, a type's rendering) until it succeeds.
// Decoding the message again may succeed; nothing is guessed meanwhile.
type LookupError struct {
	Relation string // schema.table
	Err      error
}

func (e *LookupError) Error() string {
	return fmt.Sprintf("look up %s in the source's catalog: %v", e.Relation, e.Err)
}

func (e *LookupError) Unwrap() error { return e.Err }

func (d *Decoder) relation(ctx context.Context, m *pglogrepl.RelationMessage) (*relation, error) {
	rel := &relation{schema: m.Namespace, table: m.RelationName, cols: make([]column, len(m.Columns)), all: make([]int, len(m.Columns)),
		reports: m.Namespace == d.BridgeSchema && m.RelationName == truncatesTable}
	for i, c := range m.Columns {
		t, ok := BuiltinType(c.DataType)
		if !ok {
			var err error
			if t, err = d.res.ResolveType(ctx, c.DataType); err != nil {
				return nil, &LookupError{Relation: m.Namespace + "." + m.RelationName, Err: err}
			}
			if t == nil { // a type the catalog no longer knows: text
				t = &stringType
				d.Fallbacks++
				rel.untyped = append(rel.untyped, c.Name)
			}
		}
		key := AppendString(nil, []byte(c.Name))
		rel.cols[i] = column{name: c.Name, key: append(key, ':'), typ: t}
		rel.all[i] = i
		if c.Flags&1 != 0 {
			rel.ident = append(rel.ident, i)
		}
	}
	name := m.Namespace + "." + m.RelationName
	keys, err := d.res.PrimaryKey(ctx, m.RelationID)
	switch {
	case errors.Is(err, ErrRelationGone):
		// Dropped since, or created by a transaction streamed while still
		// in progress (no other session sees it yet): keyed by every
		// column, flagged.
		rel.gone = true
		d.Incomplete = append(d.Incomplete, Incomplete{Kind: audit.FlagTableUnknown, Relation: name, Detail: "keyed by every column"})
	case err != nil:
		return nil, &LookupError{Relation: name, Err: err}
	}
	if len(rel.untyped) > 0 {
		d.Incomplete = append(d.Incomplete, Incomplete{Kind: audit.FlagTypeUnknown, Relation: name, Detail: strings.Join(rel.untyped, ", ")})
	}
	generated, err := d.res.GeneratedColumns(ctx, m.RelationID)
	if err != nil {
		return nil, &LookupError{Relation: m.Namespace + "." + m.RelationName, Err: err}
	}
	for _, g := range generated {
		if !slices.ContainsFunc(rel.cols, func(c column) bool { return c.name == g }) {
			rel.absent = append(rel.absent, g)
		}
	}
	if len(rel.absent) > 0 {
		d.Incomplete = append(d.Incomplete, Incomplete{Kind: audit.FlagGeneratedAbsent, Relation: name, Detail: strings.Join(rel.absent, ", ")})
	}
	for _, k := range keys {
		found := false
		for i, c := range rel.cols {
			if c.name == k {
				rel.pk, found = append(rel.pk, i), true
			}
		}
		if !found { // a generated key column the stream does not carry
			rel.pk, rel.pkIncomplete = nil, true
			break
		}
	}
	if len(rel.pk) == 0 {
		// No primary key (or the table is gone from today's catalog): the
		// replica identity columns, which under REPLICA IDENTITY FULL are
		// all of them.
		rel.pk = rel.ident
	}
	if len(rel.pk) == 0 {
		rel.pk = rel.all
	}
	d.applyRules(rel)
	return rel, nil
}

var stringType = Type{Kind: KindString}

// relationFor returns the relation a change of action a applies to, and points
// the decoder at the transaction it belongs to; nil when the rules record no
// such change (an excluded table, an action left out).
func (d *Decoder) relationFor(relID, xid uint32, a audit.Action) (*relation, error) {
	if err := d.target(xid); err != nil {
		return nil, fmt.Errorf("relation %d: %w", relID, err)
	}
	rel, ok := (*relation)(nil), false
	if st := d.streams[d.streamXid]; d.inStream && st != nil {
		rel, ok = st.rels[relID]
	}
	if !ok {
		rel, ok = d.rels[relID]
	}
	if !ok {
		return nil, fmt.Errorf("change to relation %d before its Relation message", relID)
	}
	if rel.skip || !rel.rules.Actions.Has(a) {
		return nil, nil
	}
	return rel, nil
}

// update records an update: both images (or only the changed columns, with
// diff: changes), and nothing at all when no recorded column changed and
// the rules skip such updates.
func (d *Decoder) update(rel *relation, m *change) error {
	e := audit.Entry{Schema: rel.schema, Table: rel.table, Action: audit.Update}
	old := m.old
	switch {
	case m.oldTag == 'K':
		// Not REPLICA IDENTITY FULL and the key changed: the old tuple
		// holds the key columns only, the others are "not sent", which is
		// not NULL. Nothing to compare or fill unchanged values from.
		e.Old = d.object(rel, rel.identRec, old, nil)
		e.New = d.object(rel, rel.rec, m.new, nil)
		e.PK = d.object(rel, rel.pkRec, m.new, nil)
	case old == nil:
		// No old image (not REPLICA IDENTITY FULL): what changed is unknown.
		e.New = d.object(rel, rel.rec, m.new, nil)
		e.PK = d.object(rel, rel.pkRec, m.new, nil)
	default:
		d.changedIdx = changedColumns(rel, old, m.new, d.changedIdx[:0])
		if len(d.changedIdx) == 0 && rel.rules.SkipUnchangedUpdates {
			return nil
		}
		// changed lists them in the table's order.
		d.changedCols = append(d.changedCols[:0], d.changedIdx...)
		slices.Sort(d.changedCols)
		e.Changed = make([]string, len(d.changedCols))
		for i, c := range d.changedCols {
			e.Changed[i] = rel.cols[c].name
		}
		cols := rel.rec
		if rel.rules.Diff == rules.Changes {
			cols = d.changedIdx
		}
		e.Old = d.object(rel, cols, old, nil)
		e.New = d.object(rel, cols, m.new, old)
		e.PK = d.object(rel, rel.pkRec, m.new, old)
	}
	return d.addRow(rel, e)
}

// value returns column i of t, taking an unchanged TOASTed value ('u') from
// old, which REPLICA IDENTITY FULL always sends whole.
func value(t, old *tuple, i int) (*tupleColumn, bool) {
	if t == nil || i >= len(t.cols) {
		return nil, false
	}
	c := &t.cols[i]
	if c.kind == colUnchanged {
		if old == nil || i >= len(old.cols) || old.cols[i].kind == colUnchanged {
			return nil, false
		}
		c = &old.cols[i]
	}
	return c, true
}

// object renders the columns idx of a tuple as a JSON object.
func (d *Decoder) object(rel *relation, idx []int, t, old *tuple) []byte {
	buf := append(d.scratch[:0], '{')
	first := true
	for _, i := range idx {
		buf, first = appendColumn(buf, rel, i, t, old, first)
	}
	buf = append(buf, '}')
	d.scratch = buf
	return d.keep(buf)
}

func appendColumn(buf []byte, rel *relation, i int, t, old *tuple, first bool) ([]byte, bool) {
	c, ok := value(t, old, i)
	if !ok {
		return buf, first // not sent (unchanged TOAST without an old image): omit, never null
	}
	if !first {
		buf = append(buf, ',')
	}
	col := &rel.cols[i]
	buf = append(buf, col.key...)
	switch c.kind {
	case colText:
		if col.mask != rules.None {
			buf = rel.rules.AppendMasked(buf, col.mask, c.data)
			break
		}
		buf = AppendValue(buf, col.typ, c.data)
	case colBinary:
		buf = AppendString(buf, c.data)
	default:
		buf = append(buf, "null"...)
	}
	return buf, false
}

// keep copies b into the transaction's arena.
func (d *Decoder) keep(b []byte) []byte {
	if len(d.arena)+len(b) > cap(d.arena) {
		// Slabs start small, so a one-row transaction costs little, and
		// double up to 64 KiB, so a large one costs few allocations.
		d.chunk = min(max(2*d.chunk, 1<<10), 64<<10)
		d.arena = make([]byte, 0, max(d.chunk, len(b)))
	}
	start := len(d.arena)
	d.arena = append(d.arena, b...)
	return d.arena[start:len(d.arena):len(d.arena)]
}

// changedColumns appends to out the recorded columns whose value differs
// between old and new.
func changedColumns(rel *relation, old, new *tuple, out []int) []int {
	for _, i := range rel.rec {
		n, ok := value(new, old, i)
		if !ok {
			continue
		}
		o, ok := value(old, nil, i)
		if !ok || o.kind != n.kind || string(o.data) != string(n.data) {
			out = append(out, i)
		}
	}
	return out
}

// truncateOptions is the New image of a truncate entry, by pgoutput's option
// bits (1: CASCADE, 2: RESTART IDENTITY).
var truncateOptions = [4][]byte{
	[]byte(`{"cascade":false,"restart_identity":false}`),
	[]byte(`{"cascade":true,"restart_identity":false}`),
	[]byte(`{"cascade":false,"restart_identity":true}`),
	[]byte(`{"cascade":true,"restart_identity":true}`),
}
