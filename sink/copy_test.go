package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/migrations"
)

var srv *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, &srv, pgtest.Options{}))
}

// openSink creates a database with the audit schema, as setup does, and
// opens a sink on it. It returns the sink and a connection (TimeZone UTC).
func openSink(t testing.TB, m *metrics.Metrics) (*Postgres, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SET TimeZone = 'UTC'`); err != nil {
		t.Fatal(err)
	}
	p := NewPostgres(Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000,
		BatchMaxWait: time.Second, Metrics: m}, zap.NewNop())
	if err := p.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	return p, conn
}

// fakeSpill is a spilled transaction's reader over entries in memory. Next
// fails with errBroken on entry failAt (counting from 0) when failAt >= 0.
type fakeSpill struct {
	entries []audit.Entry
	i       int
	failAt  int
	cur     audit.Entry // what Next returns: valid until the next call, as with the spool
	closed  bool
}

var errBroken = errors.New("read spill: broken file")

func (f *fakeSpill) Next() (*audit.Entry, error) {
	if f.i == f.failAt {
		return nil, errBroken
	}
	if f.i == len(f.entries) {
		return nil, nil
	}
	f.cur = f.entries[f.i]
	f.i++
	return &f.cur, nil
}

func (f *fakeSpill) Rewind() error { f.i = 0; return nil }
func (f *fakeSpill) Close() error  { f.closed = true; return nil }

var _ audit.EntryReader = (*fakeSpill)(nil)

// spilled returns a spilled transaction holding entries.
func spilled(tx audit.Transaction, entries []audit.Entry, failAt int) *audit.Transaction {
	tx.Spilled = &fakeSpill{entries: entries, failAt: failAt}
	tx.Count = len(entries)
	return &tx
}

// rowEntries returns n entries like the updates of a table's rows.
func rowEntries(n int, ctx *audit.Context) []audit.Entry {
	es := make([]audit.Entry, n)
	for i := range es {
		es[i] = audit.Entry{Seq: int32(i + 1), Schema: "public", Table: "orders", Action: audit.Update,
			PK:      fmt.Appendf(nil, `{"id": %d}`, i),
			Old:     fmt.Appendf(nil, `{"id": %d, "status": "new", "note": "%s"}`, i, strings.Repeat("x", i%300)),
			New:     fmt.Appendf(nil, `{"id": %d, "status": "paid", "note": "%s"}`, i, strings.Repeat("x", i%300)),
			Changed: []string{"status"}, Ctx: ctx}
	}
	return es
}

// testBatch is a batch with every kind of value of every column.
func testBatch() []*audit.Transaction {
	full := &audit.Context{ActorID: "42", Actor: "Zoë Ünïcödé 🚀", IP: netip.MustParsePrefix("10.1.2.3/8"),
		UserAgent: "curl/8.5 «ok»", RequestID: "req-1", DBUser: "app", ClientAddr: netip.MustParsePrefix("2001:db8::1/128"),
		ApplicationName: "shop", Extra: []byte(`{"tenant": "t1", "n": 1.50, "nested": {"a": [1, null, "é"]}}`)}
	mapped := &audit.Context{IP: netip.MustParsePrefix("::ffff:192.0.2.1/128"), ClientAddr: netip.MustParsePrefix("192.0.2.7/32"),
		Extra: []byte(`{}`)}
	mapped2 := &audit.Context{ActorID: "7", IP: netip.MustParsePrefix("::ffff:10.0.0.0/104"),
		ClientAddr: netip.MustParsePrefix("2001:db8::5/64"), DBUser: "postgres"}
	return []*audit.Transaction{
		{ // an event outside any transaction
			Xid: 0, CommitLSN: 0x16B3748, EndLSN: 0x16B3780,
			CommittedAt: time.Date(2024, 3, 5, 12, 34, 56, 789012345, time.UTC),
			Entries:     []audit.Entry{{Seq: 1, Schema: "walscribe", Table: "app", Action: "login", New: []byte(`{}`), Ctx: mapped2}},
			Count:       1,
		},
		{
			Xid: 4294967295, CommitLSN: 0xFFFFFFFF_00000010, EndLSN: 0xFFFFFFFF_00000100,
			CommittedAt: time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC),
			Entries: []audit.Entry{
				{Seq: 1, Schema: "public", Table: "clients", Action: audit.Insert, PK: []byte(`{"id": 1}`),
					New: []byte(`{"id": 1, "name": "Zoë", "s": "line\nbreak \"q\" \\ \u00e9", "big": 12345678901234567890.5}`), Ctx: full},
				{Seq: 2, Schema: "public", Table: "clients", Action: audit.Update, PK: []byte(`{"id": 1}`),
					Old: []byte(`{"id": 1, "name": "Zoë"}`), New: []byte(`{"id": 1, "name": "Zoé"}`),
					Changed: []string{"name", "prix €", ""}, Flags: []string{audit.FlagJSONReencoded, audit.FlagPKHashed}, Ctx: mapped},
				{Seq: 3, Schema: "public", Table: "clients", Action: audit.Update, PK: []byte(`{"id": 1}`),
					Old: []byte(`{"id": 1}`), New: []byte(`{"id": 1}`), Changed: []string{}, Ctx: &audit.Context{}},
				{Seq: 4, Schema: "public", Table: "clients", Action: audit.Delete, PK: []byte(`{"id": 1}`),
					Old: []byte(`{"id": 1, "name": "Zoé"}`)},
				{Seq: 5, Schema: "Ünï", Table: "tàble 🚀", Action: audit.Truncate, New: []byte(`{"cascade": false, "restart_identity": true}`)},
			},
			Count: 5,
		},
		{ // before 1970, not in UTC, and a row bigger than the buffer
			Xid: 1000, CommitLSN: 0x2000000, EndLSN: 0x2000100,
			CommittedAt: time.Date(1969, 7, 20, 20, 17, 40, 123456999, time.FixedZone("IST", 5*3600+1800)),
			Entries: []audit.Entry{{Seq: 1, Schema: "public", Table: "docs", Action: audit.Insert, PK: []byte(`{"id": 9}`),
				New: []byte(`{"id": 9, "body": "` + strings.Repeat("abcdé", 60_000) + `"}`), Ctx: full}},
			Count: 1,
		},
		spilled(audit.Transaction{Xid: 1001, CommitLSN: 0x3000000, EndLSN: 0x3000100,
			CommittedAt: time.Date(2025, 6, 30, 23, 59, 59, 1000, time.UTC)}, rowEntries(3000, mapped2), -1),
	}
}

// copyWithPgx stores batch in schema's entries, numbered from 1, the way
// the sink did with pgx's CopyFrom: the reference the sink's own encoding
// must match.
func copyWithPgx(t *testing.T, conn *pgx.Conn, schema string, batch []*audit.Transaction) {
	t.Helper()
	ctx := context.Background()
	conn.TypeMap().RegisterType(&pgtype.Type{Name: "pg_lsn", OID: 3220, Codec: pgtype.Int8Codec{}})
	var rows [][]any
	id := int64(1)
	for _, tx := range batch {
		if _, err := conn.Exec(ctx, `SELECT `+schema+`.ensure_partitions($1, $1, '{default}')`, tx.CommittedAt); err != nil {
			t.Fatal(err)
		}
		entries := tx.Entries
		if tx.Spilled != nil {
			entries = tx.Spilled.(*fakeSpill).entries
		}
		for i := range entries {
			rows = append(rows, pgxRow(id, tx, &entries[i]))
			id++
		}
	}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{schema, "entries"}, copyColumns, pgx.CopyFromRows(rows))
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("reference copy: %d of %d rows: %v", n, len(rows), err)
	}
}

// pgxRow is the row of entry e as the sink gave it to pgx's CopyFrom.
func pgxRow(id int64, tx *audit.Transaction, e *audit.Entry) []any {
	orNull := func(ok bool, v any) any {
		if !ok {
			return nil
		}
		return v
	}
	r := make([]any, len(copyColumns))
	r[0] = id
	r[1] = int64(tx.CommitLSN)
	r[2] = e.Seq
	r[3] = orNull(tx.Xid != 0, int64(tx.Xid))
	r[4] = tx.CommittedAt
	r[5] = e.Schema
	r[6] = e.Table
	r[7] = string(e.Action)
	r[8] = orNull(e.PK != nil, e.PK)
	r[9] = orNull(e.Old != nil, e.Old)
	r[10] = orNull(e.New != nil, e.New)
	r[11] = orNull(e.Changed != nil, e.Changed)
	r[12] = "default"
	if c := e.Ctx; c != nil {
		r[13] = orNull(c.ActorID != "", c.ActorID)
		r[14] = orNull(c.Actor != "", c.Actor)
		r[15] = orNull(c.IP.IsValid(), c.IP)
		r[16] = orNull(c.UserAgent != "", c.UserAgent)
		r[17] = orNull(c.RequestID != "", c.RequestID)
		r[18] = orNull(c.DBUser != "", c.DBUser)
		r[19] = orNull(c.ClientAddr.IsValid(), c.ClientAddr)
		r[20] = orNull(c.ApplicationName != "", c.ApplicationName)
		r[21] = orNull(c.Extra != nil, c.Extra)
	}
	flags := e.Flags
	if e.Ctx == nil && audit.IsRowAction(e.Action) {
		flags = append(flags, audit.FlagNoContext)
	}
	r[22] = orNull(flags != nil, flags)
	return r
}

// storedRows returns the entries of schema, by id, each column as text
// (nil for NULL), captured_at left out.
func storedRows(t *testing.T, conn *pgx.Conn, schema string) [][]*string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT ARRAY[id::text, commit_lsn::text, seq::text, xid::text,
		committed_at::text, schema_name, table_name, action, pk::text, old::text, new::text, changed::text,
		retention_class, actor_id, actor, ip::text, user_agent, request_id, db_user, client_addr::text,
		application_name, context::text, flags::text] FROM `+schema+`.entries ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]*string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func show(r []*string) string {
	var b strings.Builder
	for i, v := range r {
		if i > 0 {
			b.WriteString(" | ")
		}
		if v == nil {
			b.WriteString("NULL")
		} else if len(*v) > 80 {
			fmt.Fprintf(&b, "%q…(%d bytes)", (*v)[:80], len(*v))
		} else {
			fmt.Fprintf(&b, "%q", *v)
		}
	}
	return b.String()
}

func TestCopyStoresWhatPgxStored(t *testing.T) {
	ctx := context.Background()
	m := metrics.New(prometheus.NewRegistry(), "")
	p, conn := openSink(t, m)
	batch := testBatch()
	if err := p.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	const n = 1 + 5 + 1 + 3000
	if end, last := p.Progress(); end != 0xFFFFFFFF_00000100 || last != n {
		t.Errorf("progress: %s, %d; want FFFFFFFF/100, %d", end, last, n)
	}

	if _, err := migrations.Apply(ctx, conn, "ref"); err != nil {
		t.Fatal(err)
	}
	copyWithPgx(t, conn, "ref", testBatch())
	got, want := storedRows(t, conn, "audit"), storedRows(t, conn, "ref")
	if len(got) != n || len(want) != n {
		t.Fatalf("%d rows stored, %d by pgx; want %d", len(got), len(want), n)
	}
	for i := range got {
		if show(got[i]) != show(want[i]) || !sameText(got[i], want[i]) {
			t.Errorf("row %d:\n got  %s\n want %s", i+1, show(got[i]), show(want[i]))
		}
	}

	// The values themselves, in case both paths were wrong alike.
	col := func(id int, name string) string {
		for i, c := range copyColumns {
			if c == name {
				if v := got[id-1][i]; v != nil {
					return *v
				}
				return "NULL"
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	for _, c := range []struct {
		id         int
		name, want string
	}{
		{1, "xid", "NULL"},
		{1, "commit_lsn", "0/16B3748"},
		{1, "committed_at", "2024-03-05 12:34:56.789012+00"},
		{1, "new", "{}"},
		{1, "ip", "::ffff:10.0.0.0/104"},
		{1, "client_addr", "2001:db8::5/64"},
		{1, "actor", "NULL"},
		{2, "xid", "4294967295"},
		{2, "commit_lsn", "FFFFFFFF/10"},
		{2, "committed_at", "1999-12-31 23:59:59.999999+00"},
		{2, "actor", "Zoë Ünïcödé 🚀"},
		{2, "ip", "10.1.2.3/8"},
		{2, "client_addr", "2001:db8::1/128"},
		{2, "changed", "NULL"},
		{2, "context", `{"n": 1.50, "nested": {"a": [1, null, "é"]}, "tenant": "t1"}`},
		{3, "changed", `{name,"prix €",""}`},
		{3, "flags", `{json_reencoded,pk_hashed}`},
		{2, "flags", "NULL"},
		{3, "ip", "::ffff:192.0.2.1/128"},
		{3, "client_addr", "192.0.2.7/32"},
		{3, "context", "{}"},
		{4, "changed", "{}"},
		{4, "context", "NULL"},
		{5, "actor_id", "NULL"},
		{5, "new", "NULL"},
		{6, "schema_name", "Ünï"},
		{6, "table_name", "tàble 🚀"},
		{6, "pk", "NULL"},
		{7, "committed_at", "1969-07-20 14:47:40.123456+00"},
		{8, "committed_at", "2025-06-30 23:59:59.000001+00"},
		{8, "seq", "1"},
		{n, "seq", "3000"},
		{n, "retention_class", "default"},
	} {
		if got := col(c.id, c.name); got != c.want {
			t.Errorf("entry %d: %s = %q, want %q", c.id, c.name, got, c.want)
		}
	}

	if got := testutil.ToFloat64(m.EntriesWritten.WithLabelValues("public", "orders", "update")); got != 3000 {
		t.Errorf("entries written (public.orders, update): %v, want 3000", got)
	}
	if got := testutil.ToFloat64(m.EntriesWritten.WithLabelValues("public", "clients", "update")); got != 2 {
		t.Errorf("entries written (public.clients, update): %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.ContextEntries.WithLabelValues("true")); got != 3000+1+1+1 {
		t.Errorf("entries with an actor: %v, want %d", got, 3000+1+1+1)
	}
}

func sameText(a, b []*string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || a[i] != nil && *a[i] != *b[i] {
			return false
		}
	}
	return true
}

func TestCopyFailsWithTheSpilledTransaction(t *testing.T) {
	ctx := context.Background()
	p, conn := openSink(t, nil)
	first := []*audit.Transaction{{Xid: 1, CommitLSN: 0x100, EndLSN: 0x110, CommittedAt: time.Now(),
		Entries: rowEntries(1, nil), Count: 1}}
	if err := p.Write(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The file breaks well after the first messages of the COPY are sent.
	batch := []*audit.Transaction{
		{Xid: 2, CommitLSN: 0x200, EndLSN: 0x210, CommittedAt: time.Now(), Entries: rowEntries(2, nil), Count: 2},
		spilled(audit.Transaction{Xid: 3, CommitLSN: 0x300, EndLSN: 0x310, CommittedAt: time.Now()}, rowEntries(5000, nil), 4000),
	}
	err := p.Write(ctx, batch)
	if !errors.Is(err, errBroken) {
		t.Fatalf("Write: %v, want %v", err, errBroken)
	}
	var entries, checkpoints int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit.entries), (SELECT count(*) FROM audit.checkpoints)`).
		Scan(&entries, &checkpoints); err != nil {
		t.Fatal(err)
	}
	if entries != 1 || checkpoints != 1 {
		t.Errorf("after the failed write: %d entries, %d checkpoints; want 1, 1", entries, checkpoints)
	}
	if end, last := p.Progress(); end != 0x110 || last != 1 {
		t.Errorf("progress after the failed write: %s, %d; want 0/110, 1", end, last)
	}

	// Once the file reads again, the same batch is written whole, on the
	// same connection.
	batch[1].Spilled.(*fakeSpill).failAt = -1
	if err := p.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var maxID int64
	var end string
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit.entries), (SELECT max(id) FROM audit.entries),
		(SELECT max(end_lsn)::text FROM audit.checkpoints)`).Scan(&entries, &maxID, &end); err != nil {
		t.Fatal(err)
	}
	if entries != 5003 || maxID != 5003 || end != pglogrepl.LSN(0x310).String() {
		t.Errorf("after the retry: %d entries, last id %d, checkpoint %s; want 5003, 5003, 0/310", entries, maxID, end)
	}
}

// TestCopyReaderStream reads the stream of a large batch as pgconn does and
// checks its framing, that every read but the last is full, and that the
// buffer stays small.
func TestCopyReaderStream(t *testing.T) {
	entries := rowEntries(20_000, &audit.Context{ActorID: "1"})
	entries[10_000].New = []byte(`{"body": "` + strings.Repeat("x", 1<<20) + `"}`) // a row of 1 MiB
	batch := []*audit.Transaction{
		{Xid: 1, CommitLSN: 0x100, EndLSN: 0x110, CommittedAt: time.Now(), Entries: rowEntries(3, nil), Count: 3},
		spilled(audit.Transaction{Xid: 2, CommitLSN: 0x200, EndLSN: 0x210, CommittedAt: time.Now()}, entries, -1),
	}
	r := newCopyReader(batch, 1)
	var stream bytes.Buffer
	p := make([]byte, 65531) // what pgconn reads into
	short := 0
	for {
		n, err := r.Read(p)
		stream.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n < len(p) {
			short++
		}
	}
	if short > 1 {
		t.Errorf("%d short reads, want at most the last one", short)
	}
	if c := cap(r.buf); c > 4*copyBufSize {
		t.Errorf("buffer of %d bytes at the end, want at most %d", c, 4*copyBufSize)
	}
	if n := r.tally[tallyKey{"public", "orders", audit.Update, true}]; n != 20_000 {
		t.Errorf("tally: %d entries with an actor, want 20000", n)
	}

	b := stream.Bytes()
	if !bytes.HasPrefix(b, []byte("PGCOPY\n\377\r\n\000\000\000\000\000\000\000\000\000")) {
		t.Fatalf("header: %q", b[:min(len(b), 19)])
	}
	b = b[19:]
	rows := 0
	for {
		cols := int16(binary.BigEndian.Uint16(b))
		b = b[2:]
		if cols == -1 {
			break
		}
		if cols != int16(len(copyColumns)) {
			t.Fatalf("row %d: %d columns", rows+1, cols)
		}
		for range cols {
			size := int32(binary.BigEndian.Uint32(b))
			b = b[4:]
			if size > 0 {
				b = b[size:]
			}
		}
		rows++
	}
	if rows != 20_003 || len(b) != 0 {
		t.Errorf("%d rows and %d bytes after the trailer, want 20003 and 0", rows, len(b))
	}
	if n, err := r.Read(p); n != 0 || err != io.EOF {
		t.Errorf("read after the end: %d, %v; want 0, EOF", n, err)
	}
	r.stop()
	if _, err := r.Read(p); !errors.Is(err, errCopyOver) {
		t.Errorf("read after stop: %v, want %v", err, errCopyOver)
	}
}
