package daemon

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
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
	h.sinkCfg.BatchMaxEntries = 5000
	h.sinkCfg.BatchMaxWait = 100 * time.Millisecond
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

// BenchmarkBridgeOverhead measures what the context bridge costs the
// application's own writes: the same transactions on the same table, with
// and without the bridge's trigger, alternating in short rounds so that
// both see the same machine. "1_row" sets the context
// (audit.set_context), inserts a row and updates it; "100_rows" sets it and
// inserts 100 rows one statement at a time, so the trigger fires 100 times
// and emits once. It reports microseconds per transaction for each variant
// and their ratio.
//
//	go test -run '^$' -bench BridgeOverhead -benchtime 20x ./daemon
func BenchmarkBridgeOverhead(b *testing.B) {
	h := newHarness(b, `CREATE TABLE w (id bigserial PRIMARY KEY, body text, n int)`, "w")
	h.exec(`DROP TRIGGER oracle_row ON w`)
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	workloads := []struct {
		name string
		tx   func(pgx.Tx)
	}{
		{"1_row", func(tx pgx.Tx) {
			var id int64
			_, err := tx.Exec(ctx, `SELECT audit.set_context(actor_id => '42', ip => '203.0.113.7', request_id => 'req-1')`)
			must(err)
			must(tx.QueryRow(ctx, `INSERT INTO w (body, n) VALUES ('hello', 1) RETURNING id`).Scan(&id))
			_, err = tx.Exec(ctx, `UPDATE w SET n = n + 1 WHERE id = $1`, id)
			must(err)
		}},
		{"100_rows", func(tx pgx.Tx) {
			_, err := tx.Exec(ctx, `SELECT audit.set_context(actor_id => '42', request_id => 'req-1')`)
			must(err)
			for i := range 100 {
				_, err := tx.Exec(ctx, `INSERT INTO w (body, n) VALUES ('row', $1)`, i)
				must(err)
			}
		}},
	}
	const perRound = 50
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			var took [2]time.Duration // without, with
			txs := 0
			for b.Loop() {
				for v, trigger := range []string{"DISABLE", "ENABLE ALWAYS"} {
					h.exec(`ALTER TABLE w ` + trigger + ` TRIGGER walscribe_context`)
					began := time.Now()
					for range perRound {
						tx, err := h.conn.Begin(ctx)
						must(err)
						w.tx(tx)
						must(tx.Commit(ctx))
					}
					took[v] += time.Since(began)
				}
				txs += perRound
			}
			without := float64(took[0].Microseconds()) / float64(txs)
			with := float64(took[1].Microseconds()) / float64(txs)
			b.ReportMetric(without, "µs/tx_without")
			b.ReportMetric(with, "µs/tx_with")
			b.ReportMetric(with/without, "ratio")
		})
	}
}
