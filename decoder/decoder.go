package decoder

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/rules"
)

// Resolver answers what the stream does not carry: how to render a type that
// is not built in (domains, enums, arrays of them), and a table's primary
// key. It is called only when a Relation message arrives, never per row.
type Resolver interface {
	// ResolveType returns the rendering of a non-built-in type.
	ResolveType(ctx context.Context, oid uint32) (*Type, error)
	// PrimaryKey returns the primary-key columns of a table, in key order;
	// none when it has no primary key.
	PrimaryKey(ctx context.Context, relOID uint32) ([]string, error)
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

	ctx   *audit.Context // the context in force in the current transaction
	rules *rules.Set     // nil: every table recorded whole

	// Fallbacks counts columns rendered as text because their type could
	// not be resolved.
	Fallbacks int
	// InvalidContexts counts context values that could not be stored as
	// given (kept as text instead); LastInvalid says what the last one was.
	InvalidContexts int
	LastInvalid     string
}

// New returns a Decoder that resolves unknown types and keys with res.
func New(res Resolver) *Decoder {
	return &Decoder{res: res, rels: map[uint32]*relation{}}
}

type relation struct {
	schema string
	table  string
	cols   []column
	pk     []int // indexes of the primary-key columns; every column when there is none
	ident  []int // indexes of the replica identity columns
	all    []int // 0..len(cols)-1

	// What the rules leave of the above: excluded columns removed.
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
	rel.rec, rel.pkRec, rel.identRec = keep(rel.all), keep(rel.pk), keep(rel.ident)
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

// Reset forgets the partly received transaction and every relation, as a new
// replication session must.
func (d *Decoder) Reset() {
	d.tx, d.ctx = nil, nil
	d.rels = map[uint32]*relation{}
}

// Decode handles one pgoutput message. It returns the transaction when the
// message is its Commit, otherwise nil.
func (d *Decoder) Decode(ctx context.Context, data []byte) (*audit.Transaction, error) {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		d.tx = &audit.Transaction{Xid: m.Xid, CommitLSN: m.FinalLSN, CommittedAt: m.CommitTime}
		d.arena, d.chunk, d.ctx = nil, 0, nil
	case *pglogrepl.CommitMessage:
		tx := d.tx
		if tx == nil {
			return nil, fmt.Errorf("commit at %s without begin", m.CommitLSN)
		}
		tx.CommitLSN, tx.EndLSN, tx.CommittedAt = m.CommitLSN, m.TransactionEndLSN, m.CommitTime
		d.tx, d.arena, d.ctx = nil, nil, nil
		return tx, nil
	case *pglogrepl.RelationMessage:
		d.relation(ctx, m)
	case *pglogrepl.InsertMessage:
		rel, err := d.change(m.RelationID, audit.Insert)
		if rel == nil {
			return nil, err
		}
		e := d.entry(rel, audit.Insert)
		e.New = d.object(rel, rel.rec, m.Tuple, nil)
		e.PK = d.object(rel, rel.pkRec, m.Tuple, nil)
	case *pglogrepl.UpdateMessage:
		rel, err := d.change(m.RelationID, audit.Update)
		if rel == nil {
			return nil, err
		}
		d.update(rel, m)
	case *pglogrepl.DeleteMessage:
		rel, err := d.change(m.RelationID, audit.Delete)
		if rel == nil {
			return nil, err
		}
		e := d.entry(rel, audit.Delete)
		cols := rel.rec
		if m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey {
			cols = rel.identRec // the key only; the rest is "not sent", not NULL
		}
		e.Old = d.object(rel, cols, m.OldTuple, nil)
		e.PK = d.object(rel, rel.pkRec, m.OldTuple, nil)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			rel, err := d.change(id, audit.Truncate)
			if err != nil {
				return nil, err
			}
			if rel != nil {
				d.entry(rel, audit.Truncate).New = truncateOptions[m.Option&3]
			}
		}
	case *pglogrepl.LogicalDecodingMessage:
		return d.message(m), nil
	}
	// Type and Origin messages carry nothing to record.
	return nil, nil
}

func (d *Decoder) relation(ctx context.Context, m *pglogrepl.RelationMessage) {
	rel := &relation{schema: m.Namespace, table: m.RelationName, cols: make([]column, len(m.Columns)), all: make([]int, len(m.Columns))}
	for i, c := range m.Columns {
		t, ok := BuiltinType(c.DataType)
		if !ok {
			var err error
			if t, err = d.res.ResolveType(ctx, c.DataType); err != nil || t == nil {
				t = &stringType
				d.Fallbacks++
			}
		}
		key := AppendString(nil, []byte(c.Name))
		rel.cols[i] = column{name: c.Name, key: append(key, ':'), typ: t}
		rel.all[i] = i
		if c.Flags&1 != 0 {
			rel.ident = append(rel.ident, i)
		}
	}
	if keys, err := d.res.PrimaryKey(ctx, m.RelationID); err == nil {
		for _, k := range keys {
			for i, c := range rel.cols {
				if c.name == k {
					rel.pk = append(rel.pk, i)
				}
			}
		}
	}
	if len(rel.pk) == 0 {
		// No primary key (or it cannot be read): the replica identity
		// columns, which under REPLICA IDENTITY FULL are all of them.
		rel.pk = rel.ident
	}
	if len(rel.pk) == 0 {
		rel.pk = rel.all
	}
	d.applyRules(rel)
	d.rels[m.RelationID] = rel
}

