package setup

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestGuardOfTheAuditSchema: after setup (as a superuser), DDL that would
// take the audit schema's protections out of the way is refused, to a
// superuser too, with walscribe's reason; the owner role's own path
// (migrations, ensure_partitions, setup again) still works, and so does
// the application's DDL on its own tables.
func TestGuardOfTheAuditSchema(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY)`)
	cfg := setUpPatterns(t, dsn, "public.orders")
	conn := pgtest.Connect(t, dsn)
	ctx := context.Background()
	var leaf string
	if err := conn.QueryRow(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'audit' AND c.relname LIKE 'entries\_%\_default' ORDER BY 1 LIMIT 1`).Scan(&leaf); err != nil {
		t.Fatal(err)
	}
	var month string
	if err := conn.QueryRow(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'audit' AND c.relkind = 'p' AND c.relname LIKE 'entries\_%' ORDER BY 1 LIMIT 1`).Scan(&month); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`ALTER TABLE audit.entries DISABLE TRIGGER append_only`,
		`ALTER TABLE audit.checkpoints DISABLE TRIGGER USER`,
		`ALTER TABLE audit.` + leaf + ` DISABLE TRIGGER append_only_truncate`,
		`ALTER TABLE audit.entries DETACH PARTITION audit.` + month,
		`ALTER TABLE audit.checkpoints SET UNLOGGED`,
		`ALTER TABLE audit.entries OWNER TO postgres`,
		`ALTER TABLE audit.entries ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY hide ON audit.checkpoints USING (false)`,
		`CREATE RULE keep AS ON INSERT TO audit.gaps DO INSTEAD NOTHING`,
		`CREATE TRIGGER rewrite BEFORE INSERT ON audit.checkpoints FOR EACH ROW EXECUTE FUNCTION audit.reject_change()`,
		`DROP TRIGGER append_only_truncate ON audit.` + leaf,
		`DROP TRIGGER append_only ON audit.gaps`,
		`CREATE OR REPLACE FUNCTION audit.reject_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
		`DROP FUNCTION audit.reject_change() CASCADE`,
		`DROP TABLE audit.` + leaf,
		`ALTER TABLE audit.` + leaf + ` SET SCHEMA public`,
		`ALTER TABLE audit.checkpoints SET SCHEMA public`,
		`ALTER TABLE audit.gaps DROP COLUMN detected_at`,
		`CREATE FUNCTION audit.helper() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
	} {
		_, err := conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "walscribe: the audit schema audit is append-only and tamper-evident") {
			t.Errorf("%s as a superuser: %v, want walscribe's refusal", stmt, err)
		}
	}
	// What the owner's path does still works: setup again, a month's
	// partitions made by the daemon's function, its own ALTERs.
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup again: %v\n%s", err, out)
	}
	pgtest.Exec(t, dsn, `SELECT audit.ensure_partitions('2031-01-01', '2031-02-01', ARRAY['default', 'long'])`,
		`SET ROLE walscribe_owner; ALTER TABLE audit.checkpoints ALTER COLUMN entries SET STATISTICS 200; RESET ROLE`,
		`ALTER TABLE public.orders ADD COLUMN note text`, `CREATE TRIGGER t BEFORE INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION audit.reject_change()`,
		`DROP TRIGGER t ON public.orders`)
	// A superuser may still drop the guard: what it protects is then found
	// by walscribe verify.
	pgtest.Exec(t, dsn, `DROP EVENT TRIGGER walscribe_guard_audit`, `ALTER TABLE audit.checkpoints DISABLE TRIGGER USER`)
}
