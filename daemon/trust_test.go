package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/rules"
	"github.com/walscribe/walscribe/setup"
)

// The role model, tried as the roles it constrains: the daemon's login role
// (walscribe in the README), an application role, a role with no grant at
// all, and an auditor. A superuser runs setup, as documented.

// trustRoles are the login roles of one test.
type trustRoles struct {
	daemon, app, stranger, auditor, appOwner string
}

// newTrustHarness makes a harness whose tables belong to an application
// owner role, with login roles for the daemon (REPLICATION, nothing else),
// the application (member of walscribe_app, DML on the tables), a stranger
// (no grant) and an auditor (member of walscribe_reader), and runs setup as
// the superuser for a daemon connecting as its own role.
func newTrustHarness(t *testing.T) (*harness, trustRoles) {
	t.Helper()
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY, note text)`, "t")
	base := h.dsn[strings.LastIndex(h.dsn, "/")+1 : strings.Index(h.dsn, "?")]
	if len(base) > 50 {
		base = base[:50]
	}
	r := trustRoles{daemon: base + "_ws", app: base + "_app", stranger: base + "_x", auditor: base + "_aud", appOwner: base + "_own"}
	for name, attrs := range map[string]string{r.daemon: "LOGIN REPLICATION", r.app: "LOGIN", r.stranger: "LOGIN", r.auditor: "LOGIN", r.appOwner: "NOLOGIN"} {
		h.exec(`CREATE ROLE ` + ident(name) + ` ` + attrs)
	}
	t.Cleanup(func() {
		h.conn.Close(context.Background())
		srv.DropDB(base)
		for _, name := range []string{r.daemon, r.app, r.stranger, r.auditor, r.appOwner} {
			pgtestExecQuiet(srv.DSN("postgres"), `DROP ROLE IF EXISTS `+ident(name))
		}
	})
	h.exec(`ALTER TABLE t OWNER TO ` + ident(r.appOwner))
	h.exec(`GRANT CREATE ON SCHEMA public TO ` + ident(r.appOwner))
	h.exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON t TO ` + ident(r.app))
	h.exec(`GRANT walscribe_app TO ` + ident(r.app))
	h.exec(`GRANT walscribe_reader TO ` + ident(r.auditor))
	rs, err := rules.New(rules.Config{Tables: []rules.TableConfig{{Name: "public.*"}}, ExcludeTables: []string{"public.oracle*"}})
	if err != nil {
		t.Fatal(err)
	}
	h.setupRules = rs
	// setup through the superuser's connection, for a daemon that
	// connects as its own role.
	if err := setup.Run(context.Background(), setup.Config{
		SourceDSN: h.as(r.daemon), AdminSourceDSN: h.dsn, SinkSchema: "audit", Slot: h.cfg.Slot, Publication: h.cfg.Publication,
		SlotTimeout: 30 * time.Second, Rules: rs,
	}, t.Logf); err != nil {
		t.Fatalf("setup: %v", err)
	}
	h.cfg.SourceDSN = h.as(r.daemon)
	h.sinkCfg.DSN = h.as(r.daemon)
	return h, r
}

