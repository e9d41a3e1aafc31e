// Package catalog answers the decoder's questions about the source database
// that the replication stream does not carry: how a non-built-in type renders
// (domains, enums, arrays of them) and which columns form a table's primary
// key.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/decoder"
	"github.com/walscribe/walscribe/internal/pg"
)

// Catalog reads pg_catalog on a regular connection to the source database,
// opened on first use and reopened after it breaks. Types are cached.
type Catalog struct {
	dsn string

	mu    sync.Mutex
	conn  *pgx.Conn
	types map[uint32]*decoder.Type
}

var _ decoder.Resolver = (*Catalog)(nil)

// New returns a Catalog for the database at dsn; it does no I/O.
func New(dsn string) *Catalog {
	return &Catalog{dsn: dsn, types: map[uint32]*decoder.Type{}}
}

// Close closes the connection.
func (c *Catalog) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close(ctx)
	c.conn = nil
	return err
}

// withConnLocked runs fn on the connection. When the connection turns out to
// be broken (the server restarted, the backend was terminated) it runs fn
// once more on a new one, so that a lost connection costs no wrong answer.
func (c *Catalog) withConnLocked(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := c.connLocked(ctx)
	if err != nil {
		return err
	}
	err = fn(conn)
	if err == nil || !conn.IsClosed() || ctx.Err() != nil {
		return err
	}
	if conn, err = c.connLocked(ctx); err != nil {
		return err
	}
	return fn(conn)
}

func (c *Catalog) connLocked(ctx context.Context) (*pgx.Conn, error) {
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	conn, err := pg.Connect(ctx, c.dsn, pg.AppTool)
	if err != nil {
		return nil, fmt.Errorf("catalog: connect: %w", err)
	}
	c.conn = conn
	return conn, nil
}

// ResolveType returns how values of type oid render: a domain as its base
// type, an array as an array of its element, everything else (enums,
// composites, ranges, extension types) as text; nil when the type no longer
// exists (it renders as text).
func (c *Catalog) ResolveType(ctx context.Context, oid uint32) (*decoder.Type, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resolveLocked(ctx, oid, 0)
}

func (c *Catalog) resolveLocked(ctx context.Context, oid uint32, depth int) (*decoder.Type, error) {
	if t, ok := decoder.BuiltinType(oid); ok {
		return t, nil
	}
	if t, ok := c.types[oid]; ok {
		return t, nil
	}
	if depth > 16 {
		return nil, fmt.Errorf("catalog: type %d: nesting too deep", oid)
	}
	var (
		typtype  string
		base     uint32
		elem     uint32
		delim    string
		category string
	)
	err := settle(ctx, pgx.ErrNoRows, func() error {
		return c.withConnLocked(ctx, func(conn *pgx.Conn) error {
			return conn.QueryRow(ctx, `SELECT typtype::text, typbasetype, typelem, typdelim::text, typcategory::text
				FROM pg_type WHERE oid = $1`, oid).Scan(&typtype, &base, &elem, &delim, &category)
		})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil // dropped since the change was written
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: type %d: %w", oid, err)
	}
	t := &decoder.Type{Kind: decoder.KindString}
	switch {
	case typtype == "d":
		if t, err = c.resolveLocked(ctx, base, depth+1); err != nil {
			return nil, err
		}
		if t == nil {
			t = &decoder.Type{Kind: decoder.KindString}
		}
	case category == "A" && elem != 0:
		et, err := c.resolveLocked(ctx, elem, depth+1)
		if err != nil {
			return nil, err
		}
		if et == nil {
			et = &decoder.Type{Kind: decoder.KindString}
		}
		t = &decoder.Type{Kind: decoder.KindArray, Elem: et, Delim: ','}
		if len(delim) == 1 {
			t.Delim = delim[0]
		}
	}
	c.types[oid] = t
	return t, nil
}

// PrimaryKey returns the primary-key columns of relation relOID in key order,
// or none when the table has no primary key.
func (c *Catalog) PrimaryKey(ctx context.Context, relOID uint32) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	err := settle(ctx, decoder.ErrRelationGone, func() error {
		return c.withConnLocked(ctx, func(conn *pgx.Conn) error {
			// One statement, one snapshot: whether the table exists and its key
			// are read at the same moment.
			var exists bool
			err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = $1),
			coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
				FROM pg_index i
				CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				WHERE i.indrelid = $1 AND i.indisprimary), '{}')`, relOID).Scan(&exists, &keys)
			if err == nil && !exists {
				return decoder.ErrRelationGone
			}
			return err
		})
	})
	if errors.Is(err, decoder.ErrRelationGone) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: primary key of %d: %w", relOID, err)
	}
	return keys, nil
}

// GeneratedColumns returns the generated columns of relation relOID
// (stored and virtual), in column order.
func (c *Catalog) GeneratedColumns(ctx context.Context, relOID uint32) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cols []string
	err := c.withConnLocked(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT attname::text FROM pg_attribute
			WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated <> ''
			ORDER BY attnum`, relOID)
		if err != nil {
			return err
		}
		cols, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: generated columns of %d: %w", relOID, err)
	}
	return cols, nil
}

// settleWaits are the pauses settle makes, about 0.6 s in all.
var settleWaits = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond,
	80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond}

// settle runs lookup until it returns anything but notFound, or about
// 0.6 s have passed. A transaction's commit record reaches the stream a
// moment before the transaction is visible to other sessions: a table or
// type it created may be missing from the catalog for that moment. One
// still missing afterwards was dropped since.
func settle(ctx context.Context, notFound error, lookup func() error) error {
	err := lookup()
	for _, wait := range settleWaits {
		if !errors.Is(err, notFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		err = lookup()
	}
	return err
}
