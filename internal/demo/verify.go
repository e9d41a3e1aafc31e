package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// rolledBackEntries lists the entries (at most 10) that hold a value only
// rolled-back work writes. There must be none.
func rolledBackEntries(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT format('id %s: %s %s pk %s', id, action, table_name, pk)
		FROM audit.entries
		WHERE strpos(new::text, $1) > 0 OR strpos(old::text, $1) > 0
		ORDER BY id LIMIT 10`, rolledBackMarker)
	if err != nil {
		return nil, fmt.Errorf("search audit.entries for rolled-back work: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("search audit.entries for rolled-back work: %w", err)
	}
	return out, nil
}

// tableReplay is the outcome of comparing one table's trail with the table.
type tableReplay struct {
	entries    int      // entries of the table in the trail
	rows       int      // rows compared
	mismatches []string // one line per row that differs; at most 10
	skipped    string   // why the table could not be compared, if it could not
}

// replayTable checks that the trail of table public.<table> gives back the
// table as it is now, compared by the server itself (jsonb equality against
// to_jsonb of the row, as the trail's row images are meant to be).
//
// With a primary key: for every key in the trail, the newest entry must be
// a delete and the row absent, or carry exactly the row as it is now. Rows
// the trail never mentions are not compared (they predate the trail).
// Without a primary key the table must have been empty (or truncated) when
// its trail starts and see inserts and deletes only: what is inserted and
// not deleted since the last truncate must be the table, row for row.
func replayTable(ctx context.Context, conn *pgx.Conn, table string) (tableReplay, error) {
	var r tableReplay
	ident := pgx.Identifier{"public", table}.Sanitize()
	var truncates, updates int
	err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE action = 'truncate'), count(*) FILTER (WHERE action = 'update')
		FROM audit.entries WHERE schema_name = 'public' AND table_name = $1`, table).Scan(&r.entries, &truncates, &updates)
	if err != nil {
		return r, fmt.Errorf("replay %s: %w", table, err)
	}
	rows, err := conn.Query(ctx, `SELECT a.attname::text
		FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = $1::regclass AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, ident)
	if err != nil {
		return r, fmt.Errorf("replay %s: read its primary key: %w", table, err)
	}
	pk, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return r, fmt.Errorf("replay %s: read its primary key: %w", table, err)
	}

	if len(pk) > 0 {
		if truncates > 0 {
			r.skipped = "it was truncated"
			return r, nil
		}
		keyExpr := make([]string, len(pk))
		for i, c := range pk {
			keyExpr[i] = fmt.Sprintf("'%s', t.%s", c, pgx.Identifier{c}.Sanitize())
		}
		q := `WITH trail AS (
				SELECT DISTINCT ON (pk) pk, action, new FROM audit.entries
				 WHERE schema_name = 'public' AND table_name = $1 AND action IN ('insert', 'update', 'delete')
				 ORDER BY pk, id DESC
			), cur AS (
				SELECT jsonb_build_object(` + strings.Join(keyExpr, ", ") + `) AS pk, to_jsonb(t) AS row FROM ` + ident + ` t
			)
			SELECT count(*) OVER (), trail.pk::text, trail.action, coalesce(trail.new::text, '-'), coalesce(cur.row::text, 'no row'),
			       (trail.action = 'delete') = (cur.pk IS NOT NULL) OR (trail.action <> 'delete' AND trail.new IS DISTINCT FROM cur.row)
			  FROM trail LEFT JOIN cur ON cur.pk = trail.pk
			 ORDER BY trail.pk`
		rows, err := conn.Query(ctx, q, table)
		if err != nil {
			return r, fmt.Errorf("replay %s: %w", table, err)
		}
		var key, action, trailRow, row string
		var differs bool
		_, err = pgx.ForEachRow(rows, []any{&r.rows, &key, &action, &trailRow, &row, &differs}, func() error {
			if differs && len(r.mismatches) < 10 {
				if action == "delete" {
					r.mismatches = append(r.mismatches, fmt.Sprintf("pk %s: the trail says deleted, the table has %s", key, row))
				} else {
					r.mismatches = append(r.mismatches, fmt.Sprintf("pk %s: the trail says %s (after %s), the table has %s", key, trailRow, action, row))
				}
			}
			return nil
		})
		if err != nil {
			return r, fmt.Errorf("replay %s: %w", table, err)
		}
		return r, nil
	}

	if updates > 0 {
		r.skipped = "no primary key and updated: rows cannot be told apart"
		return r, nil
	}
	q := `WITH since AS (
			SELECT coalesce(max(id), 0) AS id FROM audit.entries
			 WHERE schema_name = 'public' AND table_name = $1 AND action = 'truncate'
		), changes AS (
			SELECT e.action, e.new, e.old FROM audit.entries e, since
			 WHERE e.schema_name = 'public' AND e.table_name = $1 AND e.id > since.id
		), trail AS (
			SELECT new AS row FROM changes WHERE action = 'insert'
			EXCEPT ALL
			SELECT old FROM changes WHERE action = 'delete'
		), cur AS (
			SELECT to_jsonb(t) AS row FROM ` + ident + ` t
		)
		SELECT 'only in the trail: ' || row::text FROM (SELECT row FROM trail EXCEPT ALL SELECT row FROM cur) a
		UNION ALL
		SELECT 'only in the table: ' || row::text FROM (SELECT row FROM cur EXCEPT ALL SELECT row FROM trail) b`
	rows, err = conn.Query(ctx, q, table)
	if err != nil {
		return r, fmt.Errorf("replay %s: %w", table, err)
	}
	diffs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return r, fmt.Errorf("replay %s: %w", table, err)
	}
	if len(diffs) > 10 {
		diffs = diffs[:10]
	}
	r.mismatches = diffs
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+ident).Scan(&r.rows); err != nil {
		return r, fmt.Errorf("replay %s: %w", table, err)
	}
	return r, nil
}
