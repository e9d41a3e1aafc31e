package sink

import (
	"context"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/internal/pg"
)

// The server refuses a batch for its data (a value jsonb does not take, NUL
// in text, an index row too large, ...): the trail must not halt on it, nor
// lose the change. writeIsolating writes the batch a transaction at a time;
// the entries of a transaction the server still refuses are made storable
// (audit.Entry.MakeStorable: only the offending values change, flagged),
// and if that is still refused, quarantined (audit.Entry.Quarantine: its
// values as escaped text, flagged unstorable). Each step that changes
// entries is counted and logged.
func (p *Postgres) writeIsolating(ctx context.Context, batch []*audit.Transaction, cause error) error {
	p.log.Warn("the server refused a batch for its data; storing it a transaction at a time", zap.String("error", clip(cause.Error(), 300)))
	for _, tx := range batch {
		if tx.Rules == nil && tx.EndLSN <= p.lastEnd {
			continue
		}
		err := p.Write(ctx, []*audit.Transaction{tx})
		if pg.Classify(err) != pg.Data {
			if err != nil {
				return err
			}
			if tx.Rules != nil {
				tx.Rules = nil // written: a retry of the whole batch must not write it again
			}
			continue
		}
		for _, fix := range []struct {
			name  string
			apply func(*audit.Entry)
		}{
			{"made storable", func(e *audit.Entry) { e.MakeStorable() }},
			{"quarantined", (*audit.Entry).Quarantine},
		} {
			p.log.Warn("the server refused a transaction for its data; its entries are "+fix.name,
				zap.Uint32("xid", tx.Xid), zap.Stringer("commit_lsn", tx.CommitLSN), zap.Int("entries", tx.Len()),
				zap.String("error", clip(err.Error(), 300)))
			fixed := fixedTransaction(tx, fix.apply)
			err = p.Write(ctx, []*audit.Transaction{fixed})
			if pg.Classify(err) != pg.Data {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("store a refused transaction (xid %d): %w", tx.Xid, err)
		}
		p.cfg.Metrics.Errors.WithLabelValues("data").Inc()
	}
	return nil
}

// fixedTransaction is tx with fix applied to copies of its entries.
func fixedTransaction(tx *audit.Transaction, fix func(*audit.Entry)) *audit.Transaction {
	out := *tx
	if tx.Spilled != nil {
		out.Spilled = &fixingReader{r: tx.Spilled, fix: fix}
		return &out
	}
	out.Entries = make([]audit.Entry, len(tx.Entries))
	for i, e := range tx.Entries {
		e.Changed, e.Flags = slices.Clone(e.Changed), slices.Clone(e.Flags)
		fix(&e)
		out.Entries[i] = e
	}
	return &out
}

// fixingReader applies fix to each entry of a spilled transaction as it is
// read, so that memory stays bounded.
type fixingReader struct {
	r   audit.EntryReader
	fix func(*audit.Entry)
	e   audit.Entry
}

func (f *fixingReader) Next() (*audit.Entry, error) {
	e, err := f.r.Next()
	if e == nil || err != nil {
		return e, err
	}
	f.e = *e
	f.e.Changed, f.e.Flags = slices.Clone(e.Changed), slices.Clone(e.Flags)
	f.fix(&f.e)
	return &f.e, nil
}

func (f *fixingReader) Rewind() error { return f.r.Rewind() }

// Close leaves the file to the transaction it belongs to.
func (f *fixingReader) Close() error { return nil }

// clip shortens s to at most n bytes for a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
