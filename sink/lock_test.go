package sink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/pg"
)

// TestWriterLockSeesTheLastHolder: a writer that waited for the writer
// lock continues from what the lock's holder committed meanwhile, never
// from what it saw before it waited (the ids would repeat).
func TestWriterLockSeesTheLastHolder(t *testing.T) {
	for _, iso := range []string{"read committed", "repeatable read"} {
		t.Run(iso, func(t *testing.T) { testWriterLock(t, iso) })
	}
}

// testWriterLock runs the test with the database's default isolation
// iso: the sink's transactions are READ COMMITTED whatever it says.
func testWriterLock(t *testing.T, iso string) {
	ctx := context.Background()
	p, conn := openSink(t, nil)
	var db string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q SET default_transaction_isolation = '%s'`, db, iso)); err != nil {
		t.Fatal(err)
	}
	p.Close(ctx)
	if err := p.Open(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := p.Record(ctx, "test", "first", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Another writer holds the lock and appends an entry of its own.
	holder, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT `+pg.AdvisoryLock(`'walscribe.sink.audit'`)); err != nil {
		t.Fatal(err)
	}
	done := make(chan int64, 1)
	failed := make(chan error, 1)
	go func() {
		id, err := p.Record(ctx, "test", "waited", nil)
		if err != nil {
			failed <- err
			return
		}
		done <- id
	}()
	// Let the Record reach the lock and wait there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := holder.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Record never waited for the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := holder.Exec(ctx, fmt.Sprintf(`INSERT INTO audit.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action)
		VALUES (%d, '0/1', 1, now(), 'walscribe', 'test', 'other'); INSERT INTO audit.own_entries VALUES (%d)`, first+1, first+1)); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-done:
		if id != first+2 {
			t.Errorf("the writer that waited wrote id %d, want %d (after the other writer's %d)", id, first+2, first+1)
		}
	case err := <-failed:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the Record did not finish")
	}
	var ids, distinct int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM audit.entries`).Scan(&ids, &distinct); err != nil || ids != distinct {
		t.Errorf("%d entries, %d distinct ids (%v)", ids, distinct, err)
	}
}
