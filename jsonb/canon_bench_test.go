package jsonb

import "testing"

var benchDoc = []byte(`{"id": 12345, "name": "Customer 12345", "email": "customer12345@example.com", "balance": 16913.15, "tags": ["tier-0", "region-4"], "scores": [5, 45, 345], "profile": {"plan": "pro", "seats": 45, "address": {"city": "City 45", "zip": "12345"}}, "created_at": "2026-11-01T10:00:00.123456+00:00", "updated_at": "2026-12-06T08:00:00.654321+00:00", "active": true}`)

// BenchmarkCanonical: a row image of the drain benchmark's table.
func BenchmarkCanonical(b *testing.B) {
	var c Canonicalizer
	var out []byte
	b.SetBytes(int64(len(benchDoc)))
	for b.Loop() {
		var err error
		if out, err = c.Append(out[:0], benchDoc); err != nil {
			b.Fatal(err)
		}
	}
}
