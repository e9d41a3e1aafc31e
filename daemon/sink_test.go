package daemon

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/rules"
	"github.com/walscribe/walscribe/sink"
)

// flakySink is the PostgreSQL sink with faults and a witness put in front
// of it: the first gap records fail with a retryable error, Run can be
// held, and what the daemon hands to Run is noted, in order.
type flakySink struct {
	*sink.Postgres
	gapFailures atomic.Int32
	gapCalls    atomic.Int32
	hold        chan struct{} // Run takes nothing until it is closed

	mu     sync.Mutex
	handed []*audit.Transaction
}

var _ Sink = (*flakySink)(nil)

func (f *flakySink) RecordGap(ctx context.Context, g audit.Gap) (bool, error) {
	f.gapCalls.Add(1)
	if f.gapFailures.Add(-1) >= 0 {
		return false, &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}
	}
	return f.Postgres.RecordGap(ctx, g)
}

func (f *flakySink) Run(ctx context.Context, in <-chan *audit.Transaction, durable func(pglogrepl.LSN)) error {
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
		}
	}
	seen := make(chan *audit.Transaction)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(seen)
		for tx := range in {
			f.mu.Lock()
			f.handed = append(f.handed, tx)
			f.mu.Unlock()
			select {
			case seen <- tx:
			case <-done: // Run returned: nobody takes it
				return
			}
		}
	}()
	return f.Postgres.Run(ctx, seen, durable)
}

// log returns what the daemon handed to Run so far.
func (f *flakySink) log() []*audit.Transaction {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*audit.Transaction(nil), f.handed...)
}

// TestReloadHandedInOrder: a reload reaches the sink between two
// transactions, applying from the end of the last one decoded under the old
// rules, and the first transaction after it is decoded with the new rules.
func TestReloadHandedInOrder(t *testing.T) {
	h := newHarness(t, `CREATE TABLE r (id int PRIMARY KEY, secret text)`, "r")
	before := mustRules(t, rules.Config{Tables: []rules.TableConfig{{Name: "public.r"}, {Name: "public.marker"}}})
	after := mustRules(t, rules.Config{Tables: []rules.TableConfig{{Name: "public.r", Exclude: []string{"secret"}}, {Name: "public.marker"}}})
	h.cfg.Rules = before
	f := &flakySink{Postgres: sink.NewPostgres(h.sinkCfg, h.log)}
	h.startWith(f)
	h.exec(`INSERT INTO r VALUES (1, 's')`)
	h.sync()
	h.d.Reload(after)
	h.waitFor("the reload to reach the sink", func() bool {
		h.exec(`SELECT pg_logical_emit_message(false, 'other', 'nudge')`) // something to stream
		for _, tx := range f.log() {
			if tx.RulesReason == "reload" {
				return true
			}
		}
		return false
	})
	h.exec(`INSERT INTO r VALUES (2, 's')`)
	h.sync()
	h.stop()
	var last pglogrepl.LSN // the end of what was handed before the reload
	reloadAt := -1
	for i, tx := range f.log() {
		switch {
		case tx.RulesReason == "reload":
			reloadAt = i
			if tx.RulesFrom != last {
				t.Errorf("the reload applies from %s, want %s (the end of the last transaction before it)", tx.RulesFrom, last)
			}
		case tx.Rules == nil && reloadAt < 0: // transactions and idle progress
			last = max(last, tx.EndLSN)
		case tx.Rules == nil && tx.Len() > 0 && tx.EndLSN <= last:
			t.Errorf("a transaction ending at %s was handed after the reload from %s", tx.EndLSN, last)
		}
	}
	if reloadAt < 0 {
		t.Fatal("no reload was handed to the sink")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'r' AND (new->>'id')::int = 1 AND new ? 'secret'`); n != 1 {
		t.Error("row 1 was not recorded under the old rules")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'r' AND (new->>'id')::int = 2 AND NOT new ? 'secret'`); n != 1 {
		t.Error("row 2 was not recorded under the new rules")
	}
}
