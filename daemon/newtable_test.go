package daemon

import (
	"fmt"
	"testing"

	"github.com/walscribe/walscribe/rules"
)

// TestNewTableKeyedByItsKey: a transaction's commit record reaches the
// stream a moment before other sessions see what it created, the catalog
// session included. A table created and written in one transaction was
// sometimes decoded in that moment, found missing, and keyed by every
// column; the catalog now waits for it (about 0.6 s at most).
func TestNewTableKeyedByItsKey(t *testing.T) {
	h := newHarness(t, `CREATE TABLE x (id int PRIMARY KEY)`, "x")
	rs := mustRules(t, rules.Config{Tables: []rules.TableConfig{{Name: "public.*"}}, ExcludeTables: []string{"public.oracle_*"}})
	h.cfg.Rules, h.setupRules = rs, rs
	h.setup()
	h.start()
	for i := range 30 {
		h.exec(fmt.Sprintf(`BEGIN; CREATE TYPE kind%[1]d AS ENUM ('a', 'b'); CREATE TABLE fresh%[1]d (id int PRIMARY KEY, v text, k kind%[1]d);
			INSERT INTO fresh%[1]d VALUES (1, 'first row', 'a'); COMMIT`, i))
	}
	h.sync()
	h.stop()
	if bad := h.strings(`SELECT table_name || ' ' || pk::text || ' ' || coalesce(flags::text, '') FROM audit.entries
		WHERE table_name LIKE 'fresh%' AND (pk <> '{"id": 1}' OR flags IS NOT NULL)`); len(bad) > 0 {
		t.Errorf("entries of tables created in their transaction keyed otherwise, or flagged: %v", bad)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name LIKE 'fresh%'`); n != 30 {
		t.Errorf("%d entries of the new tables, want 30", n)
	}
}
