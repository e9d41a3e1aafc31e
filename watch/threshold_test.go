package watch

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walscribe/walscribe/audit"
)

// step is one transaction fed to a watch, and the alerts (by firing entry
// id) expected from it.
type step struct {
	at      time.Duration // after t0
	entries []audit.Entry
	fires   []int64
}

func TestThresholdOncePerBreach(t *testing.T) {
	bulk := Rule{Name: "bulk_deletes", Kind: Threshold, Tables: []string{"public.ord*"}, Actions: []string{"delete"}, Count: 3, Window: time.Minute}
	one := func(actor string) []audit.Entry { return []audit.Entry{del(actor)} }
	cases := []struct {
		name  string
		rule  Rule
		steps []step
	}{
		{"crossing fires on the entry past count", bulk, []step{
			{0, one("a"), nil}, {time.Second, one("a"), nil}, {2 * time.Second, one("a"), nil},
			{3 * time.Second, one("a"), []int64{4}},
		}},
		{"quiet while in breach", bulk, []step{
			{0, repeat(del("a"), 4), []int64{4}},
			{10 * time.Second, repeat(del("a"), 50), nil},
			{50 * time.Second, one("a"), nil},
			{90 * time.Second, one("a"), nil}, // 50 of 10s still in the window
		}},
		{"re-arms once the window's count is back at count", bulk, []step{
			{0, repeat(del("a"), 4), []int64{4}},
			{2 * time.Minute, one("a"), nil}, // the window passed: re-armed, count 1
			{2*time.Minute + time.Second, repeat(del("a"), 3), []int64{8}},
		}},
		{"groups are independent", bulk, []step{
			{0, repeat(del("a"), 3), nil},
			{time.Second, repeat(del("b"), 3), nil},
			{2 * time.Second, one("b"), []int64{7}},
			{3 * time.Second, one("a"), []int64{8}},
			{4 * time.Second, one(""), nil}, // no actor: a group of its own
		}},
		{"the window slides", bulk, []step{
			// One every 20s: never more than 3 within a minute.
			{0, one("a"), nil}, {20 * time.Second, one("a"), nil}, {40 * time.Second, one("a"), nil},
			{60 * time.Second, one("a"), nil}, {80 * time.Second, one("a"), nil}, {100 * time.Second, one("a"), nil},
			// Two more within the window of the last three: 5.
			{101 * time.Second, one("a"), []int64{7}}, {102 * time.Second, one("a"), nil},
		}},
		{"tables and actions filter", bulk, []step{
			{0, repeat(change("public", "users", audit.Delete, "a"), 10), nil},
			{time.Second, repeat(change("public", "orders", audit.Update, "a"), 10), nil},
			{2 * time.Second, repeat(change("public", "order_lines", audit.Delete, "a"), 4), []int64{24}},
		}},
		{"one transaction of many fires once", bulk, []step{
			{0, repeat(del("a"), 1000), []int64{4}},
		}},
		{"by table", Rule{Name: "t", Kind: Threshold, By: ByTable, Count: 2}, []step{
			{0, []audit.Entry{del("a"), del("b"), change("public", "users", audit.Insert, "c"), del("c")}, []int64{4}},
		}},
		{"by all", Rule{Name: "t", Kind: Threshold, By: ByAll, Count: 2, Window: 10 * time.Second}, []step{
			{0, []audit.Entry{del("a"), del("b")}, nil},
			{5 * time.Second, one("c"), []int64{3}},
			{30 * time.Second, repeat(del("d"), 3), []int64{6}},
		}},
		{"commit times out of order count as the newest", bulk, []step{
			{time.Minute, one("a"), nil},
			{0, repeat(del("a"), 3), []int64{4}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{Rules: []Rule{c.rule}})
			var all []*Alert
			for i, s := range c.steps {
				h.feed(t0.Add(s.at), s.entries...)
				got := h.alerts()
				if !slices.Equal(ids(got), s.fires) && !(len(got) == 0 && len(s.fires) == 0) {
					t.Fatalf("step %d: alerts on entries %v, want %v", i, ids(got), s.fires)
				}
				all = append(all, got...)
			}
			if n := h.fired(c.rule.Name); int(n) != len(all) {
				t.Errorf("walscribe_watch_alerts_total = %v, want %d", n, len(all))
			}
		})
	}
}

func TestThresholdAlert(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "bulk", Kind: Threshold, Actions: []string{"delete"}, Count: 3, Description: "mass delete"}}})
	h.feed(t0, del("x"), del("42"))
	h.feed(t0.Add(time.Second), del("42"), del("42"))
	h.feed(t0.Add(2*time.Second), del("42"), del("42"), del("x"), del("42"))
	got := h.alerts()
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	a := got[0]
	want := Alert{ID: "bulk:5", Watch: "bulk", Kind: Threshold, Description: "mass delete", By: ByActorID, Group: "42",
		Count: 6, Limit: 3, Window: time.Minute, EntryID: 5, FirstID: 2, LastID: 8, Sample: []int64{2, 3, 4, 5},
		Table: "public.orders", Action: "delete", Xid: a.Xid, At: t0.Add(2 * time.Second), FiredAt: t0}
	if !alertEqual(*a, want) {
		t.Errorf("alert\n%+v\nwant\n%+v", *a, want)
	}
}

