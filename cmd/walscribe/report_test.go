package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportCommand: walscribe report prints a summary of the entries a
// filter selects, and writes them as CSV to a file; bad filters are
// refused with what to write.
func TestReportCommand(t *testing.T) {
	cfg, _, _ := retentionTrail(t, holdInvoices)
	out, code := walscribe(t, "report", "--config", cfg, "--days", "400")
	if code != 0 || !strings.Contains(out, "305 entries") || !strings.Contains(out, "public.orders    285      insert") {
		t.Fatalf("report: %d\n%s", code, out)
	}
	file := filepath.Join(t.TempDir(), "orders.csv")
	out, code = walscribe(t, "report", "--config", cfg, "--since", "2000-01-01", "--table", "public.invoices", "--format", "csv", "--output", file)
	if code != 0 {
		t.Fatalf("report --format csv: %d\n%s", code, out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil || len(records) != 21 || records[1][7] != "invoices" {
		t.Fatalf("the CSV: %d records, %v", len(records), err)
	}
	for _, bad := range [][]string{{"--days", "3", "--since", "2026-01-01"}, {"--since", "yesterday"}, {"--ip", "not an ip"}, {"--format", "xml"}} {
		if out, code := walscribe(t, append([]string{"report", "--config", cfg}, bad...)...); code == 0 {
			t.Errorf("report %v: accepted\n%s", bad, out)
		}
	}
}
