package watch

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walscribe/walscribe/audit"
)

func TestGroupsBoundedEvictOldest(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "w", Kind: Threshold, Count: 2, MaxGroups: 3}}})
	r := h.e.byName["w"]
	for i := range 10 {
		h.feed(t0.Add(time.Duration(i)*time.Second), del(fmt.Sprint("actor", i)))
	}
	if n := len(r.tr.groups); n != 3 {
		t.Fatalf("%d groups tracked, want max_groups 3", n)
	}
	if v := testutil.ToFloat64(r.m.evicted); v != 7 {
		t.Errorf("evicted = %v, want 7", v)
	}
	// The most recent survive: actor9 crosses with two more.
	h.feed(t0.Add(20*time.Second), del("actor9"), del("actor9"))
	if got := h.alerts(); !slices.Equal(ids(got), []int64{12}) {
		t.Errorf("alerts on %v, want [12]", ids(got))
	}
	// Groups whose window has passed go without counting as evicted.
	h.feed(t0.Add(5*time.Minute), del("late"))
	if n := len(r.tr.groups); n != 1 {
		t.Errorf("%d groups after their windows passed, want 1", n)
	}
	if v := testutil.ToFloat64(r.m.evicted); v != 7 {
		t.Errorf("evicted = %v after expiry, want still 7", v)
	}
}

// An evicted group in breach is forgotten: its breach no longer counts in
// the gauge, and it starts from zero if it comes back.
func TestEvictedBreach(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "w", Kind: Threshold, Count: 1, MaxGroups: 2}}})
	h.feed(t0, del("a"), del("a"))
	h.feed(t0, del("b"), del("c"))
	r := h.e.byName["w"]
	if r.tr.inBreach != 0 || len(h.alerts()) != 1 {
		t.Fatalf("in breach %d, want 0 once a is evicted", r.tr.inBreach)
	}
	h.feed(t0, del("a"))
	if got := h.alerts(); len(got) != 0 {
		t.Errorf("a came back with one entry and fired %v", ids(got))
	}
}

func TestHostileValues(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "w", Kind: Threshold, Count: 1, Tables: []string{"*.*"}}}})
	prefix := strings.Repeat("é", 200) // 400 bytes, two per letter
	huge := func(i int) audit.Entry {
		e := del("")
		e.Ctx = &audit.Context{ActorID: prefix + strings.Repeat("x", 1<<20) + fmt.Sprint(i)}
		return e
	}
	h.feed(t0, huge(1), huge(2), huge(1), huge(2))
	got := h.alerts()
	if len(got) != 2 {
		t.Fatalf("%d alerts, want 2: actors sharing a long beginning are groups of their own", len(got))
	}
	for _, a := range got {
		if len(a.Group) > 400 || !utf8.ValidString(a.Group) || !strings.Contains(a.Group, "sha256 ") {
			t.Errorf("group %q (%d bytes): want at most 400 bytes of valid UTF-8 with a SHA-256", a.Group[:40], len(a.Group))
		}
	}
	if got[0].Group == got[1].Group {
		t.Error("two actors shown the same")
	}
	for k := range h.e.byName["w"].tr.groups {
		if len(k.a) > maxGroupBytes {
			t.Errorf("a group key of %d bytes", len(k.a))
		}
	}

	// Event targets by the thousand: the table cache stays bounded, and
	// matching stays right past it.
	h2 := newHarness(t, Config{Rules: []Rule{{Name: "m", Kind: Match, Tables: []string{"app.secret_*"}}}})
	var es []audit.Entry
	for i := range maxCachedTables + 500 {
		es = append(es, change("app", fmt.Sprint("t", i), "read", "1"))
	}
	es = append(es, change("app", "secret_x", "read", "1"), change("app", strings.Repeat("z", 300), "read", "1"))
	h2.feed(t0, es...)
	h2.feed(t0, change("app", "secret_y", "read", "1"))
	if n := len(h2.e.tables); n > maxCachedTables {
		t.Errorf("%d tables cached, want at most %d", n, maxCachedTables)
	}
	if got := h2.alerts(); !slices.Equal(ids(got), []int64{int64(len(es)) - 1, int64(len(es)) + 1}) {
		t.Errorf("alerts on %v, want the two secret_ reads", ids(got))
	}
}

