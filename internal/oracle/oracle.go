// Package oracle keeps an independent record of every row change, written by
// triggers in the same transaction as the change, and compares the audit
// trail with it: the trail must hold exactly the oracle's changes, each
// transaction's in order, each once. Tests and the chaos driver use it; the
// product never does.
package oracle

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// installSQL creates the shadow log and the trigger functions that fill it.
const installSQL = `
CREATE TABLE IF NOT EXISTS oracle_shadow (
	id  bigserial PRIMARY KEY,
	xid bigint NOT NULL,
	tbl text NOT NULL,
	op  text NOT NULL,
	old jsonb,
	new jsonb);
CREATE OR REPLACE FUNCTION oracle_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
	INSERT INTO oracle_shadow (xid, tbl, op, old, new) VALUES (txid_current() % 4294967296, TG_TABLE_NAME, lower(TG_OP),
		CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END, CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
	RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION oracle_truncate() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
	INSERT INTO oracle_shadow (xid, tbl, op) VALUES (txid_current() % 4294967296, TG_TABLE_NAME, 'truncate');
	RETURN NULL;
END $$;`

// Install creates the shadow log in the current database. It is idempotent.
func Install(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, installSQL); err != nil {
		return fmt.Errorf("install oracle: %w", err)
	}
	return nil
}

// Attach records every change of table (a qualified name such as
// public.orders) in the shadow log.
func Attach(ctx context.Context, conn *pgx.Conn, table string) error {
	_, err := conn.Exec(ctx, fmt.Sprintf(`
		CREATE TRIGGER oracle_row AFTER INSERT OR UPDATE OR DELETE ON %[1]s FOR EACH ROW EXECUTE FUNCTION oracle_row();
		CREATE TRIGGER oracle_truncate AFTER TRUNCATE ON %[1]s FOR EACH STATEMENT EXECUTE FUNCTION oracle_truncate();`, table))
	if err != nil {
		return fmt.Errorf("attach oracle to %s: %w", table, err)
	}
	return nil
}

// Mismatch is one transaction that differs between the oracle and the trail.
// Want or Got is "" when the transaction is missing on that side.
type Mismatch struct {
	Xid       int64
	Want, Got string
}

func (m Mismatch) String() string {
	show := func(s string) string {
		if s == "" {
			return "(missing)"
		}
		if len(s) > 2000 {
			return s[:2000] + "…"
		}
		return s
	}
	return fmt.Sprintf("xid %d:\n  oracle: %s\n  trail:  %s", m.Xid, show(m.Want), show(m.Got))
}

// Result is the outcome of a comparison.
type Result struct {
	Changes      int // row changes in the oracle that were compared
	Transactions int // their transactions
	Mismatches   []Mismatch
}

// Compare compares the shadow log with the entries in schema (the audit
// schema), leaving out tables named in skip (such as a marker table used to
// wait for the daemon). It returns at most limit mismatches. Entries are
// grouped by their source transaction; a transaction stored twice, partly,
// or with other values is a mismatch.
func Compare(ctx context.Context, conn *pgx.Conn, schema string, skip []string, limit int) (*Result, error) {
	entries := pgx.Identifier{schema, "entries"}.Sanitize()
	if skip == nil {
		skip = []string{}
	}
	r := &Result{}
	err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT xid) FROM oracle_shadow WHERE tbl <> ALL($1)`, skip).
		Scan(&r.Changes, &r.Transactions)
	if err != nil {
		return nil, fmt.Errorf("count oracle: %w", err)
	}
	rows, err := conn.Query(ctx, `
	WITH want AS (
		SELECT xid, jsonb_agg(jsonb_build_object('t', tbl, 'op', op, 'old', old, 'new', new) ORDER BY id) AS changes
		FROM oracle_shadow WHERE tbl <> ALL($1) GROUP BY xid),
	got AS (
		SELECT xid, jsonb_agg(jsonb_build_object('t', table_name, 'op', action, 'old', old,
			'new', CASE WHEN action = 'truncate' THEN NULL ELSE new END) ORDER BY seq) AS changes
		FROM `+entries+` WHERE table_name <> ALL($1) AND action IN ('insert', 'update', 'delete', 'truncate')
		GROUP BY commit_lsn, xid)
	SELECT coalesce(w.xid, g.xid), coalesce(w.changes::text, ''), coalesce(g.changes::text, '')
	FROM want w FULL JOIN got g ON g.xid = w.xid AND g.changes = w.changes
	WHERE w.xid IS NULL OR g.xid IS NULL
	ORDER BY 1 LIMIT $2`, skip, limit)
	if err != nil {
		return nil, fmt.Errorf("compare with oracle: %w", err)
	}
	r.Mismatches, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Mismatch, error) {
		var m Mismatch
		return m, row.Scan(&m.Xid, &m.Want, &m.Got)
	})
	if err != nil {
		return nil, fmt.Errorf("compare with oracle: %w", err)
	}
	return r, nil
}
