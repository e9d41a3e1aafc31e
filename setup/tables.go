package setup

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/rules"
)

// ResolveTables lists the tables the rules track in the database: every
// exact name as configured (whether it exists is checked later, with the
// config key), and every table a pattern matches, less the excluded ones.
// Partitions are not listed: their root is. unmatched lists the patterns
// that match no table today.
func ResolveTables(ctx context.Context, conn *pgx.Conn, rs *rules.Set, skipSchema string) (tables []cdc.Table, unmatched []string, err error) {
	rows, err := conn.Query(ctx, `SELECT n.nspname::text, c.relname::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1, 2`, skipSchema)
	if err != nil {
		return nil, nil, fmt.Errorf("list tables: %w", err)
	}
	type name struct{ schema, table string }
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (name, error) {
		var n name
		return n, r.Scan(&n.schema, &n.table)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list tables: %w", err)
	}
	seen := map[name]bool{}
	for i, e := range rs.Entries() {
		key := fmt.Sprintf("tables[%d].name", i)
		if e.Exact {
			n := name{e.Schema, e.Table}
			if _, ok := rs.For(n.schema, n.table); ok && !seen[n] {
				seen[n] = true
				tables = append(tables, cdc.Table{Schema: n.schema, Name: n.table, Key: key})
			}
			continue
		}
		matched := false
		for _, n := range all {
			if !e.Matches(n.schema, n.table) || !rs.Tracked(n.schema, n.table) {
				continue
			}
			matched = true
			if !seen[n] {
				seen[n] = true
				tables = append(tables, cdc.Table{Schema: n.schema, Name: n.table, Key: key})
			}
		}
		if !matched {
			unmatched = append(unmatched, e.Name)
		}
	}
	return tables, unmatched, nil
}

// ErrCapturePatternsStale: the capture of new tables is installed (by a
// superuser) but this role cannot update its patterns.
var ErrCapturePatternsStale = errors.New("the capture of new tables is installed, but only a superuser can update its patterns")

//go:embed capture.sql
var captureSQL string

// InstallCapture installs the event trigger that adds tables created later
// to the publication in the transaction that creates them, if they match
// the patterns; it needs a superuser. It returns false, having changed
// nothing, when the role is not one.
func InstallCapture(ctx context.Context, conn *pgx.Conn, schema, publication, skipSchema string, rs *rules.Set) (bool, error) {
	var super bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		return false, fmt.Errorf("read role: %w", err)
	}
	if !super {
		var present bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'walscribe_capture')`).Scan(&present); err != nil {
			return false, fmt.Errorf("read event triggers: %w", err)
		}
		if present {
			return false, ErrCapturePatternsStale
		}
		return false, nil
	}
	lit := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	sql := strings.NewReplacer(
		"{{schema}}", pgx.Identifier{schema}.Sanitize(),
		"{{schema_lit}}", lit(schema),
		"{{publication}}", lit(publication),
		"{{skip_schema}}", lit(skipSchema),
	).Replace(captureSQL)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, sql); err != nil {
		return false, fmt.Errorf("install the capture of new tables: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{schema, "capture_patterns"}.Sanitize()); err != nil {
		return false, fmt.Errorf("write capture patterns: %w", err)
	}
	include, exclude := rs.Patterns()
	add := func(p [2]string, excl bool) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "capture_patterns"}.Sanitize()+
			` (schema_re, table_re, exclude, pattern) VALUES ($1, $2, $3, $4)`,
			rules.GlobToRegexp(p[0]), rules.GlobToRegexp(p[1]), excl, p[0]+"."+p[1])
		return err
	}
	for _, p := range include {
		if err := add(p, false); err != nil {
			return false, fmt.Errorf("write capture patterns: %w", err)
		}
	}
	for _, p := range exclude {
		if err := add(p, true); err != nil {
			return false, fmt.Errorf("write capture patterns: %w", err)
		}
	}
	return true, tx.Commit(ctx)
}
