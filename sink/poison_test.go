package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/migrations"
)

// poison are values a session variable, a logical message or a row can
// carry that the server refuses somewhere: in jsonb, in text, in an index
// row.
var poison = []string{
	`{"n": 1e999999}`, `{"k": "\ud800"}`, `{"a": "\u0000"}`, "{\"a\": \"\x00\"}", "\xff\xfe", "a\x00b",
	strings.Repeat("[", 30000) + strings.Repeat("]", 30000), `[1e-99999]`, `not json`, ``, `null`, `{}`,
	strings.Repeat("é", 4000), `{"deep": ` + strings.Repeat(`{"a":`, 2000) + `1` + strings.Repeat(`}`, 2000) + `}`,
}

// FuzzSinkStoresAnything: whatever an entry's values are, the sink stores
// it — changed only as far as the server needs, flagged — and never stops
// on it. make test runs the seeds against the real server; go test -fuzz
// runs it longer.
func FuzzSinkStoresAnything(f *testing.F) {
	for _, p := range poison {
		f.Add([]byte(p), p)
	}
	p, conn := openSink(f, metrics.Discard())
	ctx := context.Background()
	lsn := pglogrepl.LSN(1 << 32)
	f.Fuzz(func(t *testing.T, raw []byte, text string) {
		lsn += 0x100
		c := &audit.Context{ActorID: text, Actor: text, RequestID: text + text, UserAgent: text, Extra: raw}
		tx := &audit.Transaction{Xid: 7, CommitLSN: lsn, EndLSN: lsn + 1, CommittedAt: time.Now().UTC(), Count: 2,
			Entries: []audit.Entry{
				{Seq: 1, Schema: text, Table: text, Action: audit.Action(text), PK: raw, Old: raw, New: raw, Changed: []string{text}, Ctx: c},
				{Seq: 2, Schema: "public", Table: "fine", Action: audit.Insert, PK: []byte(`{"id": 1}`), New: []byte(`{"id": 1}`)},
			}}
		before := p.lastID
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := p.writeRetrying(wctx, []*audit.Transaction{tx}); err != nil {
			t.Fatalf("the sink stopped on %q / %q: %v", raw, text, err)
		}
		if p.lastID != before+2 {
			t.Fatalf("%d entries stored, want 2", p.lastID-before)
		}
		var fine int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE id = $1 AND table_name = 'fine' AND pk = '{"id": 1}'`, before+2).Scan(&fine); err != nil || fine != 1 {
			t.Fatalf("the entry beside the poisoned one: %d, %v", fine, err)
		}
	})
}

// TestRefusedBatchInANewMonth: a batch the server refuses rolls back the
// partitions it created; the sink must not take them as there when it
// stores the batch again, a transaction at a time.
func TestRefusedBatchInANewMonth(t *testing.T) {
	p, conn := openSink(t, metrics.Discard())
	ctx := context.Background()
	when := time.Date(2031, 5, 10, 12, 0, 0, 0, time.UTC) // a month no partition exists for yet
	wide := []byte(`"` + randomHex(3000) + `"`)
	txs := []*audit.Transaction{
		{Xid: 1, CommitLSN: 0x100, EndLSN: 0x101, CommittedAt: when, Count: 1, Entries: []audit.Entry{
			{Seq: 1, Schema: "public", Table: "fine", Action: audit.Insert, PK: []byte(`{"id": 1}`), New: []byte(`{"id": 1}`)}}},
		{Xid: 2, CommitLSN: 0x200, EndLSN: 0x201, CommittedAt: when, Count: 1, Entries: []audit.Entry{
			{Seq: 1, Schema: randomHex(3000), Table: "poison", Action: audit.Insert, PK: wide, New: []byte(`{"id": 2}`)}}},
	}
	if err := p.writeRetrying(ctx, txs); err != nil {
		t.Fatalf("the sink stopped: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE committed_at = $1`, when).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d entries stored in the new month, want 2: %v", n, err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE table_name = 'poison' AND 'text_clipped' = ANY(flags)`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the refused entry: %d stored clipped, %v", n, err)
	}
}

// randomHex is n hex digits of random data: text the server cannot
// compress below an index's row limit.
func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// TestApplicationLocksDoNotBlock: the sink's writer lock is not in the key
// space of the advisory locks applications take: an application holding
// the lock walscribe once used (hashtext of the same name, one bigint key)
// does not stop the sink.
func TestApplicationLocksDoNotBlock(t *testing.T) {
	p, conn := openSink(t, metrics.Discard())
	ctx := context.Background()
	app := pgtest.Connect(t, p.cfg.DSN)
	if _, err := app.Exec(ctx, `SELECT pg_advisory_lock(hashtext('walscribe.sink.audit')), pg_advisory_lock(hashtext('walscribe.migrations.audit'))`); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tx := &audit.Transaction{Xid: 1, CommitLSN: 0x100, EndLSN: 0x101, CommittedAt: time.Now().UTC(), Count: 1, Entries: []audit.Entry{
		{Seq: 1, Schema: "public", Table: "t", Action: audit.Insert, PK: []byte(`{"id": 1}`), New: []byte(`{"id": 1}`)}}}
	if err := p.writeRetrying(wctx, []*audit.Transaction{tx}); err != nil {
		t.Fatalf("the sink waited for an application's advisory lock: %v", err)
	}
	if _, err := migrations.Apply(wctx, conn, "audit"); err != nil {
		t.Fatalf("the migrations waited for an application's advisory lock: %v", err)
	}
}
