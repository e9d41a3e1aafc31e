package restore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// table is what the source's catalog says of an entry's table now.
type table struct {
	ident  string // quoted, qualified name
	cols   []*column
	byName map[string]*column
	pk     []string // primary-key columns in key order; none without a primary key
}

// column is one column of a table, now.
type column struct {
	name       string
	num        int    // attnum: columns added later have higher numbers
	typ        string // its type, quoted and qualified (no typmod: assignment applies it)
	notNull    bool
	hasDefault bool
	generated  bool
	identity   byte // 'a' GENERATED ALWAYS, 'd' BY DEFAULT, 0 none
	// json: json or jsonb (or a domain over one), where a stored null is
	// either SQL NULL or JSON null; jsonText: json, whose documents jsonb
	// may refuse.
	json, jsonText bool
}

const (
	oidJSON  = 114
	oidJSONB = 3802
)

// errNoTable: the table does not exist, or is not a table.
var errNoTable = errors.New("no such table")

// loadTable reads schema.table from the source's catalog.
func loadTable(ctx context.Context, src Querier, schema, name string) (*table, error) {
	var (
		oid  uint32
		kind string
	)
	err := src.QueryRow(ctx, `SELECT c.oid, c.relkind::text FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, schema, name).Scan(&oid, &kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoTable
	}
	if err != nil {
		return nil, fmt.Errorf("read the table from the catalog: %w", err)
	}
	if kind != "r" && kind != "p" {
		return nil, fmt.Errorf("%w (relkind %s)", errNoTable, kind)
	}
	t := &table{ident: pgx.Identifier{schema, name}.Sanitize(), byName: map[string]*column{}}
	// The base type of a domain is looked up two levels deep.
	rows, err := src.Query(ctx, `SELECT a.attnum, a.attname::text, tn.nspname::text, ty.typname::text,
			a.attnotnull, a.atthasdef, a.attgenerated <> '', a.attidentity::text,
			CASE WHEN ty.typtype <> 'd' THEN ty.oid
			     ELSE (SELECT CASE WHEN b.typtype = 'd' THEN b.typbasetype ELSE b.oid END
			             FROM pg_catalog.pg_type b WHERE b.oid = ty.typbasetype) END
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
		JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("read the table's columns: %w", err)
	}
	t.cols, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*column, error) {
		var (
			c              column
			typSchema, typ string
			identity       string
			base           uint32
		)
		if err := row.Scan(&c.num, &c.name, &typSchema, &typ, &c.notNull, &c.hasDefault, &c.generated, &identity, &base); err != nil {
			return nil, err
		}
		c.typ = pgx.Identifier{typSchema, typ}.Sanitize()
		if identity != "" {
			c.identity = identity[0]
		}
		c.json = base == oidJSON || base == oidJSONB
		c.jsonText = base == oidJSON
		return &c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the table's columns: %w", err)
	}
	for _, c := range t.cols {
		t.byName[c.name] = c
	}
	err = src.QueryRow(ctx, `SELECT coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
			FROM pg_catalog.pg_index i
			CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
			JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			WHERE i.indrelid = $1 AND i.indisprimary), '{}')`, oid).Scan(&t.pk)
	if err != nil {
		return nil, fmt.Errorf("read the table's primary key: %w", err)
	}
	return t, nil
}
