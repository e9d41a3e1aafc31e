package daemon

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walscribe/walscribe/metrics"
)

// TestGeneratedColumnsMarked: before PostgreSQL 18 the stream does not
// carry stored generated columns. The entries of such a table say so
// (generated_absent), the key does not silently become another one (a
// generated key column makes pk the whole row sent, flagged pk_incomplete),
// and the metric counts the tables.
func TestGeneratedColumnsMarked(t *testing.T) {
	h := newHarness(t, `CREATE TABLE g (a int PRIMARY KEY, twice int GENERATED ALWAYS AS (a * 2) STORED, note text);
		CREATE TABLE gk (a int, k int GENERATED ALWAYS AS (a + 1) STORED PRIMARY KEY, note text)`, "g", "gk")
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.start()
	h.exec(`INSERT INTO g (a, note) VALUES (1, 'x'); INSERT INTO gk (a, note) VALUES (1, 'x')`)
	h.exec(`UPDATE g SET note = 'y'; UPDATE gk SET note = 'y'`)
	h.sync()
	h.stop()
	for _, c := range []struct{ table, pk, flags string }{
		{"g", `{"a": 1}`, "{generated_absent}"},
		{"gk", `{"a": 1, "note": "x"}`, "{generated_absent,pk_incomplete}"},
	} {
		if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = $1 AND action = 'insert' AND pk = $2::jsonb AND flags::text = $3 AND NOT new ? 'twice' AND NOT new ? 'k'`,
			c.table, c.pk, c.flags); n != 1 {
			t.Errorf("%s: the insert is not keyed %s and flagged %s", c.table, c.pk, c.flags)
		}
		if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = $1 AND action = 'update' AND flags::text = $2`, c.table, c.flags); n != 1 {
			t.Errorf("%s: the update is not flagged %s", c.table, c.flags)
		}
	}
	if n := testutil.ToFloat64(m.Errors.WithLabelValues("generated_absent")); n != 2 {
		t.Errorf("generated_absent counted %v times, want 2 (one per table)", n)
	}
}
