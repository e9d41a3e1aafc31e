package sink

import (
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/integrity"
)

// batchLeaves are the leaf hashes of a batch's rows, computed by the sink
// from the values it sends, as the server will store them (integrity
// RowBuilder): the rows of transactions in memory by a goroutine beside the
// COPY, those of spilled transactions by the COPY's reader as it reads
// them. Each row's hash goes to its own slot.
type batchLeaves struct {
	first    int64     // id of the batch's first row
	captured time.Time // captured_at: the sink transaction's now()
	leaves   []tlog.Hash
	rb       integrity.RowBuilder // the COPY reader's

	mu      sync.Mutex
	inexact []int // rows the server must hash: their index in leaves

	// The tree after the leaves, appended to sealedOn beside the COPY when
	// every row was hashed there (no spilled transaction, none inexact),
	// and the leaves packed as stored.
	sealedOn *integrity.Tree
	sealed   *integrity.Tree
	packed   []byte
}

func newBatchLeaves(first int64, n int, captured time.Time) *batchLeaves {
	return &batchLeaves{first: first, captured: captured, leaves: make([]tlog.Hash, n)}
}

// hashMemory hashes the rows of the batch's transactions that are in
// memory, and when those are all its rows and it hashed them all, appends
// them to base; it returns when done.
func (l *batchLeaves) hashMemory(batch []*audit.Transaction, base *integrity.Tree) {
	var rb integrity.RowBuilder
	id := l.first
	spilled := false
	for _, tx := range batch {
		if tx.Spilled != nil {
			id += int64(tx.Len())
			spilled = true
			continue
		}
		for i := range tx.Entries {
			e := &tx.Entries[i]
			flags, loginUser := rowFlags(e)
			l.put(&rb, id, tx, e, flags, loginUser)
			id++
		}
	}
	if spilled || len(l.inexact) > 0 || base == nil {
		return
	}
	if tree, packed, err := sealLeaves(base, l.leaves); err == nil {
		l.sealedOn, l.sealed, l.packed = base, tree, packed
	}
}

// hash hashes one row of a spilled transaction, with the COPY reader's
// builder.
func (l *batchLeaves) hash(id int64, tx *audit.Transaction, e *audit.Entry, flags []string, loginUser string) {
	l.put(&l.rb, id, tx, e, flags, loginUser)
}

// put computes the leaf hash of the row appendRow encodes for entry e
// with id, from the same values, in the order of integrity.Columns.
func (l *batchLeaves) put(b *integrity.RowBuilder, id int64, tx *audit.Transaction, e *audit.Entry, flags []string, loginUser string) {
	b.Reset()
	b.Int(id)
	b.LSN(uint64(tx.CommitLSN))
	b.Int(int64(e.Seq))
	if tx.Xid != 0 {
		b.Int(int64(tx.Xid))
	} else {
		b.Null()
	}
	b.Micros(tx.CommittedAt)
	b.Micros(l.captured)
	b.Text(e.Schema)
	b.Text(e.Table)
	b.Text(string(e.Action))
	b.JSON(e.PK)
	b.JSON(e.Old)
	b.JSON(e.New)
	b.TextArray(e.Changed)
	if c := e.Ctx; c != nil {
		b.TextOrNull(c.ActorID)
		b.TextOrNull(c.Actor)
		b.Inet(c.IP)
		b.TextOrNull(c.UserAgent)
		b.TextOrNull(c.RequestID)
		b.TextOrNull(c.DBUser)
		b.Inet(c.ClientAddr)
		b.TextOrNull(c.ApplicationName)
		b.JSON(c.Extra)
	} else {
		for range 9 {
			b.Null()
		}
	}
	b.Text(e.RetentionClass())
	b.TextArray(flags)
	b.TextOrNull(loginUser)
	h, exact := b.LeafHash()
	i := int(id - l.first)
	l.leaves[i] = h
	if !exact {
		l.mu.Lock()
		l.inexact = append(l.inexact, i)
		l.mu.Unlock()
	}
}
