package setup

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

//go:embed guard.sql
var guardSQL string

// guardTriggers are the event triggers of guard.sql.
var guardTriggers = []string{"walscribe_guard_audit", "walscribe_guard_audit_drop"}

// InstallGuard installs, in the sink database conn is connected to, the
// event triggers that refuse DDL weakening the audit schema (disabling its
// triggers, detaching its partitions, making it unlogged, giving it to
// another owner, rules, policies and triggers of others) to everyone but
// owner. It needs a superuser; it returns false, having changed nothing,
// when the role is not one.
func InstallGuard(ctx context.Context, conn *pgx.Conn, schema, owner string) (bool, error) {
	var super bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		return false, fmt.Errorf("read role: %w", err)
	}
	if !super {
		return false, nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	if err := captureSchemaOwned(ctx, tx); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, guardSQL); err != nil {
		return false, fmt.Errorf("install the guard of the audit schema: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO walscribe_capture.guarded_schemas (schema_name, owner) VALUES ($1, $2)
		ON CONFLICT (schema_name) DO UPDATE SET owner = excluded.owner`, schema, owner); err != nil {
		return false, fmt.Errorf("install the guard of the audit schema: %w", err)
	}
	return true, tx.Commit(ctx)
}

// unguard stops guarding schema in the database conn is connected to, if
// it was guarded.
func unguard(ctx context.Context, conn *pgx.Conn, schema string) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('walscribe_capture.guarded_schemas') IS NOT NULL`).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return nil
	}
	_, err := conn.Exec(ctx, `DELETE FROM walscribe_capture.guarded_schemas WHERE schema_name = $1`, schema)
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) && pgErr.SQLState() == "42501" {
		return fmt.Errorf("the audit schema %q is guarded by event triggers only a superuser may remove: run teardown with --admin-sink-dsn", schema)
	}
	if err != nil {
		return err
	}
	// The last schema guarded here: the event triggers go too.
	var left bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM walscribe_capture.guarded_schemas)`).Scan(&left); err != nil || left {
		return err
	}
	for _, name := range guardTriggers {
		if _, err := conn.Exec(ctx, `DROP EVENT TRIGGER IF EXISTS `+name); err != nil {
			return err
		}
	}
	return nil
}
