package daemon

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/rules"
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

// TestLaggingDaemonMarksWhatTheCatalogLost: a daemon that decodes changes
// after their domain or their table was dropped renders them with today's
// catalog: the value of a type gone is stored as text, flagged
// type_unknown; a table gone is keyed by every column, flagged table_unknown;
// both logged and counted, never silently.
func TestLaggingDaemonMarksWhatTheCatalogLost(t *testing.T) {
	h := newHarness(t, `CREATE DOMAIN posint AS int CHECK (VALUE > 0); CREATE TABLE dt (id int PRIMARY KEY, v posint)`, "dt")
	rs := mustRules(t, rules.Config{Tables: []rules.TableConfig{{Name: "public.*"}}, ExcludeTables: []string{"public.oracle_*"}})
	h.cfg.Rules, h.setupRules = rs, rs
	h.setup()
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.start()
	h.sync()
	h.stop()
	h.exec(`INSERT INTO dt VALUES (1, 5)`)
	h.exec(`ALTER TABLE dt ALTER COLUMN v TYPE int`)
	h.exec(`DROP DOMAIN posint`)
	h.exec(`CREATE TABLE gone_t (id int PRIMARY KEY, note text)`)
	h.exec(`INSERT INTO gone_t VALUES (1, 'a')`)
	h.exec(`DROP TABLE gone_t`)
	h.start()
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'dt' AND pk = '{"id": 1}' AND new = '{"id": 1, "v": "5"}' AND flags = '{type_unknown}'`); n != 1 {
		t.Error("the value of a dropped domain is not stored as text flagged type_unknown")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'gone_t' AND pk = '{"id": 1, "note": "a"}' AND flags = '{table_unknown}'`); n != 1 {
		t.Error("the change of a dropped table is not keyed by every column flagged table_unknown")
	}
	for _, kind := range []string{"type_unknown", "table_unknown"} {
		if n := testutil.ToFloat64(m.Errors.WithLabelValues(kind)); n != 1 {
			t.Errorf("%s counted %v times, want 1", kind, n)
		}
	}
}