func alertEqual(a, b Alert) bool {
	a.g, b.g = nil, nil
	return a.ID == b.ID && a.Watch == b.Watch && a.Kind == b.Kind && a.Description == b.Description && a.By == b.By &&
		a.Group == b.Group && a.Count == b.Count && a.Limit == b.Limit && a.Window == b.Window && a.EntryID == b.EntryID &&
		a.FirstID == b.FirstID && a.LastID == b.LastID && slices.Equal(a.Sample, b.Sample) && a.Table == b.Table &&
		a.Action == b.Action && a.Xid == b.Xid && a.At.Equal(b.At) && a.FiredAt.Equal(b.FiredAt)
}

// The breach ends only when the count in the window is back at count: a
// steady rate above it never fires twice; one that dips to count and
// crosses again is a new breach.
func TestThresholdRearmAtCount(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "w", Kind: Threshold, Count: 3, Window: 30 * time.Second}}})
	// One every 6s is 5 per 30s: in breach from the 4th on, for 10 minutes.
	for i := range 100 {
		h.feed(t0.Add(time.Duration(i)*6*time.Second), del("a"))
	}
	if got := h.alerts(); !slices.Equal(ids(got), []int64{4}) {
		t.Fatalf("a steady breach fired on %v, want [4] only", ids(got))
	}
	// A pause longer than the window ends the breach; then one every 10s
	// is 3 per 30s, at count: armed, quiet. One more within the window is
	// a new breach.
	quiet := t0.Add(594*time.Second + 40*time.Second)
	for i := range 6 {
		h.feed(quiet.Add(time.Duration(i)*10*time.Second), del("a"))
	}
	if got := h.alerts(); len(got) != 0 {
		t.Fatalf("at count, alerts on %v", ids(got))
	}
	h.feed(quiet.Add(51*time.Second), del("a"))
	if got := h.alerts(); !slices.Equal(ids(got), []int64{107}) {
		t.Fatalf("a new breach fired on %v, want [107]", ids(got))
	}
}

func TestThresholdBreachAcrossBatches(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "w", Kind: Threshold, Count: 10}}})
	var batch []*audit.Transaction
	for i := range 30 {
		batch = append(batch, txn(t0.Add(time.Duration(i)*time.Second), del("a")))
	}
	h.batch(batch[:5]...)
	h.batch(batch[5:15]...)
	h.batch(batch[15:]...)
	got := h.alerts()
	if !slices.Equal(ids(got), []int64{11}) {
		t.Fatalf("alerts on %v, want [11]", ids(got))
	}
	if got[0].Count != 15 || got[0].LastID != 15 {
		t.Errorf("count %d, last id %d: want the group's count and last entry when its batch was stored (15, 15)", got[0].Count, got[0].LastID)
	}
	h.e.sweep()
	if v := testutil.ToFloat64(h.e.byName["w"].m.breaches); v != 1 {
		t.Errorf("walscribe_watch_breaches = %v, want 1", v)
	}
}

// The gauge of breaches follows the time since the last entry: on an idle
// database a breach ends when its window has passed.
func TestBreachGaugeWhileIdle(t *testing.T) {
	now := t0
	h := newHarness(t, Config{Rules: []Rule{{Name: "w", Kind: Threshold, Count: 1, Window: time.Minute}}})
	h.e.now = func() time.Time { return now }
	h.feed(t0, del("a"), del("a"), del("b"), del("b"))
	h.e.sweep()
	if v := metricValue(t, h.reg, "walscribe_watch_breaches", "watch", "w"); v != 2 {
		t.Fatalf("breaches = %v, want 2", v)
	}
	if v := metricValue(t, h.reg, "walscribe_watch_groups", "watch", "w"); v != 2 {
		t.Fatalf("groups = %v, want 2", v)
	}
	now = t0.Add(2 * time.Minute)
	h.e.sweep()
	if v := metricValue(t, h.reg, "walscribe_watch_breaches", "watch", "w"); v != 0 {
		t.Fatalf("breaches = %v two windows later, want 0", v)
	}
}

func TestThresholdByAddress(t *testing.T) {
	from := func(ip, client string) audit.Entry {
		e := del("1")
		e.Ctx.IP, e.Ctx.ClientAddr = netip.MustParsePrefix(ip), netip.MustParsePrefix(client)
		return e
	}
	for _, c := range []struct {
		by    GroupBy
		fires []int64
		group string
	}{
		{ByIP, []int64{3}, "10.0.0.1"},
		{ByClientAddr, []int64{4}, "2001:db8::7"},
	} {
		t.Run(string(c.by), func(t *testing.T) {
			h := newHarness(t, Config{Rules: []Rule{{Name: "w", Kind: Threshold, By: c.by, Count: 2}}})
			h.feed(t0, from("10.0.0.1/32", "2001:db8::7/128"), from("10.0.0.1/32", "192.0.2.1/32"),
				from("10.0.0.1/32", "2001:db8::7/128"), from("10.0.0.2/32", "2001:db8::7/128"))
			got := h.alerts()
			if !slices.Equal(ids(got), c.fires) || got[0].Group != c.group {
				t.Errorf("alerts on %v (%+v), want %v of %s", ids(got), got, c.fires, c.group)
			}
		})
	}
}