// as is the harness's database as role.
func (h *harness) as(role string) string {
	return strings.Replace(h.dsn, "postgres://postgres@", "postgres://"+role+"@", 1)
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// execAs runs sql as role and returns the error.
func execAs(t *testing.T, h *harness, role, sql string) error {
	t.Helper()
	conn := pgtestConnect(t, h.as(role))
	defer conn.Close(context.Background())
	_, err := conn.Exec(context.Background(), sql)
	return err
}

// TestLeastPrivilegedDaemon: the daemon streams and writes the trail as a
// role that may only replicate and append; the application writes through
// the bridge as its own role; the auditor reads; none of them may change
// the trail.
func TestLeastPrivilegedDaemon(t *testing.T) {
	h, r := newTrustHarness(t)
	h.start()
	if err := execAs(t, h, r.app, `BEGIN;
		SELECT audit.set_context(actor_id => '42', request_id => 'req-1');
		INSERT INTO t VALUES (1, 'a'); UPDATE t SET note = 'b' WHERE id = 1;
		SELECT audit.log_event('exported', 'public.t', '1');
		COMMIT`); err != nil {
		t.Fatalf("the application writes through the bridge: %v", err)
	}
	h.exec(`SET ROLE ` + ident(r.appOwner) + `; INSERT INTO t VALUES (2, 'as owner'); RESET ROLE`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't' AND actor_id = '42' AND db_user = $1 AND login_user IS NULL AND flags IS NULL`, r.app); n != 3 {
		t.Errorf("%d entries by %s with its context, want 3 (insert, update, event)", n, r.app)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't' AND pk = '{"id": 2}' AND db_user = $1 AND login_user = 'postgres'`, r.appOwner); n != 1 {
		t.Errorf("the change made after SET ROLE is not recorded with both roles")
	}

	conn := pgtestConnect(t, h.as(r.auditor))
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM audit.entries`).Scan(&n); err != nil || n == 0 {
		t.Errorf("the auditor reads the trail: %d entries, %v", n, err)
	}

	denied := map[string][]string{
		r.daemon: {`UPDATE audit.entries SET actor_id = 'x'`, `DELETE FROM audit.entries`, `TRUNCATE audit.entries`,
			`DELETE FROM audit.checkpoints`, `ALTER TABLE audit.entries DISABLE TRIGGER append_only`, `DROP TABLE audit.gaps`,
			`CREATE TABLE audit.evil (id int)`, `SET ROLE walscribe_owner`, `SELECT * FROM audit.bridge_key_a`, `SELECT pg_sequence_last_value('audit.bridge_key_b')`, `SELECT nextval('audit.bridge_key_a')`},
		r.auditor: {`INSERT INTO audit.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action) VALUES (0, '0/1', 1, now(), 'x', 'y', 'z')`,
			`UPDATE audit.entries SET actor_id = 'x'`, `SELECT audit.log_event('viewed', 'x')`},
		r.app: {`SELECT count(*) FROM audit.entries`, `SELECT pg_sequence_last_value('audit.bridge_key_a')`, `SELECT last_value FROM audit.bridge_key_b`, `INSERT INTO audit.checkpoints VALUES ('x', '0/1', 0, now(), 0)`,
			`SELECT audit.ensure_partitions(now(), now(), '{default}')`},
	}
	for role, stmts := range denied {
		for _, stmt := range stmts {
			if err := execAs(t, h, role, stmt); !pg.Is(err, "42501") {
				t.Errorf("as %s, %s: %v, want permission denied", role, stmt, err)
			}
		}
	}
}

// TestNoEscalation: the daemon's role tries to drop and replace every
// function in the database, and to create its own where walscribe's are
// looked up; then the event trigger runs (a new table, as an application
// owner and as a superuser) and a superuser runs setup and writes. The role
// stays what it was, and owns nothing.
func TestNoEscalation(t *testing.T) {
	h, r := newTrustHarness(t)
	evil := `BEGIN EXECUTE 'ALTER ROLE ` + ident(r.daemon) + ` SUPERUSER'; END`
	rows, err := h.conn.Query(context.Background(), `SELECT p.oid::regprocedure::text, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
			pg_get_function_result(p.oid)
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	type fn struct{ sig, schema, name, args, result string }
	fns, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fn, error) {
		var f fn
		return f, row.Scan(&f.sig, &f.schema, &f.name, &f.args, &f.result)
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fns {
		names = append(names, f.sig)
	}
	for _, want := range []string{"audit.emit_context()", "audit.ensure_partitions(timestamp with time zone,timestamp with time zone,text[])",
		"walscribe_capture.capture_table(oid)", "walscribe_capture.capture_new_tables()"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("no function %s to attack among %v", want, names)
		}
	}
	attempts := 0
	for _, f := range fns {
		body := fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s.%s(%s) RETURNS %s LANGUAGE plpgsql AS $x$ %s $x$`,
			ident(f.schema), ident(f.name), f.args, f.result, evil)
		for _, stmt := range []string{
			`DROP FUNCTION ` + f.sig + ` CASCADE`,
			body,
			`ALTER FUNCTION ` + f.sig + ` OWNER TO ` + ident(r.daemon),
			`ALTER FUNCTION ` + f.sig + ` RENAME TO x_` + f.name,
		} {
			attempts++
			if err := execAs(t, h, r.daemon, stmt); err == nil {
				t.Errorf("as the daemon's role: %s succeeded", stmt)
			}
		}
	}
	// Functions of its own where walscribe's names are looked up: the
	// schemas walscribe's functions live in, and public.
	for _, schema := range []string{"audit", "walscribe_capture", "public"} {
		stmt := `CREATE FUNCTION ` + schema + `.current_context() RETURNS jsonb LANGUAGE plpgsql AS $x$ ` + evil + ` $x$`
		attempts++
		if err := execAs(t, h, r.daemon, stmt); err == nil {
			t.Errorf("as the daemon's role: %s succeeded", stmt)
		}
	}
	for _, stmt := range []string{`ALTER SCHEMA audit RENAME TO audit_old`, `ALTER SCHEMA walscribe_capture OWNER TO ` + ident(r.daemon),
		`DROP SCHEMA walscribe_capture CASCADE`, `DROP EVENT TRIGGER walscribe_capture`, `ALTER EVENT TRIGGER walscribe_capture DISABLE`,
		`DELETE FROM walscribe_capture.patterns`, `GRANT walscribe_owner TO ` + ident(r.daemon)} {
		attempts++
		if err := execAs(t, h, r.daemon, stmt); err == nil {
			t.Errorf("as the daemon's role: %s succeeded", stmt)
		}
	}
	t.Logf("%d attempts refused", attempts)

	// What runs as a superuser: the event trigger, on a table of the
	// application's owner and on one of the superuser; setup; a write.
	if err := execAs(t, h, "postgres", `SET ROLE `+ident(r.appOwner)+`; CREATE TABLE public.later (id int PRIMARY KEY)`); err != nil {
		t.Fatalf("create a table as the application's owner: %v", err)
	}
	h.exec(`CREATE TABLE public.later_su (id int PRIMARY KEY)`)
	if err := setup.Run(context.Background(), setup.Config{
		SourceDSN: h.as(r.daemon), AdminSourceDSN: h.dsn, SinkSchema: "audit", Slot: h.cfg.Slot, Publication: h.cfg.Publication,
		SlotTimeout: 30 * time.Second, Rules: h.setupRules,
	}, t.Logf); err != nil {
		t.Fatalf("setup again: %v", err)
	}
	h.exec(`INSERT INTO t VALUES (1); INSERT INTO later_su VALUES (1); SELECT audit.log_event('checked', 'x')`)
	var published int
	if err := h.conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'walscribe' AND tablename IN ('later', 'later_su')`).Scan(&published); err != nil || published != 2 {
		t.Errorf("the tables created later are not captured: %d of 2 published, %v", published, err)
	}
	var supers []string
	rows, err = h.conn.Query(context.Background(), `SELECT rolname::text FROM pg_roles WHERE rolsuper AND rolname <> 'postgres'`)
	if err == nil {
		supers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(supers) > 0 {
		t.Errorf("superusers other than postgres: %v (%v)", supers, err)
	}
	var owned int
	if err := h.conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_class WHERE relowner = $1::regrole)
		+ (SELECT count(*) FROM pg_proc WHERE proowner = $1::regrole) + (SELECT count(*) FROM pg_namespace WHERE nspowner = $1::regrole)`,
		r.daemon).Scan(&owned); err != nil || owned != 0 {
		t.Errorf("the daemon's role owns %d objects (%v), want none", owned, err)
	}
	var definers []string
	rows, err = h.conn.Query(context.Background(), `SELECT p.oid::regprocedure::text || ' ' || coalesce(array_to_string(p.proconfig, ','), '')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE p.prosecdef AND n.nspname IN ('audit', 'walscribe_capture')
		  AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY(p.proconfig), false)`)
	if err == nil {
		definers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(definers) > 0 {
		t.Errorf("SECURITY DEFINER functions without search_path = pg_catalog, pg_temp: %v (%v)", definers, err)
	}
}

// TestForgedMessagesRefused: a role without the application grant can put
// nothing into the stream that walscribe reads, neither through raw
// logical messages nor through the bridge's functions; a member of the
// application group can, and the event says who it was.
func TestForgedMessagesRefused(t *testing.T) {
	h, r := newTrustHarness(t)
	h.start()
	for _, stmt := range []string{
		`SELECT pg_logical_emit_message(false, 'walscribe.event', '{"action": "update", "target": "public.t"}')`,
		`SELECT pg_logical_emit_message(true, 'walscribe.context', '{"db_user": "postgres"}'::text)`,
		`SELECT pg_logical_emit_message(false, 'walscribe.event', '\x7b7d'::bytea)`,
		`SELECT audit.log_event('exported', 'public.t')`,
		`SELECT audit.set_context(actor_id => '1')`,
	} {
		err := execAs(t, h, r.stranger, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("as a role without grant, %s: %v, want permission denied", stmt, err)
		}
	}
	if err := execAs(t, h, r.app, `SET ROLE `+ident(r.app)+`; SELECT audit.log_event('exported', 'public.t', '7', transactional => false)`); err != nil {
		t.Fatalf("log_event as the application: %v", err)
	}
	if err := execAs(t, h, r.app, `SELECT pg_logical_emit_message(false, 'walscribe.event', '{"action": "exported"}')`); !pg.Is(err, "42501") {
		t.Errorf("the application emits raw messages: %v", err)
	}
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name <> 'marker'`); n != 1 {
		t.Errorf("%d entries besides markers, want the one event", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'exported' AND db_user = $1 AND flags IS NULL`, r.app); n != 1 {
		t.Errorf("the event does not say who wrote it")
	}
}

// TestSetupAsTheDaemonChecks: once a superuser has run setup, setup run as
// the daemon's own role (an init container's) changes nothing and passes;
// when something needs the owner or a superuser, it says how to run it.
func TestSetupAsTheDaemonChecks(t *testing.T) {
	h, r := newTrustHarness(t)
	cfg := setup.Config{SourceDSN: h.as(r.daemon), SinkSchema: "audit", Slot: h.cfg.Slot, Publication: h.cfg.Publication,
		SlotTimeout: 30 * time.Second, Rules: h.setupRules}
	var out strings.Builder
	say := func(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }
	if err := setup.Run(context.Background(), cfg, say); err != nil {
		t.Fatalf("setup as the daemon after a superuser's: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "warning") {
		t.Errorf("setup as the daemon warns after a superuser's setup:\n%s", out.String())
	}
	// A bridge from another version needs the owner.
	h.exec(`COMMENT ON FUNCTION audit.emit_context() IS 'walscribe bridge 0000'`)
	err := setup.Run(context.Background(), cfg, say)
	if err == nil || !strings.Contains(err.Error(), "--admin-dsn") || !strings.Contains(err.Error(), "another version") {
		t.Errorf("setup as the daemon with a bridge to replace: %v, want an error saying to run it through --admin-dsn", err)
	}
	// A trail whose grants are gone needs the owner too.
	h.exec(`REVOKE INSERT ON audit.entries FROM ` + ident(r.daemon))
	cfg.Rules = nil
	cfg.Tables = h.tables
	err = setup.Run(context.Background(), cfg, say)
	if err == nil || !strings.Contains(err.Error(), "may not append") {
		t.Errorf("setup as the daemon without its grants: %v, want an error saying it may not append", err)
	}
}

// TestTeardownThroughTheAdmin: the daemon's role may remove nothing; the
// superuser's connection removes everything setup installed, and gives
// pg_logical_emit_message back to PUBLIC.
func TestTeardownThroughTheAdmin(t *testing.T) {
	h, r := newTrustHarness(t)
	cfg := setup.TeardownConfig{SourceDSN: h.as(r.daemon), SinkSchema: "audit", Slot: h.cfg.Slot, Publication: h.cfg.Publication}
	if err := setup.Teardown(context.Background(), cfg, t.Logf); err == nil || !strings.Contains(err.Error(), "nothing removed") {
		t.Fatalf("teardown as the daemon's role: %v, want a refusal", err)
	}
	cfg.AdminSourceDSN = h.dsn
	if err := setup.Teardown(context.Background(), cfg, t.Logf); err != nil {
		t.Fatalf("teardown through the superuser's connection: %v", err)
	}
	if err := execAs(t, h, r.stranger, `SELECT pg_logical_emit_message(false, 'x', 'y')`); err != nil {
		t.Errorf("after teardown, pg_logical_emit_message: %v", err)
	}
	if n := h.count(`SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a
		WHERE p.proname = 'pg_logical_emit_message' AND a.grantee = 'walscribe_owner'::regrole`); n != 0 {
		t.Errorf("after teardown, walscribe_owner keeps %d grants on pg_logical_emit_message", n)
	}
	if n := h.count(`SELECT count(*) FROM pg_namespace WHERE nspname = 'walscribe_capture'`) + h.count(`SELECT count(*) FROM pg_event_trigger`) +
		h.count(`SELECT count(*) FROM pg_trigger WHERE tgname = 'walscribe_context'`); n != 0 {
		t.Errorf("%d of walscribe's objects left after teardown", n)
	}
}

// TestReplayedMarkKeepsAttribution: a session that writes as two roles in
// one transaction and sets the bridge's mark back to the one it had as the
// first does not get its next change recorded as the second role's: the
// mark of an earlier message no longer matches, and the context is written
// again.
func TestReplayedMarkKeepsAttribution(t *testing.T) {
	h, r := newTrustHarness(t)
	r1, r2 := r.app+"_r1", r.app+"_r2"
	for _, role := range []string{r1, r2} {
		h.exec(`CREATE ROLE ` + ident(role) + ` NOLOGIN`)
		h.exec(`GRANT INSERT, DELETE, SELECT ON t TO ` + ident(role))
		h.exec(`GRANT ` + ident(role) + ` TO ` + ident(r.app))
		t.Cleanup(func() {
			pgtestExecQuiet(srv.DSN("postgres"), `DROP OWNED BY `+ident(role))
			pgtestExecQuiet(srv.DSN("postgres"), `DROP ROLE IF EXISTS `+ident(role))
		})
	}
	h.start()
	ctx := context.Background()
	conn := pgtestConnect(t, h.as(r.app))
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var m1 string
	for _, step := range []func() error{
		func() error {
			_, err := tx.Exec(ctx, `SET LOCAL ROLE `+ident(r1)+`; SET LOCAL audit.actor_id = 'mallory'; INSERT INTO t VALUES (1)`)
			return err
		},
		func() error {
			return tx.QueryRow(ctx, `SELECT current_setting('walscribe.emitted_context')`).Scan(&m1)
		},
		func() error {
			_, err := tx.Exec(ctx, `SET LOCAL ROLE `+ident(r2)+`; SET LOCAL audit.actor_id = 'alice'; INSERT INTO t VALUES (2)`)
			return err
		},
		func() error {
			_, err := tx.Exec(ctx, `SET LOCAL ROLE `+ident(r1)+`; SET LOCAL audit.actor_id = 'mallory'`)
			if err == nil {
				_, err = tx.Exec(ctx, `SELECT set_config('walscribe.emitted_context', $1, true)`, m1)
			}
			if err == nil {
				_, err = tx.Exec(ctx, `DELETE FROM t WHERE id = 2`)
			}
			return err
		},
		func() error { return tx.Commit(ctx) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't' AND action = 'delete' AND db_user = $1 AND actor_id = 'mallory' AND login_user = $2`, r1, r.app); n != 1 {
		t.Errorf("the delete made as %s after its mark was replayed is not recorded as %s's", r1, r1)
	}
}

