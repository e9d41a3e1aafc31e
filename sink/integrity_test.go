package sink

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/migrations"
	"github.com/walscribe/walscribe/verify"
)

// orderedBatch is testBatch with commit positions in order, starting at
// from: entries of every kind of value, a spilled transaction among them.
func orderedBatch(from pglogrepl.LSN) []*audit.Transaction {
	batch := testBatch()
	for i, tx := range batch {
		tx.CommitLSN = from + pglogrepl.LSN(i)*0x1000
		tx.EndLSN = tx.CommitLSN + 0x100
	}
	return batch
}

// TestIntegrityLog: with integrity on, the sink keeps the log in the
// transactions that write entries; a trail of varied values verifies
// intact; a sink opened again goes on from the stored head; entries written
// before integrity was on are hashed into it; and a head altered under a
// running sink is found (walscribe_integrity_violations_total, Health).
func TestIntegrityLog(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := integrity.GenerateKey("test.example/sink")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := metrics.New(prometheus.NewRegistry(), "")
	open := func(withIntegrity bool) *Postgres {
		t.Helper()
		cfg := Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: time.Second, Metrics: m}
		if withIntegrity {
			cfg.Integrity = &IntegrityConfig{Signer: signer, Interval: time.Millisecond, Dir: dir, LeafHashing: HashBoth}
		}
		p := NewPostgres(cfg, zap.NewNop())
		if err := p.Open(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(ctx) })
		return p
	}
	check := func(wantSize int64) {
		t.Helper()
		other := pgtest.Connect(t, dsn)
		r, err := verify.Run(ctx, conn, other, verify.Options{Schema: "audit", Verifier: verifier, Dir: dir})
		other.Close(ctx)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if !r.Intact || r.TreeSize != wantSize || r.SignedSize != wantSize || r.External == 0 {
			t.Fatalf("verify: %+v, want intact, %d entries signed, checked against the file outside", r, wantSize)
		}
	}
	const n = 1 + 5 + 1 + 3000

	// Written before integrity was on, then hashed in at Open.
	p := open(false)
	if err := p.Write(ctx, orderedBatch(0x1000000)); err != nil {
		t.Fatal(err)
	}
	p.Close(ctx)
	p = open(true)
	if err := p.Write(ctx, orderedBatch(0x2000000)); err != nil {
		t.Fatal(err)
	}
	check(2 * n)
	if got := testutil.ToFloat64(m.IntegrityTreeSize); got != 2*n {
		t.Errorf("walscribe_integrity_tree_size %v, want %d", got, 2*n)
	}

	// Opened again: on from the stored head.
	p.Close(ctx)
	p = open(true)
	if err := p.Write(ctx, orderedBatch(0x3000000)); err != nil {
		t.Fatal(err)
	}
	check(3 * n)
	if p.inexact != 0 {
		t.Errorf("%d rows hashed by the server: the sink renders every row of the test batch itself", p.inexact)
	}
	if v, _ := p.IntegrityViolation(); v != "" || testutil.ToFloat64(m.IntegrityViolations) != 0 {
		t.Fatalf("a violation on an untouched log: %s", v)
	}

	// The newest checkpoint removed under the running sink: found at its
	// next checkpoint.
	pgtest.Exec(t, dsn, `ALTER TABLE audit.integrity_checkpoints DISABLE TRIGGER USER`,
		`DELETE FROM audit.integrity_checkpoints WHERE tree_size = (SELECT max(tree_size) FROM audit.integrity_checkpoints)`)
	if err := p.Write(ctx, orderedBatch(0x4000000)); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.IntegrityViolation(); v == "" || testutil.ToFloat64(m.IntegrityViolations) != 1 {
		t.Errorf("the newest checkpoint deleted: violation %q, counted %v; want it found once", v, testutil.ToFloat64(m.IntegrityViolations))
	}
	// An entry deleted at the end: found too.
	pgtest.Exec(t, dsn, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT c.oid::regclass AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		          WHERE n.nspname = 'audit' AND c.relkind = 'r' AND c.relname LIKE 'entries%' LOOP
			EXECUTE format('ALTER TABLE %s DISABLE TRIGGER USER', r.t);
		END LOOP; END $$`, `DELETE FROM audit.entries WHERE id = (SELECT max(id) FROM audit.entries)`)
	// The trail goes on; the violation is found at the next checkpoint.
	if err := p.Write(ctx, orderedBatch(0x5000000)); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.IntegrityViolation(); testutil.ToFloat64(m.IntegrityViolations) != 2 || !strings.Contains(v, "entry 12028, the newest of the last checkpoint, is gone") {
		t.Errorf("after the newest entry was deleted: violation %q, counted %v; want it found", v, testutil.ToFloat64(m.IntegrityViolations))
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Errorf("checkpoint files: %v %v, want one", entries, err)
	}
	var stored int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.integrity_leaves`).Scan(&stored); err != nil || stored < 4 {
		t.Errorf("%d leaf records, %v", stored, err)
	}
}

