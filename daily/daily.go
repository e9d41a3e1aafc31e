// Package daily keeps the daily counts of the trail: per UTC day, its
// entries by action, by table and action, and by actor and action. They
// are derived from the entries, for summaries over many days; walscribe
// run counts a day once everything committed in it is stored, and a purge
// forgets the days it touched, to be counted again.
package daily

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier runs a query: a connection, a pool or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Beginner begins a database transaction: a connection or a pool.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Lock is the SQL that takes the daily counts' lock for the transaction,
// the schema (quoted) as its parameter $1: Count and Forget take it, so
// that a count and a purge never overlap (a count would keep the entries
// the purge removed, or the purge forget nothing of a count still to
// commit).
const Lock = `pg_advisory_xact_lock(1463897427, hashtext('walscribe.daily.' || $1::text))`

// Count counts the entries of one UTC day (the day of day) into the daily
// counts of schema (an SQL identifier, quoted), replacing what they held
// for it, and marks the day counted; it returns the day's entries. Count
// a day once everything committed in it is stored.
func Count(ctx context.Context, db Beginner, schema string, day time.Time) (int64, error) {
	from := day.UTC().Truncate(24 * time.Hour)
	var n int64
	// READ COMMITTED, after the lock: the counting statement sees what a
	// purge that held the lock committed.
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT `+Lock, schema); err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM ` + schema + `.daily_counts WHERE day = $1::date`, `DELETE FROM ` + schema + `.daily_days WHERE day = $1::date`} {
			if _, err := tx.Exec(ctx, q, from.Format(time.DateOnly)); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+schema+`.daily_counts (day, kind, schema_name, table_name, actor_id, action, entries)
			SELECT $1::date, CASE GROUPING(e.schema_name, e.table_name, e.actor_id) WHEN 7 THEN 'd' WHEN 1 THEN 't' ELSE 'a' END,
			       e.schema_name, e.table_name, e.actor_id, e.action, count(*)
			  FROM `+schema+`.entries e WHERE e.committed_at >= $2 AND e.committed_at < $3
			 GROUP BY GROUPING SETS ((e.action), (e.schema_name, e.table_name, e.action), (e.actor_id, e.action))`,
			from.Format(time.DateOnly), from, from.Add(24*time.Hour)); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO `+schema+`.daily_days (day, entries)
			SELECT $1::date, coalesce(sum(entries), 0) FROM `+schema+`.daily_counts WHERE day = $1::date AND kind = 'd'
			RETURNING entries`, from.Format(time.DateOnly)).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("count the entries of %s: %w", from.Format(time.DateOnly), err)
	}
	return n, nil
}

// Execer runs a statement.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Forget deletes the daily counts of the UTC days from..to (both
// included), which a purge made stale: they are counted again.
func Forget(ctx context.Context, db Execer, schema string, from, to time.Time) error {
	if _, err := db.Exec(ctx, `SELECT `+Lock, schema); err != nil {
		return fmt.Errorf("forget the daily counts: %w", err)
	}
	for _, q := range []string{`DELETE FROM ` + schema + `.daily_counts WHERE day BETWEEN $1::date AND $2::date`,
		`DELETE FROM ` + schema + `.daily_days WHERE day BETWEEN $1::date AND $2::date`} {
		if _, err := db.Exec(ctx, q, from.UTC().Format(time.DateOnly), to.UTC().Format(time.DateOnly)); err != nil {
			return fmt.Errorf("forget the daily counts from %s to %s: %w", from.UTC().Format(time.DateOnly), to.UTC().Format(time.DateOnly), err)
		}
	}
	return nil
}

// Uncounted are the UTC days from from up to before before (each a
// midnight) that the daily counts do not hold, oldest first, at most limit.
func Uncounted(ctx context.Context, q Querier, schema string, from, before time.Time, limit int) ([]time.Time, error) {
	rows, err := q.Query(ctx, `SELECT d::date FROM generate_series($1::date, $2::date - 1, interval '1 day') d
		WHERE NOT EXISTS (SELECT 1 FROM `+schema+`.daily_days k WHERE k.day = d::date) ORDER BY 1 LIMIT $3`,
		from.UTC().Format(time.DateOnly), before.UTC().Format(time.DateOnly), limit)
	if err != nil {
		return nil, fmt.Errorf("read the daily counts: %w", err)
	}
	days, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, fmt.Errorf("read the daily counts: %w", err)
	}
	for i := range days {
		days[i] = time.Date(days[i].Year(), days[i].Month(), days[i].Day(), 0, 0, 0, 0, time.UTC)
	}
	return days, nil
}
