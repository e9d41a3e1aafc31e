package watch

import (
	"testing"

	"github.com/walscribe/walscribe/audit"
)

// BenchmarkObserve measures a batch of 5000 entries: none watched, and all
// counted by a threshold watch per actor.
func BenchmarkObserve(b *testing.B) {
	rules := []Rule{
		{Name: "bulk", Kind: Threshold, Tables: []string{"public.orders"}, Actions: []string{"delete"}, Count: 1_000_000_000},
		{Name: "card", Kind: Match, Tables: []string{"billing.*"}, Columns: []string{"card_number"}},
		{Name: "night", Kind: OutsideHours, Tables: []string{"hr.*"}},
	}
	for _, c := range []struct {
		name string
		e    audit.Entry
	}{{"unwatched", change("public", "users", audit.Update, "1")}, {"counted", del("1")}} {
		b.Run(c.name, func(b *testing.B) {
			e, err := New(Config{Rules: rules}, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			batch := []*audit.Transaction{txn(t0, repeat(c.e, 5000)...)}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				e.Observe(int64(i)*5000+1, batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*5000), "ns/entry")
		})
	}
}