// TestNoEscalationThroughPublic: a role that may create objects in schema
// public (every role may, before PostgreSQL 15) plants an operator and a
// function that shadow PostgreSQL's for the types setup uses, to run its
// code as the superuser or the trail's owner. setup, run as the superuser
// on a database where nothing of walscribe's exists yet, calls none of it.
func TestNoEscalationThroughPublic(t *testing.T) {
	dsn := srv.NewDB(t)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	attacker := db[:min(len(db), 50)] + "_x"
	pgtestExecQuiet(srv.DSN("postgres"), `CREATE ROLE `+ident(attacker)+` LOGIN`)
	t.Cleanup(func() {
		srv.DropDB(db)
		pgtestExecQuiet(srv.DSN("postgres"), `DROP ROLE IF EXISTS `+ident(attacker))
	})
	admin := pgtestConnect(t, dsn)
	defer admin.Close(context.Background())
	for _, sql := range []string{
		`CREATE TABLE public.t (id int PRIMARY KEY)`,
		`GRANT CREATE ON SCHEMA public TO PUBLIC`, // as before PostgreSQL 15
	} {
		if _, err := admin.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	as := strings.Replace(dsn, "postgres://postgres@", "postgres://"+attacker+"@", 1)
	attackerConn := pgtestConnect(t, as)
	defer attackerConn.Close(context.Background())
	escalate := `INSERT INTO public.leak VALUES (current_user, $x$` + "%s" + `$x$);
		IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE 'ALTER ROLE ` + ident(attacker) + ` SUPERUSER'; END IF;`
	for _, sql := range []string{
		`CREATE TABLE public.leak (who text, what text)`,
		`GRANT INSERT ON public.leak TO PUBLIC`,
		`CREATE FUNCTION public.evil_ne(a oid, b regrole) RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN ` + fmt.Sprintf(escalate, "oid <> regrole") + ` RETURN a::oid OPERATOR(pg_catalog.<>) b::oid; END $f$`,
		`CREATE OPERATOR public.<> (LEFTARG = oid, RIGHTARG = regrole, FUNCTION = public.evil_ne)`,
		`CREATE FUNCTION public.evil_eq(a oid, b regclass) RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN ` + fmt.Sprintf(escalate, "oid = regclass") + ` RETURN a::oid OPERATOR(pg_catalog.=) b::oid; END $f$`,
		`CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.evil_eq)`,
		`CREATE FUNCTION public.setval(s text, v bigint, c boolean) RETURNS bigint LANGUAGE plpgsql AS $f$ BEGIN INSERT INTO public.leak VALUES (current_user, s || ' ' || v); RETURN v; END $f$`,
		`CREATE FUNCTION public.nextval(s text) RETURNS bigint LANGUAGE plpgsql AS $f$ BEGIN ` + fmt.Sprintf(escalate, "nextval") + ` RETURN 1; END $f$`,
	} {
		if _, err := attackerConn.Exec(context.Background(), sql); err != nil {
			t.Fatalf("as the attacker: %s: %v", sql, err)
		}
	}
	rs, err := rules.New(rules.Config{Tables: []rules.TableConfig{{Name: "public.*"}}, ExcludeTables: []string{"public.leak"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a first install, and a second run
		if err := setup.Run(context.Background(), setup.Config{SourceDSN: dsn, AdminSourceDSN: dsn, SinkSchema: "audit", Slot: db[:min(len(db), 60)],
			Publication: "walscribe", SlotTimeout: 30 * time.Second, Rules: rs}, t.Logf); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	if _, err := admin.Exec(context.Background(), `INSERT INTO public.t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	var super bool
	if err := admin.QueryRow(context.Background(), `SELECT rolsuper FROM pg_roles WHERE rolname = $1`, attacker).Scan(&super); err != nil || super {
		t.Errorf("the attacker is a superuser after setup: %v, %v", super, err)
	}
	var leaked []string
	rows, err := admin.Query(context.Background(), `SELECT who || ': ' || what FROM public.leak`)
	if err == nil {
		leaked, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(leaked) > 0 {
		t.Errorf("the attacker's functions ran: %v (%v)", leaked, err)
	}
}