// TestIntegrityLogCutBack: a log cut back and rebuilt under the sink while
// its connection is down is found when it reconnects (its own log is the
// reference, not what it finds stored); at a fresh start the checkpoint
// kept outside the database is; and once a violation is found, the
// checkpoint directory's newest file is kept as evidence.
func TestIntegrityLogCutBack(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	skey, _, err := integrity.GenerateKey("test.example/sink")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.ParseSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	open := func(m *metrics.Metrics) *Postgres {
		t.Helper()
		p := NewPostgres(Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: time.Second, Metrics: m,
			Integrity: &IntegrityConfig{Signer: signer, Interval: time.Millisecond, Dir: dir, LeafHashing: HashBoth}}, zap.NewNop())
		if err := p.Open(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(ctx) })
		return p
	}
	m := metrics.New(prometheus.NewRegistry(), "")
	p := open(m)
	for i := range 2 {
		if err := p.Write(ctx, orderedBatch(pglogrepl.LSN(i+1)*0x1000000)); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, CheckpointFile(time.Now()))
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// The second batch's entries, leaf records and checkpoints removed;
	// the sink's connection cut.
	pgtest.Exec(t, dsn, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT c.oid::regclass AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		          WHERE n.nspname = 'audit' AND c.relkind = 'r' LOOP
			EXECUTE format('ALTER TABLE %s DISABLE TRIGGER USER', r.t);
		END LOOP; END $$`,
		`DELETE FROM audit.entries WHERE id > 3007`, `DELETE FROM audit.integrity_leaves WHERE first_id > 3007`,
		`DELETE FROM audit.integrity_checkpoints WHERE tree_size > 3007`, `DELETE FROM audit.checkpoints WHERE last_id > 3007`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'walscribe sink'`)
	if err := p.writeRetrying(ctx, orderedBatch(0x3000000)); err != nil {
		t.Logf("write after the cut: %v", err)
	}
	if v, _ := p.IntegrityViolation(); v == "" {
		t.Error("the log cut back while the sink was disconnected: no violation")
	}
	after, err := os.ReadFile(file)
	if err != nil || string(after) != string(before) {
		t.Errorf("the checkpoint file changed after the violation (%v):\n%s\nwas\n%s", err, after, before)
	}
	// A fresh start on the cut-back log: the file outside says so.
	p.Close(ctx)
	m2 := metrics.New(prometheus.NewRegistry(), "")
	p2 := open(m2)
	if v, _ := p2.IntegrityViolation(); !strings.Contains(v, "vouches for 6014 entries") && !strings.Contains(v, "does not give the root") {
		t.Errorf("a fresh start on the cut-back log: violation %q", v)
	}
}

// TestIntegritySampleCheck: at most once per checkpoint interval, one row
// the sink hashed is hashed by the server too. When they differ (here: a
// trigger alters the rows as they are inserted), the server hashes every
// row from then on, the batch's included, and the log stays true to what is
// stored.
func TestIntegritySampleCheck(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dsn, `CREATE FUNCTION public.later() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN NEW.captured_at := NEW.captured_at + interval '1 second'; RETURN NEW; END $$`,
		`CREATE TRIGGER later BEFORE INSERT ON audit.entries FOR EACH ROW EXECUTE FUNCTION public.later()`)
	skey, vkey, err := integrity.GenerateKey("test.example/sink")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.ParseSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "")
	cfg := &IntegrityConfig{Signer: signer, Interval: time.Millisecond, LeafHashing: HashSink}
	p := NewPostgres(Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: time.Second, Metrics: m,
		Integrity: cfg}, zap.NewNop())
	if err := p.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	for i := range 2 {
		if err := p.Write(ctx, orderedBatch(pglogrepl.LSN(i+1)*0x1000000)); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues("leaf_hash")); got != 1 || cfg.LeafHashing != HashServer {
		t.Errorf("leaf_hash errors %v, leaf hashing %q; want 1 and server", got, cfg.LeafHashing)
	}
	other := pgtest.Connect(t, dsn)
	r, err := verify.Run(ctx, conn, other, verify.Options{Schema: "audit", Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Intact || r.TreeSize != 2*3007 {
		t.Errorf("verify: %+v, want intact, 6014 entries", r)
	}
}

// TestIntegritySinkHashing: with the sink hashing (the default), a batch
// with a spilled transaction has its leaves appended to the tree after the
// COPY, a batch of transactions in memory beside it; the log verifies
// intact.
func TestIntegritySinkHashing(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := integrity.GenerateKey("test.example/sink")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.ParseSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPostgres(Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: time.Second,
		Metrics:   metrics.New(prometheus.NewRegistry(), ""),
		Integrity: &IntegrityConfig{Signer: signer, Interval: time.Millisecond, LeafHashing: HashSink}}, zap.NewNop())
	if err := p.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	withSpill := orderedBatch(0x1000000)
	inMemory := slices.DeleteFunc(orderedBatch(0x2000000), func(tx *audit.Transaction) bool { return tx.Spilled != nil })
	size := 0
	for _, tx := range slices.Concat(withSpill, inMemory) {
		size += tx.Len()
	}
	for _, b := range [][]*audit.Transaction{withSpill, inMemory} {
		if err := p.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if p.treesBeside != 1 || p.inexact != 0 {
		t.Errorf("%d trees appended beside the COPY, %d rows hashed by the server; want 1 and 0", p.treesBeside, p.inexact)
	}
	other := pgtest.Connect(t, dsn)
	r, err := verify.Run(ctx, conn, other, verify.Options{Schema: "audit", Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Intact || r.TreeSize != int64(size) || r.SignedSize != int64(size) {
		t.Errorf("verify: %+v, want intact, %d entries signed", r, size)
	}
}
