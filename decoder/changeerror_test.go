package decoder_test

import (
	"context"
	"errors"
	"testing"

	"github.com/walscribe/walscribe/catalog"
	"github.com/walscribe/walscribe/decoder"
)

// TestChangeErrorNamesTheTable: a change message the decoder cannot read
// fails with the table it changes, so that the daemon's log names it.
func TestChangeErrorNamesTheTable(t *testing.T) {
	s := newSource(t, []string{`CREATE TABLE public.orders (id int PRIMARY KEY, note text)`})
	s.tx(func(q *txq) { q.exec(`INSERT INTO orders VALUES (1, 'a')`) })
	msgs := s.messages()
	ctx := context.Background()
	cat := catalog.New(s.dsn)
	t.Cleanup(func() { cat.Close(ctx) })
	d := decoder.New(cat, nil)
	var insert []byte
	for _, m := range msgs {
		if m[0] == 'I' {
			insert = m
			break
		}
		if _, err := d.Decode(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if insert == nil {
		t.Fatal("no insert message")
	}
	_, err := d.Decode(ctx, insert[:len(insert)-3]) // cut inside its last value
	var change *decoder.ChangeError
	if !errors.As(err, &change) || change.Table != "public.orders" {
		t.Fatalf("Decode of a cut insert: %v, want a ChangeError naming public.orders", err)
	}
}
