package decoder_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/catalog"
	"github.com/walscribe/walscribe/decoder"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/rules"
)

// benchMessages are real pgoutput messages for a typical row: one
// transaction that inserts it, one that updates two of its columns.
type benchMessages struct {
	dsn      string
	begin    []byte
	relation []byte
	insert   []byte
	update   []byte
	commit   []byte
}

// captureBenchMessages has the server produce the messages once.
func captureBenchMessages(b *testing.B) benchMessages {
	b.Helper()
	dsn := decoder.SharedServer().NewDB(b)
	pgtest.Exec(b, dsn,
		`CREATE TABLE orders (
			id bigint PRIMARY KEY,
			customer text NOT NULL,
			email varchar(200),
			amount numeric(12,2),
			quantity int,
			created_at timestamptz,
			updated_at timestamptz,
			attrs jsonb,
			tags text[],
			paid bool
		)`,
		`ALTER TABLE orders REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION p FOR TABLE orders`,
		`SELECT pg_create_logical_replication_slot('s', 'pgoutput')`,
		`INSERT INTO orders VALUES (1234567, 'Ada Lovelace', 'ada@example.com', 1999.95, 3,
			'2024-05-06 07:08:09.123456+00', '2024-05-06 07:08:09.123456+00',
			'{"source": "web", "coupon": null, "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]}',
			'{priority,"gift wrap",eu}', false)`,
		`UPDATE orders SET paid = true, updated_at = '2024-05-06 07:09:10.5+00' WHERE id = 1234567`,
	)
	msgs := peekSlot(b, dsn)
	var m benchMessages
	m.dsn = dsn
	for _, raw := range msgs {
		msg, err := pglogrepl.Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		switch msg.(type) {
		case *pglogrepl.BeginMessage:
			m.begin = raw
		case *pglogrepl.RelationMessage:
			m.relation = raw
		case *pglogrepl.InsertMessage:
			m.insert = raw
		case *pglogrepl.UpdateMessage:
			m.update = raw
		case *pglogrepl.CommitMessage:
			m.commit = raw
		}
	}
	if m.begin == nil || m.relation == nil || m.insert == nil || m.update == nil || m.commit == nil {
		b.Fatalf("the slot did not yield begin, relation, insert, update and commit messages (%d messages)", len(msgs))
	}
	return m
}

// BenchmarkDecode measures one change of a typical 10-column row, in
// transactions of 1000 changes (begin and commit amortised), and alone in a
// transaction of its own.
func BenchmarkDecode(b *testing.B) {
	m := captureBenchMessages(b)
	ctx := context.Background()
	cat := catalog.New(m.dsn)
	b.Cleanup(func() { cat.Close(ctx) })

	decode := func(b *testing.B, d *decoder.Decoder, msg []byte) {
		if _, err := d.Decode(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	// Typical rules: a pattern entry, an excluded column, two masked ones
	// (one hashed), the unchanged-update check.
	rs, err := rules.New(rules.Config{
		Secret:        []byte("a secret of at least sixteen bytes"),
		ExcludeTables: []string{"public.tmp_*"},
		Tables: []rules.TableConfig{
			{Name: "public.*"},
			{Name: "public.ord*", Exclude: []string{"updated_at"},
				Mask: map[string]rules.Style{"email": rules.Hash, "customer": rules.Redact}, SkipUnchangedUpdates: true},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	var set *rules.Set
	newDecoder := func(b *testing.B) *decoder.Decoder {
		d := decoder.New(cat, nil)
		d.SetRules(set)
		decode(b, d, m.begin)
		decode(b, d, m.relation)
		return d
	}
	for _, bc := range []struct {
		name   string
		change []byte
		rules  *rules.Set
	}{
		{"insert", m.insert, nil},
		{"update", m.update, nil},
		{"insert_with_rules", m.insert, rs},
		{"update_with_rules", m.update, rs},
	} {
		set = bc.rules
		b.Run(bc.name, func(b *testing.B) {
			d := newDecoder(b)
			// One decode outside the timer checks the rendering is whole.
			decode(b, d, bc.change)
			tx, err := d.Decode(ctx, m.commit)
			if err != nil || tx == nil || len(tx.Entries) != 1 || !json.Valid(tx.Entries[0].New) {
				b.Fatalf("decode %s: %v, %+v", bc.name, err, tx)
			}
			decode(b, d, m.begin)
			b.SetBytes(int64(len(bc.change)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				decode(b, d, bc.change)
				if i%1000 == 0 {
					decode(b, d, m.commit)
					decode(b, d, m.begin)
				}
			}
		})
		b.Run(bc.name+"_own_tx", func(b *testing.B) {
			d := newDecoder(b)
			decode(b, d, m.commit)
			b.SetBytes(int64(len(bc.change)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				decode(b, d, m.begin)
				decode(b, d, bc.change)
				decode(b, d, m.commit)
			}
		})
	}
}
