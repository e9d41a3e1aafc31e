package setup

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/rules"
)

// TestRunOnAnEmptyDatabase: a new project's first setup, with a pattern
// and no table yet, makes a publication of no table; the first table
// created is captured; and rules that match nothing any more empty the
// publication.
func TestRunOnAnEmptyDatabase(t *testing.T) {
	dsn := srv.NewDB(t)
	rulesFor := func(pattern string) *rules.Set {
		rs, err := rules.New(rules.Config{Tables: []rules.TableConfig{{Name: pattern}}})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	cfg := config(t, dsn)
	cfg.Rules = rulesFor("public.*")
	out, err := run(t, cfg)
	if err != nil {
		t.Fatalf("setup on an empty database: %v\n%s", err, out)
	}
	if !strings.Contains(out, "pattern public.* matches no table yet") {
		t.Errorf("setup does not say the pattern matches nothing yet:\n%s", out)
	}
	conn := pgtest.Connect(t, dsn)
	published := func() string {
		t.Helper()
		return strings.Join(queryStrings(t, conn, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'walscribe'
			AND tablename <> 'partition_truncates' ORDER BY 1`), ",")
	}
	if p := queryStrings(t, conn, `SELECT pubname::text FROM pg_publication`); len(p) != 1 || published() != "" {
		t.Fatalf("publications %v publishing %q, want walscribe publishing nothing", p, published())
	}
	pgtest.Exec(t, dsn, `CREATE TABLE public.first (id int PRIMARY KEY)`)
	if p := published(); p != "public.first" {
		t.Errorf("the first table created is not captured: publication has %q", p)
	}
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup again: %v\n%s", err, out)
	}
	cfg.Rules = rulesFor("other.*")
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup with rules that match nothing any more: %v\n%s", err, out)
	}
	if p := published(); p != "" {
		t.Errorf("publication keeps %q after the rules stopped matching it", p)
	}
}

// TestCreateSchemaWithTables: CREATE SCHEMA ... CREATE TABLE ... (one
// command) is captured like CREATE TABLE.
func TestCreateSchemaWithTables(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.a (id int PRIMARY KEY)`)
	setUpPatterns(t, dsn, "public.a", "shop.*")
	pgtest.Exec(t, dsn, `CREATE SCHEMA shop CREATE TABLE orders (id int PRIMARY KEY) CREATE TABLE items (id int)`)
	conn := pgtest.Connect(t, dsn)
	got := strings.Join(queryStrings(t, conn, `SELECT pt.schemaname || '.' || pt.tablename || ' ' || c.relreplident::text || ' ' ||
			EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'walscribe_context')
		FROM pg_publication_tables pt JOIN pg_class c ON c.oid = format('%I.%I', pt.schemaname, pt.tablename)::regclass
		WHERE pt.pubname = 'walscribe' AND pt.schemaname = 'shop' ORDER BY 1`), ",")
	if got != "shop.items f true,shop.orders f true" {
		t.Errorf("tables of CREATE SCHEMA ... CREATE TABLE: %q, want both published, REPLICA IDENTITY FULL, with the context trigger", got)
	}
}

// TestWeakeningDDLRefused: an ALTER TABLE that would take a tracked table
// out of capture (a replica identity other than FULL, the context trigger
// disabled) fails with walscribe's reason and how to exclude the table,
// instead of being reset silently; a partition of a tracked table alike;
// untracked tables, and attaching a partition, are left alone.
func TestWeakeningDDLRefused(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.a (id int PRIMARY KEY, u int UNIQUE NOT NULL)`, `CREATE TABLE public.free (id int PRIMARY KEY)`,
		`CREATE TABLE public.p (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`,
		`CREATE TABLE public.p_2024 PARTITION OF public.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`)
	setUpPatterns(t, dsn, "public.a", "public.p")
	conn := pgtest.Connect(t, dsn)
	for _, stmt := range []string{
		`ALTER TABLE public.a REPLICA IDENTITY DEFAULT`,
		`ALTER TABLE public.a REPLICA IDENTITY NOTHING`,
		`ALTER TABLE public.a REPLICA IDENTITY USING INDEX a_u_key`,
		`ALTER TABLE public.a DISABLE TRIGGER walscribe_context`,
		`ALTER TABLE public.a DISABLE TRIGGER ALL`,
		`ALTER TABLE public.a ENABLE TRIGGER walscribe_context`,
		`ALTER TABLE public.p_2024 REPLICA IDENTITY DEFAULT`,
		`ALTER TABLE public.p_2024 DISABLE TRIGGER walscribe_context`,
		`ALTER TABLE public.p_2024 SET UNLOGGED`,
		`ALTER /**/ TABLE public.p_2024 ALTER COLUMN id SET STATISTICS 100, SET UNLOGGED`,
		`DO $$ BEGIN EXECUTE 'ALTER TABLE public.p_2024 SET UNLOGGED'; END $$`,
	} {
		_, err := conn.Exec(context.Background(), stmt)
		if err == nil || !strings.Contains(err.Error(), "walscribe audits table public.") {
			t.Errorf("%s: %v, want walscribe's refusal", stmt, err)
			continue
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Hint, "exclude_tables") {
			t.Errorf("%s: the refusal does not say how to exclude the table: %v", stmt, err)
		}
	}
	if got := queryStrings(t, conn, `SELECT c.relname || ' ' || c.relreplident::text || ' ' || g.tgenabled::text FROM pg_class c
		JOIN pg_trigger g ON g.tgrelid = c.oid AND g.tgname = 'walscribe_context' WHERE c.relname IN ('a', 'p_2024') ORDER BY 1`); strings.Join(got, ",") != "a f A,p_2024 f A" {
		t.Errorf("after the refusals: %v, want both FULL with the trigger enabled always", got)
	}
	// The table's owner, not a superuser, alike.
	pgtest.Exec(t, dsn, `CREATE ROLE ddl_owner`, `ALTER TABLE public.p_2024 OWNER TO ddl_owner`)
	if _, err := conn.Exec(context.Background(), `SET ROLE ddl_owner; ALTER TABLE public.p_2024 SET UNLOGGED`); err == nil || !strings.Contains(err.Error(), "walscribe audits table public.p_2024") {
		t.Errorf("SET UNLOGGED by the table's owner: %v, want walscribe's refusal", err)
	}
	// (The failed statement took its SET ROLE with it.)
	if got := queryStrings(t, conn, `SELECT relkind::text || relpersistence::text FROM pg_class WHERE relname = 'p_2024'`); strings.Join(got, "") != "rp" {
		t.Errorf("public.p_2024 is %v after the refusals, want a permanent table (rp)", got)
	}
	// A table published directly: PostgreSQL refuses both itself.
	for _, stmt := range []string{`ALTER TABLE public.a SET UNLOGGED`, `CREATE RULE "_RETURN" AS ON SELECT TO public.a DO INSTEAD SELECT 1 AS id, 2 AS u`} {
		if _, err := conn.Exec(context.Background(), stmt); err == nil {
			t.Errorf("%s: accepted", stmt)
		}
	}
	// Untracked tables, and a table attached as a partition, are not refused.
	pgtest.Exec(t, dsn, `ALTER TABLE public.free REPLICA IDENTITY NOTHING`, `ALTER TABLE public.free SET UNLOGGED`,
		`ALTER TABLE public.free ADD COLUMN note text DEFAULT $$never set unlogged$$`,
		`CREATE TABLE public.v (id int)`, `CREATE RULE "_RETURN" AS ON SELECT TO public.v DO INSTEAD SELECT 1 AS id`,
		`CREATE TABLE public.p_2025 (id int, at date, PRIMARY KEY (id, at))`,
		`ALTER TABLE public.p ATTACH PARTITION public.p_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`)
	if got := queryStrings(t, conn, `SELECT relreplident::text FROM pg_class WHERE relname = 'p_2025'`); strings.Join(got, "") != "f" {
		t.Errorf("the attached partition has REPLICA IDENTITY %v, want FULL", got)
	}
}

// TestPartitionsAttachedAndDetached: a table captured on its own and then
// attached as a partition of a tracked table is published through its root
// only, and nothing warns about it; a partition detached from a tracked
// table that the patterns match is captured on its own.
func TestPartitionsAttachedAndDetached(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.p (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`,
		`CREATE TABLE public.p_2024 PARTITION OF public.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`)
	cfg := setUpPatterns(t, dsn, "public.*")
	conn := pgtest.Connect(t, dsn)
	published := func() string {
		t.Helper()
		return strings.Join(queryStrings(t, conn, `SELECT c.relname::text FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
			JOIN pg_class c ON c.oid = pr.prrelid WHERE p.pubname = 'walscribe' AND c.relname <> 'partition_truncates' ORDER BY 1`), ",")
	}
	pgtest.Exec(t, dsn, `CREATE TABLE public.p_2025 (id int, at date, PRIMARY KEY (id, at))`)
	if got := published(); got != "p,p_2025" {
		t.Fatalf("published %q after creating p_2025 on its own, want p,p_2025", got)
	}
	pgtest.Exec(t, dsn, `ALTER TABLE public.p ATTACH PARTITION public.p_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`)
	if got := published(); got != "p" {
		t.Errorf("published %q after attaching p_2025 to p, want p only (p_2025 through its root)", got)
	}
	out, err := run(t, cfg)
	if err != nil {
		t.Fatalf("setup again: %v\n%s", err, out)
	}
	if strings.Contains(out, "p_2025") {
		t.Errorf("setup says something of the attached partition:\n%s", out)
	}
	pgtest.Exec(t, dsn, `ALTER TABLE public.p DETACH PARTITION public.p_2024`)
	if got := published(); got != "p,p_2024" {
		t.Errorf("published %q after detaching p_2024, want p,p_2024 (it matches public.*)", got)
	}
	// Weakened while on its own and untracked, then attached again: the
	// capture makes it what walscribe needs, in the attaching command.
	pgtest.Exec(t, dsn, `ALTER PUBLICATION walscribe DROP TABLE public.p_2024`,
		`ALTER TABLE public.p_2024 REPLICA IDENTITY DEFAULT, ENABLE TRIGGER walscribe_context`,
		`ALTER TABLE public.p ATTACH PARTITION public.p_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`)
	if got := queryStrings(t, conn, `SELECT c.relreplident::text || g.tgenabled::text FROM pg_class c JOIN pg_trigger g ON g.tgrelid = c.oid
		AND g.tgname = 'walscribe_context' WHERE c.relname = 'p_2024'`); strings.Join(got, "") != "fA" {
		t.Errorf("p_2024 attached again: identity and trigger %v, want fA", got)
	}
	// An unlogged partition is not captured; made logged, it is.
	pgtest.Exec(t, dsn, `CREATE UNLOGGED TABLE public.p_2027 PARTITION OF public.p FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')`,
		`ALTER TABLE public.p_2027 SET LOGGED`)
	if got := queryStrings(t, conn, `SELECT c.relreplident::text || g.tgenabled::text FROM pg_class c JOIN pg_trigger g ON g.tgrelid = c.oid
		AND g.tgname = 'walscribe_context' WHERE c.relname = 'p_2027'`); strings.Join(got, "") != "fA" {
		t.Errorf("p_2027 made logged: identity and trigger %v, want fA", got)
	}
}

// setUpPatterns runs setup on dsn tracking the tables that names and
// patterns match, and returns its Config.
func setUpPatterns(t *testing.T, dsn string, patterns ...string) Config {
	t.Helper()
	var tables []rules.TableConfig
	for _, p := range patterns {
		tables = append(tables, rules.TableConfig{Name: p})
	}
	rs, err := rules.New(rules.Config{Tables: tables})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, dsn)
	cfg.Rules = rs
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	return cfg
}
