package watch

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
)

// t0 is a Monday noon, UTC.
var t0 = time.Date(2024, 3, 25, 12, 0, 0, 0, time.UTC)

// fakeRecorder keeps what it is asked to record; err, when set, fails
// each call.
type fakeRecorder struct {
	mu     sync.Mutex
	alerts []*Alert
	calls  int
	err    error
	block  chan struct{} // when set, each call waits for it (or ctx)
}

func (f *fakeRecorder) Record(ctx context.Context, table, action string, detail any) (int64, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return 0, f.err
	}
	if table != "watch" || action != "alert" {
		panic("unexpected record " + table + " " + action)
	}
	f.alerts = append(f.alerts, detail.(*Alert))
	return int64(len(f.alerts)), nil
}

func (f *fakeRecorder) got() []*Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Alert(nil), f.alerts...)
}

// harness is an evaluator not opened: its alerts stay in the record queue
// for the test to take.
type harness struct {
	t      *testing.T
	e      *Evaluator
	reg    *prometheus.Registry
	nextID int64
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	e, err := New(cfg, Deps{Log: zap.NewNop(), Registerer: reg, Recorder: &fakeRecorder{}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, e: e, reg: reg, nextID: 1}
}

// feed observes one transaction committed at at, as a batch of its own.
func (h *harness) feed(at time.Time, entries ...audit.Entry) {
	h.batch(txn(at, entries...))
}

// batch observes transactions as one batch.
func (h *harness) batch(txs ...*audit.Transaction) {
	h.e.Observe(h.nextID, txs)
	for _, tx := range txs {
		h.nextID += int64(tx.Len())
	}
}

// alerts takes the alerts queued since the last call.
func (h *harness) alerts() []*Alert {
	var out []*Alert
	for {
		select {
		case a := <-h.e.recordQ:
			out = append(out, a)
		default:
			return out
		}
	}
}

// fired is walscribe_watch_alerts_total of watch.
func (h *harness) fired(watch string) float64 {
	return testutil.ToFloat64(h.e.byName[watch].m.alerts)
}

// metricValue is the value of the series of metric name with the labels
// given as name, value pairs.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

var xid uint32

func txn(at time.Time, entries ...audit.Entry) *audit.Transaction {
	xid++
	for i := range entries {
		entries[i].Seq = int32(i + 1)
	}
	return &audit.Transaction{Xid: xid, CommittedAt: at, Entries: entries, Count: len(entries)}
}

// del is a delete of public.orders by actor.
func del(actor string) audit.Entry {
	return change("public", "orders", audit.Delete, actor)
}

func change(schema, table string, action audit.Action, actor string) audit.Entry {
	e := audit.Entry{Schema: schema, Table: table, Action: action, PK: []byte(`{"id": 1}`)}
	if actor != "" {
		e.Ctx = &audit.Context{ActorID: actor, Actor: "name " + actor, DBUser: "app", RequestID: "req-" + actor,
			IP: netip.MustParsePrefix("10.0.0.1/32")}
	}
	return e
}

func repeat(e audit.Entry, n int) []audit.Entry {
	out := make([]audit.Entry, n)
	for i := range out {
		out[i] = e
	}
	return out
}

func ids(as []*Alert) []int64 {
	out := make([]int64, len(as))
	for i, a := range as {
		out[i] = a.EntryID
	}
	return out
}
