package watch

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/migrations"
	"github.com/walscribe/walscribe/sink"
	"github.com/walscribe/walscribe/verify"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

var _ Recorder = (*sink.Postgres)(nil)

// The alerts reach the trail once per breach, through a sink of their own
// writing beside the daemon's: the ids the evaluator gives the entries are
// the ids stored, alert entries interleaved and all, and the trail stays
// dense (and, with the integrity log, verifies).
func TestRecordedOncePerBreach(t *testing.T) {
	for _, c := range []struct {
		name       string
		log        bool
		concurrent bool
	}{{"plain", false, false}, {"integrity", true, false}, {"concurrent", false, true}, {"concurrent integrity", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			testRecorded(t, c.log, !c.concurrent)
		})
	}
}

// serialRecorder keeps its Records apart from the test's Writes.
type serialRecorder struct {
	mu *sync.Mutex
	r  Recorder
}

func (s serialRecorder) Record(ctx context.Context, table, action string, detail any) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Record(ctx, table, action, detail)
}

func testRecorded(t *testing.T, withLog, serial bool) {
	ctx := t.Context()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	cfg := sink.Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: 10 * time.Millisecond}
	if withLog {
		signerKey, _, err := integrity.GenerateKey("watch.test")
		if err != nil {
			t.Fatal(err)
		}
		signer, err := integrity.ParseSigner(signerKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Integrity = &sink.IntegrityConfig{Signer: signer, Interval: time.Millisecond, LeafHashing: sink.HashSink}
	}
	daemonSink := sink.NewPostgres(cfg, zap.NewNop())
	if err := daemonSink.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer daemonSink.Close(context.WithoutCancel(ctx))
	// The recorder is a sink of its own: Record opens it when first
	// needed.
	recorderSink := sink.NewPostgres(cfg, zap.NewNop())
	defer recorderSink.Close(context.WithoutCancel(ctx))
	var recorder Recorder = recorderSink
	var mu sync.Mutex // held by the test's writes, and the recorder's when serial
	if serial {
		recorder = serialRecorder{&mu, recorderSink}
	}

	e, err := New(Config{Rules: []Rule{{Name: "bulk_deletes", Kind: Threshold, Tables: []string{"public.*"}, Actions: []string{"delete"}, Count: 3}}},
		Deps{Recorder: recorder, Registerer: prometheus.NewRegistry(), Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Open(ctx); err != nil {
		t.Fatal(err)
	}

	lsn := pglogrepl.LSN(0x1000000)
	at := time.Now().UTC().Truncate(time.Second)
	// store writes one transaction as the daemon's sink does, and
	// evaluates it with the first id the sink gave it.
	store := func(offset time.Duration, entries ...audit.Entry) {
		t.Helper()
		tx := txn(at.Add(offset), entries...)
		tx.CommitLSN, tx.EndLSN = lsn, lsn+0x100
		lsn += 0x1000
		mu.Lock()
		err := daemonSink.Write(ctx, []*audit.Transaction{tx})
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		_, last := daemonSink.Progress()
		e.Observe(last-int64(len(entries))+1, []*audit.Transaction{tx})
	}
	store(0, del("42"), del("42"), del("42"))
	store(time.Second, del("42"), del("7"), change("public", "orders", audit.Update, "42"))
	for i := range 10 { // the breach goes on, while the first alert is being recorded
		store(2*time.Second+time.Duration(i)*100*time.Millisecond, del("42"), del("42"))
	}
	store(5*time.Minute, repeat(del("42"), 4)...) // a second breach
	store(5*time.Minute, repeat(del("7"), 3)...)  // 7 stays at count
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}

	rows, err := conn.Query(ctx, `SELECT new::text FROM audit.entries
		WHERE schema_name = 'walscribe' AND table_name = 'watch' AND action = 'alert' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var alerts []Alert
	for rows.Next() {
		var text string
		var a Alert
		if err := rows.Scan(&text); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(text), &a); err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		alerts = append(alerts, a)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(alerts) != 2 || alerts[0].Group != "42" || alerts[1].Group != "42" {
		t.Fatalf("alerts stored: %+v; want two, of actor 42", alerts)
	}
	for _, a := range alerts {
		// The entry that fired is the 4th delete by 42 in the window.
		var actor, action string
		var before int
		if err := conn.QueryRow(ctx, `SELECT actor_id, action,
				(SELECT count(*) FROM audit.entries b WHERE b.actor_id = '42' AND b.action = 'delete' AND b.id < e.id AND b.id >= $2)
			FROM audit.entries e WHERE id = $1`, a.EntryID, a.FirstID).Scan(&actor, &action, &before); err != nil {
			t.Fatal(err)
		}
		if actor != "42" || action != "delete" || before != 3 || !slices.Contains(a.Sample, a.EntryID) || a.Count < 4 {
			t.Errorf("alert %s: entry %d is %s by %s with %d before it from %d; sample %v", a.ID, a.EntryID, action, actor, before, a.FirstID, a.Sample)
		}
	}

	// Dense ids, the alerts among them; the daemon's progress counts them.
	var n, maxID, own int64
	if err := conn.QueryRow(ctx, `SELECT count(*), max(id), (SELECT count(*) FROM audit.own_entries) FROM audit.entries`).Scan(&n, &maxID, &own); err != nil {
		t.Fatal(err)
	}
	if n != maxID || own != 2 {
		t.Errorf("%d entries up to id %d, %d of walscribe's own: want dense ids and 2", n, maxID, own)
	}
	if !withLog {
		return
	}
	if err := daemonSink.SignPending(ctx); err != nil {
		t.Fatal(err)
	}
	other := pgtest.Connect(t, dsn)
	v, _ := integrity.VerifierOf(cfg.Integrity.Signer)
	r, err := verify.Run(ctx, conn, other, verify.Options{Schema: "audit", Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Intact || r.Entries != n {
		t.Errorf("verify: intact %v, %d entries of %d, findings %+v", r.Intact, r.Entries, n, r.Findings)
	}
}