var stringType = Type{Kind: KindString}

// change returns the relation a change of action a applies to, or nil when
// the rules record no such change (an excluded table, an action left out).
func (d *Decoder) change(relID uint32, a audit.Action) (*relation, error) {
	if d.tx == nil {
		return nil, fmt.Errorf("change to relation %d outside a transaction", relID)
	}
	rel, ok := d.rels[relID]
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
func (d *Decoder) update(rel *relation, m *pglogrepl.UpdateMessage) {
	old := m.OldTuple
	if m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey {
		// Not REPLICA IDENTITY FULL and the key changed: the old tuple
		// holds the key columns only, the others are "not sent", which is
		// not NULL. Nothing to compare or fill unchanged values from.
		e := d.entry(rel, audit.Update)
		e.Old = d.object(rel, rel.identRec, old, nil)
		e.New = d.object(rel, rel.rec, m.NewTuple, nil)
		e.PK = d.object(rel, rel.pkRec, m.NewTuple, nil)
		return
	}
	if old == nil {
		// No old image (not REPLICA IDENTITY FULL): what changed is unknown.
		e := d.entry(rel, audit.Update)
		e.New = d.object(rel, rel.rec, m.NewTuple, nil)
		e.PK = d.object(rel, rel.pkRec, m.NewTuple, nil)
		return
	}
	d.changedIdx = changedColumns(rel, old, m.NewTuple, d.changedIdx[:0])
	if len(d.changedIdx) == 0 && rel.rules.SkipUnchangedUpdates {
		return
	}
	e := d.entry(rel, audit.Update)
	e.Changed = make([]string, len(d.changedIdx))
	for i, c := range d.changedIdx {
		e.Changed[i] = rel.cols[c].name
	}
	cols := rel.rec
	if rel.rules.Diff == rules.Changes {
		cols = d.changedIdx
	}
	e.Old = d.object(rel, cols, old, nil)
	e.New = d.object(rel, cols, m.NewTuple, old)
	e.PK = d.object(rel, rel.pkRec, m.NewTuple, old)
}

func (d *Decoder) entry(rel *relation, a audit.Action) *audit.Entry {
	d.tx.Entries = append(d.tx.Entries, audit.Entry{
		Seq:    int32(len(d.tx.Entries) + 1),
		Schema: rel.schema,
		Table:  rel.table,
		Action: a,
		Ctx:    d.ctx,
	})
	return &d.tx.Entries[len(d.tx.Entries)-1]
}

// value returns column i of t, taking an unchanged TOASTed value ('u') from
// old, which REPLICA IDENTITY FULL always sends whole.
func value(t, old *pglogrepl.TupleData, i int) (*pglogrepl.TupleDataColumn, bool) {
	if t == nil || i >= len(t.Columns) {
		return nil, false
	}
	c := t.Columns[i]
	if c.DataType == pglogrepl.TupleDataTypeToast {
		if old == nil || i >= len(old.Columns) || old.Columns[i].DataType == pglogrepl.TupleDataTypeToast {
			return nil, false
		}
		c = old.Columns[i]
	}
	return c, true
}

// object renders the columns idx of a tuple as a JSON object.
func (d *Decoder) object(rel *relation, idx []int, t, old *pglogrepl.TupleData) []byte {
	buf := append(d.scratch[:0], '{')
	first := true
	for _, i := range idx {
		buf, first = appendColumn(buf, rel, i, t, old, first)
	}
	buf = append(buf, '}')
	d.scratch = buf
	return d.keep(buf)
}

func appendColumn(buf []byte, rel *relation, i int, t, old *pglogrepl.TupleData, first bool) ([]byte, bool) {
	c, ok := value(t, old, i)
	if !ok {
		return buf, first // not sent (unchanged TOAST without an old image): omit, never null
	}
	if !first {
		buf = append(buf, ',')
	}
	col := &rel.cols[i]
	buf = append(buf, col.key...)
	switch c.DataType {
	case pglogrepl.TupleDataTypeText:
		if col.mask != rules.None {
			buf = rel.rules.AppendMasked(buf, col.mask, c.Data)
			break
		}
		buf = AppendValue(buf, col.typ, c.Data)
	case pglogrepl.TupleDataTypeBinary:
		buf = AppendString(buf, c.Data)
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
func changedColumns(rel *relation, old, new *pglogrepl.TupleData, out []int) []int {
	for _, i := range rel.rec {
		n, ok := value(new, old, i)
		if !ok {
			continue
		}
		o, ok := value(old, nil, i)
		if !ok || o.DataType != n.DataType || string(o.Data) != string(n.Data) {
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
