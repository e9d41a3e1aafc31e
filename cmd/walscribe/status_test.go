package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestStatusNamesUnguardedTables: status names a tracked table whose
// context trigger was dropped, and says what to run.
func TestStatusNamesUnguardedTables(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE items (id int PRIMARY KEY)`)
	cfg := writeConfig(t, configFor(dsn, "public.items"))
	setUp(t, cfg)
	pgtest.Exec(t, dsn, `DROP TRIGGER walscribe_context ON items`)
	out, code := walscribe(t, "status", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("status: %s", out)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(rep.UnguardedTables) != 1 || rep.UnguardedTables[0] != "public.items" {
		t.Errorf("unguarded_tables = %v, want [public.items]", rep.UnguardedTables)
	}
	if out, _ := walscribe(t, "status", "--config", cfg); !strings.Contains(out, "public.items is missing, disabled, not ENABLE ALWAYS or not walscribe's") || !strings.Contains(out, "run walscribe setup") {
		t.Errorf("status does not name the unguarded table:\n%s", out)
	}
}
