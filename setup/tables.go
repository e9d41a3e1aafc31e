package setup

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pg"
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

// captureSchema holds the capture of new tables: capture.sql's functions,
// which run as the superuser that installed them, and their patterns.
const captureSchema = "walscribe_capture"

// captureSchemaOwned creates captureSchema, or checks that a superuser owns
// it: one that another role owns may hold anything that role put there, and
// nothing a superuser runs goes in it. In the transaction that installs the
// functions, and without IF NOT EXISTS, so that a schema created meanwhile
// makes the creation fail rather than slip in.
func captureSchemaOwned(ctx context.Context, tx pgx.Tx) error {
	var owner *string
	var super bool
	err := tx.QueryRow(ctx, `SELECT r.rolname::text, r.rolsuper FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
		WHERE n.nspname = $1`, captureSchema).Scan(&owner, &super)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+captureSchema); err != nil {
			return fmt.Errorf("create schema %s: %w", captureSchema, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("read schema %s: %w", captureSchema, err)
	case !super:
		return fmt.Errorf("schema %s belongs to role %s, not to a superuser: walscribe puts functions that run as a superuser in it, and will not where another role may change them; look at what it holds, then drop it (DROP SCHEMA %s CASCADE) and run setup again",
			captureSchema, *owner, captureSchema)
	}
	return nil
}

// dropLegacyCapture drops the capture of new tables as earlier versions
// installed it: in the audit schema, where the owner of that schema could
// replace what a superuser runs. capture.sql installs it again, in its own
// schema.
func dropLegacyCapture(ctx context.Context, tx pgx.Tx, schema string) error {
	s := pgx.Identifier{schema}.Sanitize()
	if _, err := tx.Exec(ctx, `DROP EVENT TRIGGER IF EXISTS `+captureTrigger+`;
		DROP FUNCTION IF EXISTS `+s+`.capture_new_tables();
		DROP FUNCTION IF EXISTS `+s+`.capture_table(oid);
		DROP TABLE IF EXISTS `+s+`.capture_patterns`); err != nil {
		return fmt.Errorf("drop the capture of new tables from schema %q (it moves to %s): %w", schema, captureSchema, err)
	}
	return nil
}

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
		if !present {
			return false, nil
		}
		current, err := patternsCurrent(ctx, conn, rs)
		if err != nil {
			return false, err
		}
		if !current {
			return false, ErrCapturePatternsStale
		}
		return true, nil
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
	if err := captureSchemaOwned(ctx, tx); err != nil {
		return false, err
	}
	if err := dropLegacyCapture(ctx, tx, schema); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, sql); err != nil {
		return false, fmt.Errorf("install the capture of new tables: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM walscribe_capture.patterns`); err != nil {
		return false, fmt.Errorf("write capture patterns: %w", err)
	}
	for _, p := range capturePatterns(rs) {
		if _, err := tx.Exec(ctx, `INSERT INTO walscribe_capture.patterns (schema_re, table_re, exclude, pattern) VALUES ($1, $2, $3, $4)`,
			p.schemaRE, p.tableRE, p.exclude, p.pattern); err != nil {
			return false, fmt.Errorf("write capture patterns: %w", err)
		}
	}
	return true, tx.Commit(ctx)
}

// capturePattern is one row of walscribe_capture.patterns.
type capturePattern struct {
	schemaRE, tableRE string
	exclude           bool
	pattern           string
}

// capturePatterns are the rows of walscribe_capture.patterns for rs.
func capturePatterns(rs *rules.Set) []capturePattern {
	include, exclude := rs.Patterns()
	var out []capturePattern
	for _, p := range include {
		out = append(out, capturePattern{rules.GlobToRegexp(p[0]), rules.GlobToRegexp(p[1]), false, p[0] + "." + p[1]})
	}
	for _, p := range exclude {
		out = append(out, capturePattern{rules.GlobToRegexp(p[0]), rules.GlobToRegexp(p[1]), true, p[0] + "." + p[1]})
	}
	return out
}

// patternsCurrent reports whether walscribe_capture.patterns holds the
// patterns of rs (in any order). Earlier versions kept them where only
// their owner could read: those are not current.
func patternsCurrent(ctx context.Context, conn *pgx.Conn, rs *rules.Set) (bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('walscribe_capture.patterns') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return false, err
	}
	rows, err := conn.Query(ctx, `SELECT schema_re, table_re, exclude, pattern FROM walscribe_capture.patterns`)
	if err != nil {
		if pg.Is(err, "42501") {
			return false, nil
		}
		return false, fmt.Errorf("read capture patterns: %w", err)
	}
	have, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (capturePattern, error) {
		var p capturePattern
		return p, r.Scan(&p.schemaRE, &p.tableRE, &p.exclude, &p.pattern)
	})
	if err != nil {
		return false, fmt.Errorf("read capture patterns: %w", err)
	}
	want := capturePatterns(rs)
	if len(have) != len(want) {
		return false, nil
	}
	for _, p := range want {
		if !slices.Contains(have, p) {
			return false, nil
		}
	}
	return true, nil
}
