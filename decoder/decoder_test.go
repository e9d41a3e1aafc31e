package decoder_test

// These tests feed Decoder with pgoutput (protocol version 1) messages that a
// real server produced for real changes, read from a logical slot with
// pg_logical_slot_peek_binary_changes, and compare every entry with what the
// server says about the rows (to_jsonb snapshots taken at the time of each
// change). They live in package decoder_test because they resolve types and
// keys with package catalog, which imports decoder; the server is the one
// TestMain started (decoder.SharedServer, from export_test.go).

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/catalog"
	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/decoder"
	"github.com/walscribe/walscribe/internal/pgtest"
)

// wantEntry is an expected audit entry. JSON fields hold JSON text from the
// server ("" for none); they are compared as jsonb.
type wantEntry struct {
	action  audit.Action
	schema  string
	table   string
	pk      string
	old     string
	new     string
	changed []string // for updates; nil for others
}

// wantTx is an expected transaction: its xid as the server reported it, and
// its entries in order.
type wantTx struct {
	xid     uint32
	entries []wantEntry
}

// source is one test database with a publication "p" for all tables and a
// slot "s" created after the scenario's setup.
type source struct {
	t    *testing.T
	dsn  string
	conn *pgx.Conn
	want []wantTx
}

func newSource(t *testing.T, setup []string) *source {
	t.Helper()
	dsn := decoder.SharedServer().NewDB(t)
	stmts := append(slices.Clone(setup),
		`CREATE PUBLICATION p FOR ALL TABLES`,
		`SELECT pg_create_logical_replication_slot('s', 'pgoutput')`)
	pgtest.Exec(t, dsn, stmts...)
	return &source{t: t, dsn: dsn, conn: pgtest.Connect(t, dsn)}
}

// txq runs the statements of one source transaction and records the entries
// it should produce.
type txq struct {
	t       *testing.T
	tx      pgx.Tx
	entries []wantEntry
}

// tx runs fn in one transaction, which it commits, and records what fn
// expects.
func (s *source) tx(fn func(q *txq)) {
	s.t.Helper()
	ctx := context.Background()
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var xid int64
	if err := tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid); err != nil {
		s.t.Fatal(err)
	}
	q := &txq{t: s.t, tx: tx}
	fn(q)
	if err := tx.Commit(ctx); err != nil {
		s.t.Fatalf("commit: %v", err)
	}
	if len(q.entries) > 0 {
		// pgoutput (PostgreSQL 15+) sends nothing for a transaction with no
		// published change, DDL-only ones included.
		s.want = append(s.want, wantTx{xid: uint32(xid), entries: q.entries})
	}
}

// exec runs DDL or a statement whose entries the caller records itself.
func (q *txq) exec(sql string, args ...any) {
	q.t.Helper()
	if _, err := q.tx.Exec(context.Background(), sql, args...); err != nil {
		q.t.Fatalf("%s: %v", sql, err)
	}
}

// json runs a query that returns one jsonb (or NULL, as "") and returns it.
func (q *txq) json(sql string, args ...any) string {
	q.t.Helper()
	var s *string
	if err := q.tx.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		q.t.Fatalf("%s: %v", sql, err)
	}
	if s == nil {
		return ""
	}
	return *s
}

// keys returns the members of object row named in keys, as the server
// computes them.
func (q *txq) keys(row string, keys ...string) string {
	q.t.Helper()
	return q.json(`SELECT jsonb_object_agg(key, value)::text FROM jsonb_each($1::text::jsonb) WHERE key = ANY($2)`, row, keys)
}

// insert runs an INSERT ... RETURNING to_jsonb(<table>) of one row and
// expects an insert entry keyed by pk (every column when pk is empty).
func (q *txq) insert(table, sql string, pk ...string) string {
	q.t.Helper()
	row := q.json(sql)
	key := row
	if len(pk) > 0 {
		key = q.keys(row, pk...)
	}
	q.entries = append(q.entries, wantEntry{action: audit.Insert, schema: "public", table: table, pk: key, new: row})
	return row
}

