package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/sink"
)

// holdInvoices is the retention section's hold of public.invoices.
const holdInvoices = "  holds: [public.invoices]\n"

// retentionTrail sets up a trail written by a role that is not a
// superuser, with the integrity log, public.orders kept 30 days and
// public.invoices held, and writes entries of theirs: 250 orders and 20
// invoices five months old, 30 orders ten days old, 5 orders now. It
// returns the configuration (with the retention section's keys
// retention, default a hold on public.invoices, and the sections extra),
// the database and the signer key's file.
func retentionTrail(t *testing.T, retention string, extra ...string) (cfg, dsn, signerFile string) {
	t.Helper()
	ctx := context.Background()
	// The role first: it is dropped after the database, which holds its
	// grants.
	role := fmt.Sprintf("cleaner_%d", time.Now().UnixNano()%1_000_000)
	pgtest.Exec(t, srv.DSN("postgres"), `CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() {
		if conn, err := pgx.Connect(ctx, srv.DSN("postgres")); err == nil {
			conn.Exec(ctx, `DROP ROLE IF EXISTS `+role)
			conn.Close(ctx)
		}
	})
	dsn = srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY, note text)`, `CREATE TABLE public.invoices (id int PRIMARY KEY)`)
	sinkDSN := strings.Replace(dsn, "postgres://postgres@", "postgres://"+role+"@", 1)

	keys := t.TempDir()
	signerFile = filepath.Join(keys, "signer.key")
	if out, code := walscribe(t, "keygen", "--signer", signerFile, "--name", "test.example/cleanup"); code != 0 {
		t.Fatalf("keygen: %d\n%s", code, out)
	}
	cfg = writeConfig(t, strings.Join(extra, "")+fmt.Sprintf(`source:
  dsn: %q
sink:
  dsn: %q
http:
  listen: ""
log:
  format: json
integrity:
  enabled: true
  signer_key_file: %q
retention:
  delete_batch: 100
%stables:
  - name: public.orders
    retention: 30d
  - name: public.invoices
    retention: 30d
`, dsn, sinkDSN, signerFile, retention))
	if out, code := walscribe(t, "setup", "--config", cfg, "--admin-sink-dsn", dsn); code != 0 {
		t.Fatalf("setup: %d\n%s", code, out)
	}

	// Entries written long ago, by the daemon's role.
	signer, err := integrity.LoadSigner(signerFile)
	if err != nil {
		t.Fatal(err)
	}
	s := sink.NewPostgres(sink.Config{DSN: sinkDSN, Schema: "audit", Slot: "walscribe", BatchMaxEntries: 1000, BatchMaxWait: time.Second,
		Classes: []string{"30d"}, Integrity: &sink.IntegrityConfig{Signer: signer, Interval: time.Millisecond, LeafHashing: sink.HashBoth}}, zap.NewNop())
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	lsn := pglogrepl.LSN(0x1000000)
	write := func(table string, at time.Time, n int) {
		tx := &audit.Transaction{Xid: uint32(lsn >> 12), CommitLSN: lsn, EndLSN: lsn + 0x100, CommittedAt: at}
		lsn += 0x1000
		for i := range n {
			tx.Entries = append(tx.Entries, audit.Entry{Seq: int32(i + 1), Schema: "public", Table: table, Action: audit.Insert,
				PK: fmt.Appendf(nil, `{"id":%d}`, i), New: fmt.Appendf(nil, `{"id":%d}`, i), Class: "30d"})
		}
		if err := s.Write(ctx, []*audit.Transaction{tx}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	write("orders", now.AddDate(0, -5, 0), 250)
	write("invoices", now.AddDate(0, -5, 0), 20)
	write("orders", now.AddDate(0, 0, -10), 30)
	write("orders", now, 5)
	s.Close(ctx)
	return cfg, dsn, signerFile
}

// TestCleanupCommand: walscribe cleanup, as the daemon's own role (not a
// superuser), shows what expired with --dry-run and removes nothing, then
// removes exactly that; --table with --older-than removes a table's older
// entries whatever their period; walscribe verify accepts the holes.
func TestCleanupCommand(t *testing.T) {
	cfg, dsn, signerFile := retentionTrail(t, holdInvoices)

	conn := pgtest.Connect(t, dsn)
	orders := func() int { return count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'orders'`) }
	out, code := walscribe(t, "cleanup", "--config", cfg, "--dry-run")
	if code != 0 || !strings.Contains(out, "250 entries would go (dry run") || !strings.Contains(out, `20 expired entries of "public"."invoices" stay`) {
		t.Fatalf("cleanup --dry-run: %d\n%s", code, out)
	}
	if orders() != 285 {
		t.Fatalf("the dry run removed entries: %d orders left", orders())
	}
	out, code = walscribe(t, "cleanup", "--config", cfg)
	if code != 0 || !strings.Contains(out, "250 entries removed") {
		t.Fatalf("cleanup: %d\n%s", code, out)
	}
	if got := orders(); got != 35 {
		t.Errorf("%d orders entries left, want 35", got)
	}
	out, code = walscribe(t, "cleanup", "--config", cfg, "--table", "public.orders", "--older-than", "7d")
	if code != 0 || !strings.Contains(out, "30 entries removed") {
		t.Fatalf("cleanup --table --older-than: %d\n%s", code, out)
	}
	if got := orders(); got != 5 {
		t.Errorf("%d orders entries left, want 5", got)
	}
	out, code = walscribe(t, "verify", "--config", cfg, "--key", signerFile+".pub")
	if code != 0 || !regexp.MustCompile(`280 entries removed by retention, as [0-9]+ signed prune records say`).MatchString(out) {
		t.Errorf("verify after the cleanups: %d\n%s", code, out)
	}
	out, code = walscribe(t, "status", "--config", cfg)
	if code != 0 || !regexp.MustCompile(`retention +periods 30d; schedule off; [0-9]+ purges recorded, 280 entries removed`).MatchString(out) ||
		!strings.Contains(out, "legal holds         public.invoices") {
		t.Errorf("status after the cleanups: %d\n%s", code, out)
	}
	out, code = walscribe(t, "cleanup", "--config", cfg, "--older-than", "7d")
	if code == 0 || !strings.Contains(out, "--older-than needs the tables") {
		t.Errorf("--older-than without --table: %d\n%s", code, out)
	}
}

// TestRetentionSchedule: with retention.schedule, walscribe run removes
// the expired entries itself, on the record, and goes on writing after
// the purge; the trail verifies.
func TestRetentionSchedule(t *testing.T) {
	cfg, dsn, signerFile := retentionTrail(t, holdInvoices+"  schedule: 1h\n")
	startRun(t, cfg, nil)
	conn := pgtest.Connect(t, dsn)
	eventually(t, "the expired entries removed", 60*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'orders'`) == 35
	})
	if n := count(t, conn, `SELECT count(*) FROM audit.prunes`); n < 1 {
		t.Errorf("%d prune records", n)
	}
	// The daemon's own writes go on after the log the cleanup extended.
	pgtest.Exec(t, dsn, `INSERT INTO public.orders VALUES (1, 'after the cleanup')`)
	eventually(t, "the new order stored", 30*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'orders'`) == 36
	})
	if out, code := walscribe(t, "verify", "--config", cfg, "--key", signerFile+".pub"); code != 0 || !strings.Contains(out, "250 entries removed by retention") {
		t.Errorf("verify: %d\n%s", code, out)
	}
}

// TestCleanupArchive: with retention.archive, an expired partition is
// exported before it is dropped, and the export is on the record.
func TestCleanupArchive(t *testing.T) {
	dir := t.TempDir()
	cfg, dsn, signerFile := retentionTrail(t, "  archive: true\n", fmt.Sprintf("export:\n  to: %q\n", dir))
	out, code := walscribe(t, "cleanup", "--config", cfg)
	if code != 0 || !regexp.MustCompile(`archived 270 entries of entries_\d{4}m\d\d_30d`).MatchString(out) || !strings.Contains(out, "270 entries removed") {
		t.Fatalf("cleanup: %d\n%s", code, out)
	}
	leaf := regexp.MustCompile(`entries_\d{4}m\d\d_30d`).FindString(out)
	matches, _ := filepath.Glob(filepath.Join(dir, "archive-"+leaf+"-270", "*.zip"))
	if len(matches) != 1 {
		t.Errorf("the archive of %s: %v", leaf, matches)
	}
	conn := pgtest.Connect(t, dsn)
	if n := count(t, conn, `SELECT count(*) FROM audit.exports WHERE export_id = $1 AND state = 'succeeded' AND entries = 270`, "archive-"+leaf+"-270"); n != 1 {
		t.Errorf("the archive's export is not in the history as succeeded with 270 entries")
	}
	if out, code := walscribe(t, "verify", "--config", cfg, "--key", signerFile+".pub"); code != 0 {
		t.Errorf("verify: %d\n%s", code, out)
	}
}
