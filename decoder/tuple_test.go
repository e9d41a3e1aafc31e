package decoder

import (
	"bytes"
	"context"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// changeMessages has the server write inserts, updates and deletes of every
// kind of old tuple (none, key, whole row), with NULLs and unchanged TOASTed
// values, once in ordinary transactions and once streamed, and returns the
// raw pgoutput messages with whether each came inside a stream.
func changeMessages(t *testing.T) (msgs [][]byte, inStream []bool) {
	dsn := SharedServer().NewDB(t)
	pgtest.Exec(t, dsn,
		`CREATE TABLE full_rows (id int PRIMARY KEY, note text, big text, n numeric)`,
		`ALTER TABLE full_rows REPLICA IDENTITY FULL`,
		`CREATE TABLE key_rows (id int PRIMARY KEY, note text, big text)`,
		`CREATE PUBLICATION p FOR TABLE full_rows, key_rows`,
		`SELECT pg_create_logical_replication_slot('s', 'pgoutput')`,
		`INSERT INTO full_rows VALUES (1, NULL, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g), 1.5)`,
		`INSERT INTO key_rows VALUES (1, 'a', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g))`,
		`UPDATE full_rows SET note = 'x' WHERE id = 1`,
		`UPDATE key_rows SET note = 'b' WHERE id = 1`,        // no old tuple, big unchanged: 'u'
		`UPDATE key_rows SET id = 2 WHERE id = 1`,            // key changed: 'K'
		`UPDATE full_rows SET n = NULL, id = 3 WHERE id = 1`, // 'O'
		`DELETE FROM full_rows`,
		`DELETE FROM key_rows`,
	)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	read := func(streaming bool) {
		opts := `'proto_version', '1', 'publication_names', 'p'`
		if streaming {
			opts = `'proto_version', '2', 'streaming', 'on', 'publication_names', 'p'`
		}
		rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_get_binary_changes('s', NULL, NULL, `+opts+`)`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatal(err)
		}
		in := false
		for _, m := range got {
			switch m[0] {
			case 'S':
				in = true
			case 'E':
				in = false
			}
			msgs, inStream = append(msgs, m), append(inStream, in)
		}
	}
	read(false)
	// The same changes again, in one transaction larger than
	// logical_decoding_work_mem: streamed, so each carries its xid.
	if _, err := conn.Exec(ctx, `SET logical_decoding_work_mem = '64kB'`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `BEGIN;
		INSERT INTO full_rows SELECT g, NULL, repeat('y', 100), g FROM generate_series(1, 2000) g;
		UPDATE full_rows SET note = 'z' WHERE id <= 10;
		INSERT INTO key_rows VALUES (1, 'a', 'b');
		UPDATE key_rows SET id = 2 WHERE id = 1;
		DELETE FROM key_rows;
		DELETE FROM full_rows WHERE id <= 10;
		COMMIT`); err != nil {
		t.Fatal(err)
	}
	read(true)
	return msgs, inStream
}

// TestParseChangeMatchesPglogrepl checks the in-place parser against
// pglogrepl on real messages, and that every truncation of them is an
// error, never a panic or a wrong parse.
func TestParseChangeMatchesPglogrepl(t *testing.T) {
	msgs, inStream := changeMessages(t)
	kinds := map[string]int{}
	for i, raw := range msgs {
		if raw[0] != 'I' && raw[0] != 'U' && raw[0] != 'D' {
			continue
		}
		var c change
		var oldT, newT tuple
		if err := c.parse(raw, inStream[i], &oldT, &newT); err != nil {
			t.Fatalf("message %d (%q): %v", i, raw[0], err)
		}
		msg, err := pglogrepl.ParseV2(raw, inStream[i])
		if err != nil {
			t.Fatal(err)
		}
		var xid, rel uint32
		var oldTag byte
		var old, nw *pglogrepl.TupleData
		switch m := msg.(type) {
		case *pglogrepl.InsertMessageV2:
			xid, rel, nw = m.Xid, m.RelationID, m.Tuple
		case *pglogrepl.UpdateMessageV2:
			xid, rel, oldTag, old, nw = m.Xid, m.RelationID, byte(m.OldTupleType), m.OldTuple, m.NewTuple
		case *pglogrepl.DeleteMessageV2:
			xid, rel, oldTag, old = m.Xid, m.RelationID, byte(m.OldTupleType), m.OldTuple
		}
		if c.xid != xid || c.relID != rel || c.oldTag != oldTag {
			t.Fatalf("message %d: xid %d rel %d old %q, pglogrepl says %d %d %q", i, c.xid, c.relID, c.oldTag, xid, rel, oldTag)
		}
		sameTuple(t, i, "old", c.old, old)
		sameTuple(t, i, "new", c.new, nw)
		kinds[string(raw[0])+string(rune(max(c.oldTag, '-')))]++
		if inStream[i] {
			kinds["streamed"]++
		}
		for _, col := range append(append([]tupleColumn{}, oldT.cols...), newT.cols...) {
			kinds["col "+string(col.kind)]++
		}
		for n := range len(raw) {
			if err := c.parse(raw[:n], inStream[i], &oldT, &newT); err == nil {
				t.Fatalf("message %d cut to %d of %d bytes parsed without error", i, n, len(raw))
			}
		}
	}
	// The scenario must have produced what it is meant to test.
	for _, k := range []string{"I-", "U-", "UK", "UO", "DK", "DO", "streamed", "col n", "col u", "col t"} {
		if kinds[k] == 0 {
			t.Errorf("no %q among the messages (%v): the scenario does not test it", k, kinds)
		}
	}
}

func sameTuple(t *testing.T, i int, which string, got *tuple, want *pglogrepl.TupleData) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Fatalf("message %d: %s tuple present %v, pglogrepl %v", i, which, got != nil, want != nil)
	}
	if got == nil {
		return
	}
	if len(got.cols) != len(want.Columns) {
		t.Fatalf("message %d: %s tuple has %d columns, pglogrepl %d", i, which, len(got.cols), len(want.Columns))
	}
	for j, c := range want.Columns {
		if got.cols[j].kind != c.DataType || !bytes.Equal(got.cols[j].data, c.Data) {
			t.Fatalf("message %d: %s column %d is %q %q, pglogrepl %q %q", i, which, j, got.cols[j].kind, got.cols[j].data, c.DataType, c.Data)
		}
	}
}

// FuzzParseChange: no input makes the parser panic or read past the
// message, and what both it and pglogrepl accept they read alike.
func FuzzParseChange(f *testing.F) {
	f.Add([]byte("I\x00\x00\x40\x01N\x00\x02t\x00\x00\x00\x011n"), false)
	f.Add([]byte("U\x00\x00\x00\x07\x00\x00\x40\x01O\x00\x01u N\x00\x01b\x00\x00\x00\x00"), true)
	f.Add([]byte("D\x00\x00\x40\x01K\x00\x01t\x00\x00\x00\x02ab"), false)
	f.Fuzz(func(t *testing.T, raw []byte, inStream bool) {
		if len(raw) == 0 || (raw[0] != 'I' && raw[0] != 'U' && raw[0] != 'D') {
			return
		}
		var c change
		var oldT, newT tuple
		if err := c.parse(raw, inStream, &oldT, &newT); err != nil {
			return
		}
		for _, tp := range []*tuple{c.old, c.new} {
			if tp == nil {
				continue
			}
			for _, col := range tp.cols {
				if len(col.data) > len(raw) {
					t.Fatalf("column of %d bytes from a %d-byte message", len(col.data), len(raw))
				}
			}
		}
		msg, err := pglogrepl.ParseV2(raw, inStream)
		if err != nil {
			// pglogrepl rejects some valid messages, such as an insert
			// into a table without columns (8 bytes).
			return
		}
		switch m := msg.(type) {
		case *pglogrepl.InsertMessageV2:
			sameTuple(t, 0, "new", c.new, m.Tuple)
		case *pglogrepl.UpdateMessageV2:
			sameTuple(t, 0, "old", c.old, m.OldTuple)
			sameTuple(t, 0, "new", c.new, m.NewTuple)
		case *pglogrepl.DeleteMessageV2:
			sameTuple(t, 0, "old", c.old, m.OldTuple)
		}
	})
}
