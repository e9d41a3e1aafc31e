package setup

import (
	"context"
	"strings"
	"testing"

	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/rules"
)

// TestContextTriggerStateReportedAndRepaired: a context trigger someone
// disabled, or made skippable by session_replication_role, is a problem
// config check names, and setup enables it again, always.
func TestContextTriggerStateReportedAndRepaired(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.a (id int PRIMARY KEY)`, `CREATE TABLE public.b (id int PRIMARY KEY)`)
	cfg := config(t, dsn, "public.a", "public.b")
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	rs, err := rules.New(rules.Config{Tables: []rules.TableConfig{{Name: "public.a"}, {Name: "public.b"}}})
	if err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Connect(t, dsn)
	problems := func() string {
		t.Helper()
		rep, err := Inspect(ctx, conn, rs, cfg.Publication, cfg.SinkSchema, cfg.SinkSchema)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(rep.Problems, "\n")
	}
	if p := problems(); p != "" {
		t.Fatalf("problems right after setup:\n%s", p)
	}
	if u, err := UnguardedTables(ctx, conn, cfg.Publication, cfg.SinkSchema); err != nil || len(u) != 0 {
		t.Fatalf("unguarded tables right after setup: %v, %v", u, err)
	}
	pgtest.Exec(t, dsn, `ALTER TABLE public.a DISABLE TRIGGER walscribe_context`, `ALTER TABLE public.b ENABLE TRIGGER walscribe_context`)
	if u, err := UnguardedTables(ctx, conn, cfg.Publication, cfg.SinkSchema); err != nil || strings.Join(u, ",") != "public.a,public.b" {
		t.Errorf("unguarded tables = %v, %v; want public.a and public.b", u, err)
	}
	p := problems()
	for _, want := range []string{"public.a: the context trigger walscribe_context is disabled", "public.b: the context trigger walscribe_context is not ENABLE ALWAYS"} {
		if !strings.Contains(p, want) {
			t.Errorf("problems lack %q:\n%s", want, p)
		}
	}
	// A table owner's own trigger under the bridge's name: another
	// function, or the bridge's behind a WHEN a session can switch.
	pgtest.Exec(t, dsn, `CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`,
		`CREATE OR REPLACE TRIGGER walscribe_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.a FOR EACH STATEMENT EXECUTE FUNCTION public.noop()`,
		`ALTER TABLE public.a ENABLE ALWAYS TRIGGER walscribe_context`,
		`CREATE OR REPLACE TRIGGER walscribe_context BEFORE INSERT ON public.b FOR EACH STATEMENT EXECUTE FUNCTION audit.emit_context()`,
		`ALTER TABLE public.b ENABLE ALWAYS TRIGGER walscribe_context`)
	if u, err := UnguardedTables(ctx, conn, cfg.Publication, cfg.SinkSchema); err != nil || strings.Join(u, ",") != "public.a,public.b" {
		t.Errorf("tables whose trigger is not the bridge's = %v, %v; want public.a and public.b", u, err)
	}
	p = problems()
	for _, want := range []string{"public.a: the trigger walscribe_context is not the bridge's", "public.b: the trigger walscribe_context is not the bridge's"} {
		if !strings.Contains(p, want) {
			t.Errorf("problems lack %q:\n%s", want, p)
		}
	}
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup again: %v\n%s", err, out)
	}
	if p := problems(); p != "" {
		t.Errorf("problems after setup repaired them:\n%s", p)
	}
	if u, err := UnguardedTables(ctx, conn, cfg.Publication, cfg.SinkSchema); err != nil || len(u) != 0 {
		t.Errorf("unguarded tables after setup: %v, %v", u, err)
	}
	if n := queryStrings(t, conn, `SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'walscribe_context' AND tgenabled = 'A' ORDER BY 1`); len(n) != 2 {
		t.Errorf("triggers enabled always: %v, want public.a and public.b", n)
	}
}

// TestUnguardedPartition: a partition of a published partitioned table
// whose context trigger was dropped is named too.
func TestUnguardedPartition(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.p (id int, r text, PRIMARY KEY (id, r)) PARTITION BY LIST (r)`,
		`CREATE TABLE public.p_eu PARTITION OF public.p FOR VALUES IN ('eu')`)
	cfg := config(t, dsn, "public.p")
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	conn := pgtest.Connect(t, dsn)
	if u, err := UnguardedTables(ctx, conn, cfg.Publication, cfg.SinkSchema); err != nil || len(u) != 0 {
		t.Fatalf("unguarded tables right after setup: %v, %v", u, err)
	}
	pgtest.Exec(t, dsn, `DROP TRIGGER walscribe_context ON public.p_eu`)
	if u, err := UnguardedTables(ctx, conn, cfg.Publication, cfg.SinkSchema); err != nil || strings.Join(u, ",") != "public.p_eu" {
		t.Errorf("unguarded tables = %v, %v; want public.p_eu", u, err)
	}
}

// TestTrustProblems: config check names a pg_logical_emit_message every
// role may call while the configuration revokes it, and warns about a
// daemon that connects as a superuser or may act as the trail's owner.
func TestTrustProblems(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.a (id int PRIMARY KEY)`)
	conn := pgtest.Connect(t, dsn)
	r := DefaultRoles()
	problems, warnings, err := TrustProblems(ctx, conn, r, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "every role may call pg_logical_emit_message") {
		t.Errorf("before setup: problems %q, want one about pg_logical_emit_message", problems)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "a superuser") {
		t.Errorf("a superuser daemon: warnings %q, want one", warnings)
	}
	if out, err := run(t, config(t, dsn, "public.a")); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	member := newRole(t, srv, dsn, "ws", "LOGIN REPLICATION IN ROLE walscribe_owner")
	problems, warnings, err = TrustProblems(ctx, conn, r, member)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 0 {
		t.Errorf("after setup: problems %q, want none", problems)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "may act as walscribe_owner") {
		t.Errorf("a daemon in the owner's role: warnings %q, want one", warnings)
	}
	r.RevokeEmitMessage = false
	pgtest.Exec(t, dsn, `GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC`)
	if problems, _, err := TrustProblems(ctx, conn, r, ""); err != nil || len(problems) != 0 {
		t.Errorf("with revoke_emit_message off: problems %q, %v; want none", problems, err)
	}
}