// Observe allocates nothing for entries no watch looks at, nor for
// entries counted in a group already tracked.
func TestObserveAllocations(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{
		{Name: "bulk", Kind: Threshold, Tables: []string{"public.orders"}, Actions: []string{"delete"}, Count: 1_000_000_000, By: ByIP},
		{Name: "card", Kind: Match, Tables: []string{"billing.*"}, Columns: []string{"card_number"}},
		{Name: "night", Kind: OutsideHours, Tables: []string{"hr.*"}},
		{Name: "actors", Kind: Threshold, Tables: []string{"public.orders"}, Count: 1_000_000_000, By: ByActor},
	}})
	ignored := txn(t0, repeat(change("public", "users", audit.Update, "1"), 100)...)
	counted := txn(t0, repeat(del("1"), 100)...)
	noCard := txn(t0, repeat(audit.Entry{Schema: "billing", Table: "x", Action: audit.Update, New: []byte(`{"id": 1, "total": 2}`), Changed: []string{"total"}}, 100)...)
	batch := []*audit.Transaction{ignored, counted, noCard}
	h.batch(batch...) // the groups and the table cache fill
	if n := testing.AllocsPerRun(50, func() { h.batch(batch...) }); n != 0 {
		t.Errorf("%v allocations per batch of 300 entries, want 0", n)
	}
}

// spilled is a transaction's entries as a spool file hands them out.
type spilled struct {
	entries []audit.Entry
	i       int
	rewound int
}

func (s *spilled) Next() (*audit.Entry, error) {
	if s.i == len(s.entries) {
		return nil, nil
	}
	e := s.entries[s.i] // a copy, as a file yields
	s.i++
	return &e, nil
}
func (s *spilled) Rewind() error { s.i, s.rewound = 0, s.rewound+1; return nil }
func (s *spilled) Close() error  { return nil }

func TestSpilledTransaction(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "w", Kind: Threshold, Count: 5}}})
	sp := &spilled{entries: repeat(del("a"), 10), i: 10} // read to its end by the COPY
	tx := &audit.Transaction{Xid: 9, CommittedAt: t0, Spilled: sp, Count: 10}
	h.e.Observe(100, []*audit.Transaction{txn(t0, del("b")), tx, txn(t0, del("a"))})
	got := h.alerts()
	if sp.rewound != 1 || !slices.Equal(ids(got), []int64{106}) || got[0].Count != 11 || got[0].LastID != 111 {
		t.Fatalf("rewound %d, alerts on %v (%+v): want the spilled entries numbered 101..110 and the next 111", sp.rewound, ids(got), got)
	}
}

// A batch that fires more alerts than a queue holds drops the rest, and
// counts them; it never waits.
func TestQueueFull(t *testing.T) {
	h := newHarness(t, Config{QueueSize: 2, Rules: []Rule{{Name: "m", Kind: Match, By: ByActorID}}})
	var txs []*audit.Transaction
	for i := range 5 {
		txs = append(txs, txn(t0, del(fmt.Sprint(i))))
	}
	h.batch(txs...)
	h.batch(txn(t0, del("x")))
	if got := h.alerts(); len(got) != 2 {
		t.Fatalf("%d alerts queued, want 2", len(got))
	}
	if v := h.fired("m"); v != 6 {
		t.Errorf("alerts_total = %v, want 6: every breach counts", v)
	}
	if v := metricValue(t, h.reg, "walscribe_watch_deliveries_total", "watch", "m", "target", "record", "result", "dropped"); v != 4 {
		t.Errorf("dropped = %v, want 4", v)
	}
}

// The series carry configured watch names only, whatever the entries say.
func TestMetricsExposition(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "bulk", Kind: Threshold, Count: 1, Window: time.Minute}, {Name: "reads", Kind: Match, Actions: []string{"read"}}}})
	// bulk: the hostile actor twice, then z twice (3 groups); reads: one
	// per transaction.
	hostile := del(`"} 1` + "\n" + `walscribe_watch_alerts_total{watch="x`)
	h.feed(t0, hostile, hostile, change("public", "t", "read", "y"), change("x", "y", "read", "z"))
	h.feed(t0.Add(time.Second), change("x", "y", "read", "z"))
	h.e.sweep()
	want := `
# HELP walscribe_watch_alerts_total Alerts fired by each watch: once per breach (alert on increase()).
# TYPE walscribe_watch_alerts_total counter
walscribe_watch_alerts_total{watch="bulk"} 2
walscribe_watch_alerts_total{watch="reads"} 2
# HELP walscribe_watch_groups Groups each windowed watch tracks (bounded by its max_groups).
# TYPE walscribe_watch_groups gauge
walscribe_watch_groups{watch="bulk"} 3
walscribe_watch_groups{watch="reads"} 0
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(want), "walscribe_watch_alerts_total", "walscribe_watch_groups"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(h.reg); err != nil || n != 2*4+2*3 {
		t.Errorf("%d series (%v), want 14: 4 per watch and 3 deliveries each", n, err)
	}
}

// Transactions without entries (progress only) and records of the rules
// take no ids.
func TestIDsSkipEmptyTransactions(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "m", Kind: Match}}})
	h.e.Observe(10, []*audit.Transaction{{EndLSN: 5}, {Rules: []byte(`{}`)}, txn(t0, del("a")), {EndLSN: 9}, txn(t0, del("b"))})
	if got := h.alerts(); !slices.Equal(ids(got), []int64{10, 11}) {
		t.Errorf("alerts on %v, want [10 11]", ids(got))
	}
}
