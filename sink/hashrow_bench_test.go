package sink

import (
	"testing"
	"time"

	"github.com/walscribe/walscribe/audit"
)

// BenchmarkHashRow: the sink's own leaf hash of one row, as the drain
// benchmark's updates have them.
func BenchmarkHashRow(b *testing.B) {
	// As the decoder renders a row: keys in jsonb's order, the jsonb
	// column as the server wrote it.
	doc := []byte(`{"id":12345,"name":"Customer 12345","tags":["tier-0","region-4"],"email":"customer12345@example.com","active":true,"scores":[5,45,345],"balance":16913.15,"profile":{"plan": "pro", "seats": 45, "address": {"zip": "12345", "city": "City 45"}},"created_at":"2026-11-01T10:00:00.123456+00:00","updated_at":"2026-12-06T08:00:00.654321+00:00"}`)
	tx := &audit.Transaction{Xid: 1234, CommitLSN: 0x16B3748, EndLSN: 0x16B3800, CommittedAt: time.Now()}
	e := &audit.Entry{Seq: 1, Schema: "public", Table: "accounts", Action: audit.Update, PK: []byte(`{"id": 12345}`),
		Old: doc, New: doc, Changed: []string{"balance", "updated_at", "profile"}}
	l := newBatchLeaves(0, 1, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		l.hash(0, tx, e, []string{"no_context"}, "")
	}
}
