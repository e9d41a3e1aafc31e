package verify

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// querier is a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// snapshot opens, on the two connections, read-only transactions that see
// the same snapshot of the database: the entries and the log's leaves read
// side by side are those of one moment, however the daemon writes meanwhile.
// end ends both.
func snapshot(ctx context.Context, conn, leavesConn *pgx.Conn) (entries, leaves pgx.Tx, end func(), err error) {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	entries, err = conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("begin: %w", err)
	}
	var id string
	if err := entries.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&id); err != nil {
		entries.Rollback(ctx)
		return nil, nil, nil, fmt.Errorf("export the snapshot: %w", err)
	}
	leaves, err = leavesConn.BeginTx(ctx, opts)
	if err != nil {
		entries.Rollback(ctx)
		return nil, nil, nil, fmt.Errorf("begin: %w", err)
	}
	if _, err := leaves.Exec(ctx, `SET TRANSACTION SNAPSHOT `+quote(id)); err != nil {
		leaves.Rollback(ctx)
		entries.Rollback(ctx)
		return nil, nil, nil, fmt.Errorf("share the snapshot: %w", err)
	}
	return entries, leaves, func() {
		leaves.Rollback(context.WithoutCancel(ctx))
		entries.Rollback(context.WithoutCancel(ctx))
	}, nil
}

// quote is s as an SQL string literal; s is a snapshot id, from the server.
func quote(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
