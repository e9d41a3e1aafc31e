package verify

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
)

// leafReader reads the leaf hashes the writer stored (integrity_leaves),
// in id order, one record at a time.
type leafReader struct {
	rows  pgx.Rows
	first int64  // id of the first leaf of the record at hand
	buf   []byte // its leaves
	done  bool
}

// openLeaves starts reading the leaves of ids from from on.
func openLeaves(ctx context.Context, conn querier, schema string, from int64) (*leafReader, error) {
	rows, err := conn.Query(ctx, `SELECT first_id, leaves FROM `+schema+`.integrity_leaves
		WHERE first_id + octet_length(leaves) / 32 > $1 ORDER BY first_id`, from)
	if err != nil {
		return nil, fmt.Errorf("read the integrity log: %w", err)
	}
	return &leafReader{rows: rows}, nil
}

// leaf returns the stored leaf of entry id, and whether there is one. The
// ids asked for never decrease.
func (l *leafReader) leaf(id int64) (tlog.Hash, bool, error) {
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

func (l *leafReader) close() { l.rows.Close() }
