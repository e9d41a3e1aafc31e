// Package workload generates a concurrent, realistic stream of transactions
// for tests and the chaos driver: inserts, single-row and bulk updates,
// deletes, savepoints rolled back and kept, whole transactions rolled back,
// truncates, and schema changes, from several clients at once.
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Tables are the tables the workload writes, qualified.
var Tables = []string{"public.wl_accounts", "public.wl_events", "public.wl_notes"}

// Schema creates the workload's tables: one with a primary key and varied
// types, one without a primary key, and one with a large text column.
const Schema = `
CREATE TABLE IF NOT EXISTS wl_accounts (
	id      bigserial PRIMARY KEY,
	owner   text NOT NULL,
	balance numeric(14,2) NOT NULL DEFAULT 0,
	tags    text[],
	meta    jsonb,
	seen    timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS wl_events (
	at   timestamptz NOT NULL DEFAULT now(),
	kind text NOT NULL,
	n    integer);
CREATE TABLE IF NOT EXISTS wl_notes (
	id   serial PRIMARY KEY,
	body text,
	rev  integer NOT NULL DEFAULT 0);`

// Options tune a run.
type Options struct {
	Clients int           // concurrent sessions; default 4
	Pause   time.Duration // between transactions of one client; default 0
	// DDL enables schema changes (ADD and DROP COLUMN on wl_events).
	DDL bool
	// Truncate enables occasional TRUNCATE of wl_events.
	Truncate bool
	// Context sets who acts (audit.set_context, installed by setup) in
	// most transactions.
	Context bool
	// Large adds occasional transactions of thousands of rows, above a
	// small logical_decoding_work_mem: the server streams them.
	Large bool
	Seed  uint64
}

// Stats counts what a run did.
type Stats struct {
	Commits, Rollbacks, Errors atomic.Int64
}

// Run writes transactions to the database at dsn until ctx is done. Errors
// such as deadlocks or a server restart end the transaction (it rolls back,
// and the oracle with it) and the client reconnects; Run returns only when
// ctx is done.
func Run(ctx context.Context, dsn string, opts Options) *Stats {
	if opts.Clients <= 0 {
		opts.Clients = 4
	}
	st := &Stats{}
	var wg sync.WaitGroup
	for c := range opts.Clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(opts.Seed, uint64(c)+1))
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.WithoutCancel(ctx))
				}
			}()
			for ctx.Err() == nil {
				if conn == nil || conn.IsClosed() {
					var err error
					if conn, err = pgx.Connect(ctx, dsn); err != nil {
						conn = nil
						sleep(ctx, 100*time.Millisecond)
						continue
					}
				}
				committed, err := one(ctx, conn, rng, opts)
				switch {
				case err != nil:
					st.Errors.Add(1)
					var pgErr *pgconn.PgError
					if !errors.As(err, &pgErr) {
						conn.Close(context.WithoutCancel(ctx))
						conn = nil
					}
				case committed:
					st.Commits.Add(1)
				default:
					st.Rollbacks.Add(1)
				}
				if opts.Pause > 0 {
					sleep(ctx, opts.Pause)
				}
			}
		})
	}
	wg.Wait()
	return st
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// one runs one random transaction and reports whether it committed.
func one(ctx context.Context, conn *pgx.Conn, rng *rand.Rand, opts Options) (bool, error) {
	// Transactions are not cut by ctx: a transaction either commits or
	// rolls back, never hangs half-way.
	ctx = context.WithoutCancel(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
		return false, err
	}
	if opts.Context && rng.IntN(4) > 0 {
		if _, err := tx.Exec(ctx, `SELECT audit.set_context(actor_id => $1, request_id => $2)`,
			fmt.Sprintf("user-%d", rng.IntN(20)), fmt.Sprintf("req-%d", rng.Uint64())); err != nil {
			return false, err
		}
	}
	if opts.Large && rng.IntN(40) == 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO wl_events (kind, n) SELECT 'bulk', g FROM generate_series(1, $1) g`, 2000+rng.IntN(3000)); err != nil {
			return false, err
		}
	}
	steps := 1 + rng.IntN(5)
	for s := range steps {
		if err := step(ctx, tx, rng, opts, s); err != nil {
			return false, err
		}
	}
	if rng.IntN(10) == 0 {
		return false, tx.Rollback(ctx)
	}
	return true, tx.Commit(ctx)
}

func step(ctx context.Context, tx pgx.Tx, rng *rand.Rand, opts Options, s int) error {
	var q string
	var args []any
	switch k := rng.IntN(100); {
	case k < 30:
		q = `INSERT INTO wl_accounts (owner, balance, tags, meta) VALUES ($1, $2, $3, $4)`
		args = []any{fmt.Sprintf("owner-%d", rng.IntN(1000)), fmt.Sprintf("%d.%02d", rng.IntN(100000), rng.IntN(100)),
			[]string{"t" + fmt.Sprint(rng.IntN(5)), "x,\"y\""}, map[string]any{"n": rng.IntN(1 << 30), "big": uint64(1)<<60 + uint64(rng.IntN(1000)), "s": "ü\n"}}
	case k < 45:
		q = `UPDATE wl_accounts SET balance = balance + 1, seen = now() WHERE id = (SELECT max(id) - $1 FROM wl_accounts)`
		args = []any{rng.IntN(50)}
	case k < 50:
		q = `UPDATE wl_accounts SET tags = array_append(tags, 'bulk') WHERE id % 17 = $1`
		args = []any{rng.IntN(17)}
	case k < 58:
		q = `DELETE FROM wl_accounts WHERE id = (SELECT min(id) + $1 FROM wl_accounts)`
		args = []any{rng.IntN(20)}
	case k < 72:
		q = `INSERT INTO wl_events (kind, n) VALUES ($1, $2)`
		args = []any{fmt.Sprintf("k%d", rng.IntN(4)), rng.IntN(100)}
	case k < 76:
		q = `DELETE FROM wl_events WHERE n = $1`
		args = []any{rng.IntN(100)}
	case k < 84:
		q = `INSERT INTO wl_notes (body) VALUES (repeat(md5($1::text), $2))`
		args = []any{rng.IntN(1 << 20), 1 + rng.IntN(400)} // up to 12.8 kB: some are TOASTed
	case k < 88:
		q = `UPDATE wl_notes SET rev = rev + 1 WHERE id = (SELECT max(id) - $1 FROM wl_notes)` // body unchanged: TOAST 'u'
		args = []any{rng.IntN(10)}
	case k < 94 && s > 0:
		// A savepoint: sometimes rolled back, sometimes released.
		if _, err := tx.Exec(ctx, `SAVEPOINT sp`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO wl_events (kind, n) VALUES ('in-savepoint', $1)`, rng.IntN(100)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE wl_accounts SET balance = balance - 1 WHERE id = (SELECT max(id) FROM wl_accounts)`); err != nil {
			return err
		}
		if rng.IntN(2) == 0 {
			q = `ROLLBACK TO SAVEPOINT sp`
		} else {
			q = `RELEASE SAVEPOINT sp`
		}
	case k < 96 && opts.Truncate:
		q = `TRUNCATE wl_events`
	case k < 98 && opts.DDL:
		if rng.IntN(2) == 0 {
			q = `ALTER TABLE wl_events ADD COLUMN IF NOT EXISTS note text DEFAULT 'added'`
		} else {
			q = `ALTER TABLE wl_events DROP COLUMN IF EXISTS note`
		}
	default:
		q = `INSERT INTO wl_events (kind) VALUES ('default')`
	}
	_, err := tx.Exec(ctx, q, args...)
	return err
}
