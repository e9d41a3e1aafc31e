package integrity

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
)

// A LeafReader reads the leaf hashes the writer stored (the audit schema's
// integrity_leaves), in id order, one record at a time.
type LeafReader struct {
	rows  pgx.Rows
	first int64  // id of the first leaf of the record at hand
	buf   []byte // its leaves
	done  bool
}

// Querier runs a query: a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// OpenLeaves starts reading the leaves of ids from from on, up to to (0:
// to the end), in the audit schema schema (an SQL identifier, quoted).
func OpenLeaves(ctx context.Context, conn Querier, schema string, from, to int64) (*LeafReader, error) {
	query := `SELECT first_id, leaves FROM ` + schema + `.integrity_leaves
		WHERE first_id + octet_length(leaves) / 32 > $1`
	args := []any{from}
	if to > 0 {
		query += ` AND first_id <= $2`
		args = append(args, to)
	}
	rows, err := conn.Query(ctx, query+` ORDER BY first_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read the integrity log: %w", err)
	}
	return &LeafReader{rows: rows}, nil
}

// Leaf returns the stored leaf of entry id, and whether there is one. The
// ids asked for never decrease.
func (l *LeafReader) Leaf(id int64) (tlog.Hash, bool, error) {
	for !l.done && id >= l.first+int64(len(l.buf)/32) {
		if !l.rows.Next() {
			l.done = true
			if err := l.rows.Err(); err != nil {
				return tlog.Hash{}, false, fmt.Errorf("read the integrity log: %w", err)
			}
			break
		}
		var b []byte
		if err := l.rows.Scan(&l.first, &b); err != nil {
			return tlog.Hash{}, false, fmt.Errorf("read the integrity log: %w", err)
		}
		l.buf = b[:len(b)/32*32]
	}
	i := id - l.first
	if l.done || i < 0 || i >= int64(len(l.buf)/32) {
		return tlog.Hash{}, false, nil
	}
	var h tlog.Hash
	copy(h[:], l.buf[32*i:])
	return h, true, nil
}

// Close ends the reading.
func (l *LeafReader) Close() { l.rows.Close() }