// update snapshots the row selected by where, runs the UPDATE ... RETURNING
// to_jsonb(<table>) in sql, and expects an update entry with both images.
func (q *txq) update(table, where, sql string, changed []string, pk ...string) (old, new string) {
	q.t.Helper()
	old = q.json(`SELECT to_jsonb(r)::text FROM ` + table + ` r WHERE ` + where)
	new = q.json(sql)
	key := new
	if len(pk) > 0 {
		key = q.keys(new, pk...)
	}
	q.entries = append(q.entries, wantEntry{action: audit.Update, schema: "public", table: table, pk: key, old: old, new: new, changed: changed})
	return old, new
}

// delete runs a DELETE ... RETURNING to_jsonb(<table>) of one row and
// expects a delete entry.
func (q *txq) delete(table, sql string, pk ...string) {
	q.t.Helper()
	old := q.json(sql)
	key := old
	if len(pk) > 0 {
		key = q.keys(old, pk...)
	}
	q.entries = append(q.entries, wantEntry{action: audit.Delete, schema: "public", table: table, pk: key, old: old})
}

// messages reads every pgoutput message in the slot.
func (s *source) messages() [][]byte {
	s.t.Helper()
	return peekSlot(s.t, s.dsn)
}

// peekSlot reads every pgoutput message in slot "s" of dsn (without
// consuming them), with the walsender's session settings so values arrive in
// the same text forms as over replication.
func peekSlot(tb testing.TB, dsn string) [][]byte {
	tb.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range cdc.SessionSettings {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL,
		'proto_version', '1', 'publication_names', 'p', 'messages', 'true')`)
	if err != nil {
		tb.Fatalf("peek the slot: %v", err)
	}
	msgs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		tb.Fatalf("peek the slot: %v", err)
	}
	return msgs
}

// decode runs msgs through a Decoder whose Resolver is the source's catalog.
func (s *source) decode(msgs [][]byte) []*audit.Transaction {
	s.t.Helper()
	ctx := context.Background()
	cat := catalog.New(s.dsn)
	s.t.Cleanup(func() { cat.Close(ctx) })
	d := decoder.New(cat, nil)
	var txs []*audit.Transaction
	for i, m := range msgs {
		tx, err := d.Decode(ctx, m)
		if err != nil {
			s.t.Fatalf("message %d (%q): %v", i, m[:1], err)
		}
		if tx != nil {
			txs = append(txs, tx)
		}
	}
	if d.InTransaction() {
		s.t.Fatalf("a transaction is still open after the last message")
	}
	if d.Fallbacks != 0 {
		s.t.Errorf("%d columns fell back to text: their types could not be resolved", d.Fallbacks)
	}
	return txs
}

// check compares the decoded transactions with the expected ones.
func (s *source) check(txs []*audit.Transaction) {
	t := s.t
	t.Helper()
	if len(txs) != len(s.want) {
		t.Fatalf("decoded %d transactions, want %d", len(txs), len(s.want))
	}
	var prevEnd pglogrepl.LSN
	for i, tx := range txs {
		w := s.want[i]
		if tx.Xid != w.xid {
			t.Errorf("tx %d: xid %d, want %d", i, tx.Xid, w.xid)
		}
		if tx.CommitLSN == 0 || tx.EndLSN <= tx.CommitLSN || tx.CommitLSN < prevEnd {
			t.Errorf("tx %d: commit LSN %s, end LSN %s after previous end %s: not increasing", i, tx.CommitLSN, tx.EndLSN, prevEnd)
		}
		prevEnd = tx.EndLSN
		if age := time.Since(tx.CommittedAt); age < -time.Minute || age > 10*time.Minute {
			t.Errorf("tx %d: committed at %v, not about now", i, tx.CommittedAt)
		}
		if len(tx.Entries) != len(w.entries) {
			t.Fatalf("tx %d: %d entries, want %d:\n%s", i, len(tx.Entries), len(w.entries), describe(tx.Entries))
		}
		for j, e := range tx.Entries {
			we := w.entries[j]
			where := func(field string) string {
				return "tx " + itoa(i) + " entry " + itoa(j) + " (" + string(we.action) + " " + we.table + ") " + field
			}
			if e.Seq != int32(j+1) {
				t.Errorf("%s: seq %d, want %d", where("seq"), e.Seq, j+1)
			}
			if e.Action != we.action || e.Schema != we.schema || e.Table != we.table {
				t.Errorf("%s: got %s %s.%s", where("what"), e.Action, e.Schema, e.Table)
			}
			s.sameJSON(where("pk"), e.PK, we.pk)
			s.sameJSON(where("old"), e.Old, we.old)
			s.sameJSON(where("new"), e.New, we.new)
			if !slices.Equal(e.Changed, we.changed) {
				t.Errorf("%s: %q, want %q", where("changed"), e.Changed, we.changed)
			}
		}
	}
}

// sameJSON requires got to be valid JSON equal, as jsonb and in the server's
// normalised text, to want; want "" means got must be nil (SQL NULL).
func (s *source) sameJSON(what string, got []byte, want string) {
	s.t.Helper()
	if want == "" {
		if got != nil {
			s.t.Errorf("%s: %s, want none", what, clip(string(got)))
		}
		return
	}
	if got == nil {
		s.t.Errorf("%s: none, want %s", what, clip(want))
		return
	}
	var (
		equal         bool
		gotNF, wantNF string
	)
	err := s.conn.QueryRow(context.Background(), `SELECT $1::text::jsonb = $2::text::jsonb, $1::text::jsonb::text, $2::text::jsonb::text`,
		string(got), want).Scan(&equal, &gotNF, &wantNF)
	if err != nil {
		s.t.Errorf("%s: %v\n got: %s", what, err, clip(string(got)))
		return
	}
	if !equal || gotNF != wantNF {
		s.t.Errorf("%s differs from the server's\n got: %s\nwant: %s", what, clip(gotNF), clip(wantNF))
	}
}

// clip shortens long JSON in failure messages.
func clip(s string) string {
	if len(s) > 400 {
		return s[:200] + " … " + s[len(s)-200:]
	}
	return s
}

func describe(es []audit.Entry) string {
	var b []byte
	for _, e := range es {
		b = append(b, string(e.Action)+" "+e.Schema+"."+e.Table+" pk="+string(e.PK)+"\n"...)
	}
	return string(b)
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// decodeScenario is one workload on a fresh database.
type decodeScenario struct {
	name  string
	setup []string
	run   func(s *source)
	// messages, when set, checks the raw messages: that the server really
	// sent what the scenario is about.
	messages func(t *testing.T, msgs [][]byte)
}

func TestDecode(t *testing.T) {
	for _, sc := range decodeScenarios {
		t.Run(sc.name, func(t *testing.T) {
			s := newSource(t, sc.setup)
			sc.run(s)
			msgs := s.messages()
			if sc.messages != nil {
				sc.messages(t, msgs)
			}
			s.check(s.decode(msgs))
		})
	}
}

var decodeScenarios = []decodeScenario{
	{
		name: "insert update delete with replica identity full",
		setup: []string{
			`CREATE TYPE status AS ENUM ('new', 'paid', 'void')`,
			`CREATE DOMAIN amount AS numeric(20,4) CHECK (VALUE >= 0)`,
			`CREATE TABLE items (
				id bigint PRIMARY KEY,
				name text NOT NULL,
				price numeric,
				total amount,
				state status,
				tags text[],
				doc jsonb,
				seen timestamptz,
				day date,
				ok bool,
				ratio float8,
				blob bytea
			)`,
			`ALTER TABLE items REPLICA IDENTITY FULL`,
		},
		run: func(s *source) {
			s.tx(func(q *txq) {
				q.insert("items", `INSERT INTO items VALUES (9007199254740993, E'quote " backslash \\ tab \t', 'NaN', 12.5, 'new',
					ARRAY['a', NULL, 'b,c', 'NULL', ''], '{"n": 123456789012345678901, "s": "\u00e9"}', '2024-01-02 03:04:05.123+05:30',
					'0044-03-15 BC', true, 'Infinity', '\x00ff') RETURNING to_jsonb(items)::text`, "id")
				q.insert("items", `INSERT INTO items (id, name) VALUES (2, 'nulls') RETURNING to_jsonb(items)::text`, "id")
			})
			s.tx(func(q *txq) {
				q.update("items", "id = 2", `UPDATE items SET price = 1.10, state = 'paid', tags = '{}', seen = 'infinity'
					WHERE id = 2 RETURNING to_jsonb(items)::text`, []string{"price", "state", "tags", "seen"}, "id")
				// No change at all: an update entry with no changed columns.
				q.update("items", "id = 2", `UPDATE items SET name = name WHERE id = 2 RETURNING to_jsonb(items)::text`, []string{}, "id")
				// A key change: pk is the new key, old keeps the old one.
				q.update("items", "id = 2", `UPDATE items SET id = 3, ok = false WHERE id = 2 RETURNING to_jsonb(items)::text`, []string{"id", "ok"}, "id")
			})
			s.tx(func(q *txq) {
				q.delete("items", `DELETE FROM items WHERE id = 9007199254740993 RETURNING to_jsonb(items)::text`, "id")
				q.delete("items", `DELETE FROM items WHERE id = 3 RETURNING to_jsonb(items)::text`, "id")
			})
		},
	},
	{
		name: "unchanged toasted value is carried into new",
		setup: []string{
			`CREATE TABLE docs (id int PRIMARY KEY, n int, body text, small text)`,
			`ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL`,
			`ALTER TABLE docs REPLICA IDENTITY FULL`,
		},
		run: func(s *source) {
			s.tx(func(q *txq) {
				q.insert("docs", `INSERT INTO docs SELECT 1, 0, string_agg(md5(random()::text), ''), 'x'
					FROM generate_series(1, 300) RETURNING to_jsonb(docs)::text`, "id")
			})
			s.tx(func(q *txq) {
				var size int
				if err := q.tx.QueryRow(context.Background(), `SELECT pg_column_size(body) FROM docs WHERE id = 1`).Scan(&size); err != nil {
					q.t.Fatal(err)
				}
				if size <= 8192 {
					q.t.Fatalf("body takes %d bytes: not out of line, the scenario tests nothing", size)
				}
				q.update("docs", "id = 1", `UPDATE docs SET n = 1 WHERE id = 1 RETURNING to_jsonb(docs)::text`, []string{"n"}, "id")
				q.update("docs", "id = 1", `UPDATE docs SET small = 'y', n = 2 WHERE id = 1 RETURNING to_jsonb(docs)::text`, []string{"n", "small"}, "id")
			})
			s.tx(func(q *txq) {
				q.delete("docs", `DELETE FROM docs WHERE id = 1 RETURNING to_jsonb(docs)::text`, "id")
			})
		},
		messages: func(t *testing.T, msgs [][]byte) {
			toast := 0
			for _, m := range msgs {
				msg, err := pglogrepl.Parse(m)
				if err != nil {
					t.Fatal(err)
				}
				if u, ok := msg.(*pglogrepl.UpdateMessage); ok {
					for _, c := range u.NewTuple.Columns {
						if c.DataType == pglogrepl.TupleDataTypeToast {
							toast++
						}
					}
				}
			}
			if toast != 2 {
				t.Fatalf("the server sent %d unchanged-TOAST columns, want 2: the scenario does not test them", toast)
			}
		},
	},
	{
		name: "truncate with cascade and restart identity",
		setup: []string{
			`CREATE TABLE parent (id serial PRIMARY KEY)`,
			`CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent)`,
			`CREATE TABLE lone (id int PRIMARY KEY)`,
			`ALTER TABLE parent REPLICA IDENTITY FULL`,
			`ALTER TABLE child REPLICA IDENTITY FULL`,
			`ALTER TABLE lone REPLICA IDENTITY FULL`,
		},
		run: func(s *source) {
			s.tx(func(q *txq) {
				q.insert("parent", `INSERT INTO parent DEFAULT VALUES RETURNING to_jsonb(parent)::text`, "id")
				q.insert("child", `INSERT INTO child (parent_id) VALUES (1) RETURNING to_jsonb(child)::text`, "id")
			})
			s.tx(func(q *txq) {
				q.exec(`TRUNCATE parent RESTART IDENTITY CASCADE`)
				opts := `{"cascade": true, "restart_identity": true}`
				q.entries = append(q.entries,
					wantEntry{action: audit.Truncate, schema: "public", table: "parent", new: opts},
					wantEntry{action: audit.Truncate, schema: "public", table: "child", new: opts})
			})
			s.tx(func(q *txq) {
				q.exec(`TRUNCATE lone`)
				q.entries = append(q.entries,
					wantEntry{action: audit.Truncate, schema: "public", table: "lone", new: `{"cascade": false, "restart_identity": false}`})
				// A row after the truncate in the same transaction.
				q.insert("lone", `INSERT INTO lone VALUES (1) RETURNING to_jsonb(lone)::text`, "id")
			})
			s.tx(func(q *txq) {
				q.exec(`TRUNCATE child, lone RESTART IDENTITY`)
				opts := `{"cascade": false, "restart_identity": true}`
				q.entries = append(q.entries,
					wantEntry{action: audit.Truncate, schema: "public", table: "child", new: opts},
					wantEntry{action: audit.Truncate, schema: "public", table: "lone", new: opts})
			})
		},
	},
	{
		name: "schema changes between transactions",
		setup: []string{
			`CREATE TABLE evolve (id int PRIMARY KEY, a int, b text)`,
			`ALTER TABLE evolve REPLICA IDENTITY FULL`,
		},
		run: func(s *source) {
			s.tx(func(q *txq) {
				q.insert("evolve", `INSERT INTO evolve VALUES (1, 10, 'x') RETURNING to_jsonb(evolve)::text`, "id")
			})
			s.tx(func(q *txq) { q.exec(`ALTER TABLE evolve ADD COLUMN c jsonb DEFAULT '{"d": 1}'`) })
			s.tx(func(q *txq) {
				q.insert("evolve", `INSERT INTO evolve VALUES (2, 20, 'y', '{"e": 9007199254740993}') RETURNING to_jsonb(evolve)::text`, "id")
				// Row 1 predates c: its old image takes c's default.
				q.update("evolve", "id = 1", `UPDATE evolve SET a = 11 WHERE id = 1 RETURNING to_jsonb(evolve)::text`, []string{"a"}, "id")
			})
			s.tx(func(q *txq) { q.exec(`ALTER TABLE evolve DROP COLUMN b`) })
			s.tx(func(q *txq) {
				q.insert("evolve", `INSERT INTO evolve VALUES (3, 30) RETURNING to_jsonb(evolve)::text`, "id")
				q.delete("evolve", `DELETE FROM evolve WHERE id = 2 RETURNING to_jsonb(evolve)::text`, "id")
			})
			s.tx(func(q *txq) { q.exec(`ALTER TABLE evolve RENAME COLUMN a TO "A renamed"`) })
			s.tx(func(q *txq) {
				q.update("evolve", "id = 3", `UPDATE evolve SET "A renamed" = 31 WHERE id = 3 RETURNING to_jsonb(evolve)::text`, []string{"A renamed"}, "id")
			})
			s.tx(func(q *txq) {
				q.exec(`ALTER TABLE evolve ALTER COLUMN "A renamed" TYPE text USING "A renamed"::text || '!'`)
			})
			s.tx(func(q *txq) {
				q.insert("evolve", `INSERT INTO evolve VALUES (4, 'forty') RETURNING to_jsonb(evolve)::text`, "id")
				q.update("evolve", "id = 1", `UPDATE evolve SET c = NULL WHERE id = 1 RETURNING to_jsonb(evolve)::text`, []string{"c"}, "id")
			})
		},
	},
	{
		name: "schema changes inside one transaction",
		setup: []string{
			`CREATE TABLE evolve (id int PRIMARY KEY, a int)`,
			`ALTER TABLE evolve REPLICA IDENTITY FULL`,
			`INSERT INTO evolve VALUES (100, 1)`,
		},
		run: func(s *source) {
			s.tx(func(q *txq) {
				q.insert("evolve", `INSERT INTO evolve VALUES (5, 50) RETURNING to_jsonb(evolve)::text`, "id")
				q.exec(`ALTER TABLE evolve ADD COLUMN z numeric`)
				q.insert("evolve", `INSERT INTO evolve VALUES (6, 60, 1.50) RETURNING to_jsonb(evolve)::text`, "id")
				q.exec(`ALTER TABLE evolve RENAME COLUMN z TO zz`)
				q.update("evolve", "id = 6", `UPDATE evolve SET zz = 'NaN' WHERE id = 6 RETURNING to_jsonb(evolve)::text`, []string{"zz"}, "id")
				q.exec(`ALTER TABLE evolve ALTER COLUMN zz TYPE text`)
				q.insert("evolve", `INSERT INTO evolve VALUES (7, 70, '9007199254740993') RETURNING to_jsonb(evolve)::text`, "id")
				q.update("evolve", "id = 100", `UPDATE evolve SET a = 2 WHERE id = 100 RETURNING to_jsonb(evolve)::text`, []string{"a"}, "id")
				q.exec(`ALTER TABLE evolve DROP COLUMN zz`)
				q.delete("evolve", `DELETE FROM evolve WHERE id = 5 RETURNING to_jsonb(evolve)::text`, "id")
				q.exec(`ALTER TABLE evolve ADD COLUMN w timestamptz DEFAULT '2024-01-02 03:04:05+02'`)
				q.update("evolve", "id = 7", `UPDATE evolve SET a = 71 WHERE id = 7 RETURNING to_jsonb(evolve)::text`, []string{"a"}, "id")
			})
			s.tx(func(q *txq) {
				q.insert("evolve", `INSERT INTO evolve (id) VALUES (8) RETURNING to_jsonb(evolve)::text`, "id")
			})
		},
	},
	{
		// Without REPLICA IDENTITY FULL an update that keeps the key has no
		// old image, and one that changes the key, like a delete, carries
		// the key only: the other columns are "not sent", never NULL.
		name:  "default replica identity",
		setup: []string{`CREATE TABLE dflt (id int PRIMARY KEY, name text, note text)`},
		run: func(s *source) {
			s.tx(func(q *txq) {
				q.insert("dflt", `INSERT INTO dflt VALUES (1, 'a', 'n') RETURNING to_jsonb(dflt)::text`, "id")
			})
			s.tx(func(q *txq) {
				row := q.json(`UPDATE dflt SET name = 'b' RETURNING to_jsonb(dflt)::text`)
				q.entries = append(q.entries, wantEntry{action: audit.Update, schema: "public", table: "dflt", pk: `{"id": 1}`, new: row})
				row = q.json(`UPDATE dflt SET id = 2 RETURNING to_jsonb(dflt)::text`)
				q.entries = append(q.entries, wantEntry{action: audit.Update, schema: "public", table: "dflt", pk: `{"id": 2}`, old: `{"id": 1}`, new: row})
				q.exec(`DELETE FROM dflt`)
				q.entries = append(q.entries, wantEntry{action: audit.Delete, schema: "public", table: "dflt", pk: `{"id": 2}`, old: `{"id": 2}`})
			})
		},
	},
	{
		name: "table without primary key",
		setup: []string{
			`CREATE TABLE nokey (a int, b text, c jsonb)`,
			`ALTER TABLE nokey REPLICA IDENTITY FULL`,
			`CREATE TABLE nokey_default (a int, b text)`,
			`CREATE TABLE composite (x int, y text, z int, PRIMARY KEY (z, y))`,
			`ALTER TABLE composite REPLICA IDENTITY FULL`,
		},
		run: func(s *source) {
			s.tx(func(q *txq) {
				// pk is every column.
				q.insert("nokey", `INSERT INTO nokey VALUES (1, 'one', '[1]') RETURNING to_jsonb(nokey)::text`)
				q.insert("nokey", `INSERT INTO nokey VALUES (1, 'one', '[1]') RETURNING to_jsonb(nokey)::text`)
				q.insert("nokey_default", `INSERT INTO nokey_default VALUES (2, NULL) RETURNING to_jsonb(nokey_default)::text`)
				q.insert("composite", `INSERT INTO composite VALUES (1, 'y', 3) RETURNING to_jsonb(composite)::text`, "z", "y")
			})
			s.tx(func(q *txq) {
				q.exec(`DELETE FROM nokey WHERE ctid = (SELECT min(ctid) FROM nokey)`)
				row := q.json(`SELECT to_jsonb(nokey)::text FROM nokey`)
				q.entries = append(q.entries, wantEntry{action: audit.Delete, schema: "public", table: "nokey", pk: row, old: row})
				q.update("nokey", "true", `UPDATE nokey SET b = 'uno' RETURNING to_jsonb(nokey)::text`, []string{"b"})
				q.update("composite", "z = 3", `UPDATE composite SET x = 2 RETURNING to_jsonb(composite)::text`, []string{"x"}, "z", "y")
			})
		},
	},
}
