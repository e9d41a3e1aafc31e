package setup

import (
	"strings"
	"testing"

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
		return strings.Join(queryStrings(t, conn, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'walscribe' ORDER BY 1`), ",")
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
	rs, err := rules.New(rules.Config{Tables: []rules.TableConfig{{Name: "public.a"}, {Name: "shop.*"}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, dsn)
	cfg.Rules = rs
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
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
