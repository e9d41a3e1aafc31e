package daemon

import (
	"testing"
	"time"
)

// BenchmarkDrain measures how fast a backlog of changes (inserts, then
// updates of a realistic row) is drained into audit.entries. Each
// iteration drains 100,000 changes.
//
//	go test -run '^$' -bench Drain -benchtime 3x ./daemon
func BenchmarkDrain(b *testing.B) {
	h := newHarness(b, `CREATE TABLE orders (
		id bigserial PRIMARY KEY, customer text NOT NULL, total numeric(12,2), status text,
		items jsonb, tags text[], created timestamptz DEFAULT now(), updated timestamptz)`, "orders")
	// Measure walscribe alone: no oracle triggers writing on the side.
	h.exec(`DROP TRIGGER oracle_row ON orders`)
	h.cfg.Sink.BatchMaxEntries = 5000
	h.cfg.Sink.BatchMaxWait = 100 * time.Millisecond
	const half = 50_000
	var total time.Duration
	for b.Loop() {
		h.exec(`INSERT INTO orders (customer, total, status, items, tags)
			SELECT 'customer ' || g, g * 1.25, 'new', jsonb_build_object('sku', g, 'qty', g % 7, 'note', 'ok'), ARRAY['a', 'b' || g % 3]
			FROM generate_series(1, $1) g`, half)
		h.exec(`UPDATE orders SET status = 'paid', updated = now() WHERE status = 'new'`)
		want := h.count(`SELECT coalesce(max(last_id), 0) FROM audit.checkpoints`) + 2*half
		began := time.Now()
		h.start()
		h.waitFor("the backlog to drain", func() bool {
			return h.count(`SELECT coalesce(max(last_id), 0) FROM audit.checkpoints`) >= want
		})
		total += time.Since(began)
		h.stop()
	}
	b.ReportMetric(float64(b.N*2*half)/total.Seconds(), "entries/s")
}
