package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walscribe/walscribe/auditctx"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/metrics"
)

// entryRow is what the context tests read back from audit.entries.
type entryRow struct {
	Action, Table                       string
	New                                 *string
	ActorID, Actor, IP, UA, Request     *string
	DBUser, ClientAddr, App, Extra, Xid *string
}

func (h *harness) entries(where string, args ...any) []entryRow {
	h.t.Helper()
	rows, err := h.conn.Query(context.Background(), `SELECT action, table_name, new::text, actor_id, actor, ip::text, user_agent, request_id,
		db_user, client_addr::text, application_name, context::text, xid::text
		FROM audit.entries WHERE table_name <> 'marker' AND (`+where+`) ORDER BY id`, args...)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entryRow, error) {
		var e entryRow
		err := r.Scan(&e.Action, &e.Table, &e.New, &e.ActorID, &e.Actor, &e.IP, &e.UA, &e.Request,
			&e.DBUser, &e.ClientAddr, &e.App, &e.Extra, &e.Xid)
		return e, err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func str(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// TestContextPerClient runs concurrent clients, each with its own actor,
// IP and request ids: every entry must carry its own client's context,
// never a neighbour's.
func TestContextPerClient(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id serial PRIMARY KEY, who text, req text)`, "t")
	h.start()
	const clients, txs = 6, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, h.dsn)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			for i := range txs {
				who, req := fmt.Sprintf("user-%d", c), fmt.Sprintf("req-%d-%d", c, i)
				tx, err := conn.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				_, err = tx.Exec(ctx, `SELECT audit.set_context(actor_id => $1, actor => $2, ip => $3, user_agent => 'agent/'||$1, request_id => $4)`,
					who, "User "+who, fmt.Sprintf("10.0.0.%d", c+1), req)
				for row := 0; err == nil && row <= i%3; row++ {
					_, err = tx.Exec(ctx, `INSERT INTO t (who, req) VALUES ($1, $2)`, who, req)
				}
				if err == nil && i%5 == 4 {
					_, err = tx.Exec(ctx, `UPDATE t SET who = who WHERE req = $1`, req)
				}
				if err == nil {
					err = tx.Commit(ctx)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h.sync()
	got := h.entries(`true`)
	want := h.count(`SELECT count(*) FROM t`) + h.count(`SELECT count(*) FROM t WHERE substr(req, length(req)) IN ('4', '9')`)
	if len(got) != want {
		t.Fatalf("%d entries, want %d", len(got), want)
	}
	for _, e := range got {
		var row struct{ Who, Req string }
		if err := jsonUnmarshal(str(e.New), &row); err != nil {
			t.Fatal(err)
		}
		n := strings.TrimPrefix(row.Who, "user-")
		var c int
		fmt.Sscan(n, &c)
		ok := str(e.ActorID) == row.Who && str(e.Actor) == "User "+row.Who && str(e.Request) == row.Req &&
			str(e.IP) == fmt.Sprintf("10.0.0.%d/32", c+1) && str(e.UA) == "agent/"+row.Who &&
			str(e.DBUser) == "postgres" && str(e.ClientAddr) == "127.0.0.1/32"
		if !ok {
			t.Errorf("entry for %s %s carries actor %s (%s), ip %s, ua %s, request %s, db_user %s, client %s",
				row.Who, row.Req, str(e.ActorID), str(e.Actor), str(e.IP), str(e.UA), str(e.Request), str(e.DBUser), str(e.ClientAddr))
		}
	}
	h.stop()
}

// TestContextWithinTransaction: a context changed mid-transaction applies
// from that point on; one set inside a savepoint that is rolled back does
// not apply; a session-level context applies to later transactions; a
// change with no context at all carries what the database saw.
func TestContextWithinTransaction(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.start()
	h.exec(`INSERT INTO t VALUES (1)`) // no context at all
	h.exec(`BEGIN;
		SET LOCAL audit.actor_id = 'a';
		INSERT INTO t VALUES (2);
		SET LOCAL audit.actor_id = 'b';
		INSERT INTO t VALUES (3);
		SAVEPOINT s;
		SET LOCAL audit.actor_id = 'c';
		INSERT INTO t VALUES (99);
		ROLLBACK TO SAVEPOINT s;
		INSERT INTO t VALUES (4);
		SAVEPOINT s2;
		SET LOCAL audit.actor_id = 'd';
		INSERT INTO t VALUES (5);
		RELEASE SAVEPOINT s2;
		INSERT INTO t VALUES (6);
		COMMIT`)
	h.exec(`BEGIN;
		SAVEPOINT s;
		SET LOCAL audit.actor_id = 'e';
		INSERT INTO t VALUES (98);
		ROLLBACK TO SAVEPOINT s;
		INSERT INTO t VALUES (7);
		COMMIT`)
	h.exec(`SET audit.actor_id = 'session-user'`)
	h.exec(`INSERT INTO t VALUES (8)`)
	h.exec(`INSERT INTO t VALUES (9)`)
	h.exec(`RESET audit.actor_id`)
	h.exec(`SET application_name = 'billing-job'`)
	h.exec(`INSERT INTO t VALUES (10)`)
	h.sync()
	want := map[string]string{"1": "NULL", "2": "a", "3": "b", "4": "b", "5": "d", "6": "d", "7": "NULL", "8": "session-user", "9": "session-user", "10": "NULL"}
	got := h.entries(`true`)
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for _, e := range got {
		var row struct{ ID int }
		if err := jsonUnmarshal(str(e.New), &row); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprint(row.ID)
		if str(e.ActorID) != want[id] {
			t.Errorf("row %s: actor_id %s, want %s", id, str(e.ActorID), want[id])
		}
		if str(e.DBUser) != "postgres" || str(e.ClientAddr) != "127.0.0.1/32" {
			t.Errorf("row %s: db_user %s, client_addr %s: want what the database saw", id, str(e.DBUser), str(e.ClientAddr))
		}
		if id == "10" && str(e.App) != "billing-job" {
			t.Errorf("row 10: application_name %s, want billing-job", str(e.App))
		}
	}
	h.stop()
}

// TestContextFromApplicationRole: a role that may only write to a tracked
// table (no rights on the audit tables) writes through the bridge, and the
// entry says who it was.
func TestContextFromApplicationRole(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	role := "app_" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_"))
	h.exec(`DROP ROLE IF EXISTS ` + role)
	h.exec(`CREATE ROLE ` + role + ` LOGIN`)
	t.Cleanup(func() {
		srv.DropDB(h.dsn[strings.LastIndex(h.dsn, "/")+1 : strings.Index(h.dsn, "?")])
		pgtestExecQuiet(srv.DSN("postgres"), `DROP ROLE IF EXISTS `+role)
	})
	h.exec(`GRANT INSERT ON t TO ` + role)
	h.exec(`GRANT walscribe_app TO ` + role)
	h.start()
	app, err := pgx.Connect(context.Background(), strings.Replace(h.dsn, "postgres://postgres@", "postgres://"+role+"@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	if _, err := app.Exec(context.Background(), `BEGIN;
		SELECT audit.set_context(actor_id => '42');
		INSERT INTO t VALUES (1);
		SELECT audit.log_event('exported', 'public.t', '1');
		COMMIT`); err != nil {
		t.Fatalf("the application role cannot write through the bridge: %v", err)
	}
	if _, err := app.Exec(context.Background(), `SELECT count(*) FROM audit.entries`); err == nil {
		t.Error("the application role can read audit.entries")
	}
	h.sync()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't' AND actor_id = '42' AND db_user = $1`, role); n != 2 {
		t.Errorf("%d entries by %s with its actor, want 2", n, role)
	}
	h.stop()
}

// TestMalformedContext: values the application got wrong are kept as text,
// and the change is recorded.
func TestMalformedContext(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.start()
	h.exec(`BEGIN; SET LOCAL audit.context = '{"tenant": "acme", "reason": "ticket 12"}'; SET LOCAL audit.ip = '2001:db8::1'; INSERT INTO t VALUES (1); COMMIT`)
	h.exec(`BEGIN; SET LOCAL audit.context = '{not json'; SET LOCAL audit.ip = 'not-an-ip'; INSERT INTO t VALUES (2); COMMIT`)
	h.exec(`BEGIN; SET LOCAL audit.context = '[1, 2]'; SET LOCAL audit.ip = 'fe80::1%eth0'; INSERT INTO t VALUES (3); COMMIT`)
	h.exec(`BEGIN; SET LOCAL audit.context = '{"a": "\u0000"}'; INSERT INTO t VALUES (4); COMMIT`)
	h.sync()
	want := []struct{ ip, extra string }{
		{"2001:db8::1/128", `{"reason": "ticket 12", "tenant": "acme"}`},
		{"NULL", `{"invalid_ip": "not-an-ip", "invalid_context": "{not json"}`},
		{"NULL", `{"invalid_ip": "fe80::1%eth0", "invalid_context": "[1, 2]"}`},
		{"NULL", `{"a": "\\u0000"}`}, // jsonb refuses \u0000: re-encoded as its text, flagged
	}
	got := h.entries(`true`)
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d (every change recorded)", len(got), len(want))
	}
	for i, e := range got {
		if str(e.IP) != want[i].ip || str(e.Extra) != want[i].extra {
			t.Errorf("entry %d: ip %s context %s, want ip %s context %s", i+1, str(e.IP), str(e.Extra), want[i].ip, want[i].extra)
		}
	}
	if h.d.dec.InvalidContexts == 0 {
		t.Error("invalid context values were not counted")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't' AND pk = '{"id": 4}' AND flags = '{json_reencoded}'`); n != 1 {
		t.Error("the re-encoded context is not flagged")
	}
	h.stop()
}

// TestEvents: application events carry the context; transactional ones go
// with a rollback, non-transactional ones are kept.
func TestEvents(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.start()
	h.exec(`BEGIN;
		SELECT audit.set_context(actor_id => '7', request_id => 'r-1');
		INSERT INTO t VALUES (1);
		SELECT audit.log_event('exported', 'public.t', '1', '{"format": "csv"}');
		COMMIT`)
	h.exec(`BEGIN;
		SELECT audit.set_context(actor_id => '8', ip => '198.51.100.4');
		SELECT audit.log_event('viewed', 'public.t', '1');
		SELECT audit.log_event('login_failed', 'auth', 'alice', '{"reason": "bad password"}', transactional => false);
		INSERT INTO t VALUES (2);
		ROLLBACK`)
	h.exec(`SELECT audit.log_event('logout', 'auth')`) // its own transaction, no context
	for _, bad := range []string{`SELECT audit.log_event('', 'x')`, `SELECT audit.log_event('delete', 'public.t', '1')`,
		`SELECT audit.log_event(E'delete\t', 'public.t', '1')`, `SELECT audit.log_event(E'\nINSERT', 'public.t', '1')`,
		`SELECT audit.log_event('gap', 'walscribe')`, `SELECT audit.log_event(E' \r\n', 'x')`} {
		if _, err := h.conn.Exec(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "walscribe: ") {
			t.Errorf("%s: %v, want an error that says what to do", bad, err)
		}
	}
	h.sync()
	got := h.entries(`true`)
	var lines []string
	for _, e := range got {
		lines = append(lines, fmt.Sprintf("%s %s new=%s actor=%s ip=%s request=%s xid_null=%v", e.Action, e.Table, str(e.New), str(e.ActorID), str(e.IP), str(e.Request), e.Xid == nil))
	}
	want := []string{
		`insert t new={"id": 1} actor=7 ip=NULL request=r-1 xid_null=false`,
		`exported t new={"format": "csv"} actor=7 ip=NULL request=r-1 xid_null=false`,
		`login_failed auth new={"reason": "bad password"} actor=8 ip=198.51.100.4/32 request=NULL xid_null=true`,
		`logout auth new=NULL actor=NULL ip=NULL request=NULL xid_null=false`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'login_failed' AND pk = '{"id": "alice"}' AND schema_name = '' AND db_user = 'postgres'`); n != 1 {
		t.Error("the non-transactional event lacks its key or what the database saw")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'exported' AND schema_name = 'public' AND pk = '{"id": "1"}'`); n != 1 {
		t.Error("the event's target and object id are not its schema, table and key")
	}
	// A restart replays nothing twice, events included.
	h.stop()
	h.start()
	h.sync()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name <> 'marker'`); n != len(want) {
		t.Errorf("after a restart: %d entries, want %d", n, len(want))
	}
	h.stop()
}

// TestContextFromGoPackage: an application using the auditctx package, the
// way its documentation shows, gets its context on every entry.
func TestContextFromGoPackage(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY, note text)`, "t")
	h.start()
	ctx := auditctx.NewContext(context.Background(), auditctx.Context{
		ActorID: "u-17", Actor: "Ada", IP: "192.0.2.10", UserAgent: "curl/8", RequestID: "req-abc",
		Extra: map[string]any{"tenant": "acme", "reason": "ticket \"12\""},
	})
	tx, err := auditctx.BeginTx(ctx, h.conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1, 'a'), (2, 'b')`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE t SET note = 'c' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// The next transaction, without a context, carries none of it.
	tx, err = auditctx.BeginTx(context.Background(), h.conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM t WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	h.sync()
	got := h.entries(`true`)
	if len(got) != 4 {
		t.Fatalf("%d entries, want 4", len(got))
	}
	for i, e := range got[:3] {
		line := strings.Join([]string{str(e.ActorID), str(e.Actor), str(e.IP), str(e.UA), str(e.Request), str(e.Extra)}, " | ")
		if want := `u-17 | Ada | 192.0.2.10/32 | curl/8 | req-abc | {"reason": "ticket \"12\"", "tenant": "acme"}`; line != want {
			t.Errorf("entry %d: %s\nwant:    %s", i+1, line, want)
		}
	}
	if e := got[3]; e.ActorID != nil || e.Request != nil || e.Extra != nil || str(e.DBUser) != "postgres" {
		t.Errorf("entry without context: actor %s request %s context %s db_user %s", str(e.ActorID), str(e.Request), str(e.Extra), str(e.DBUser))
	}
	h.stop()
}

// TestContextPrefix: with context.prefix set, the bridge reads the
// application's own variables, and only those.
func TestContextPrefix(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.prefix = "myapp"
	h.setup()
	h.start()
	h.exec(`BEGIN; SET LOCAL myapp.actor_id = 'mine'; SET LOCAL audit.actor_id = 'not mine'; INSERT INTO t VALUES (1); COMMIT`)
	h.exec(`BEGIN; SELECT audit.set_context(actor_id => 'through the function', request_id => 'r'); INSERT INTO t VALUES (2); COMMIT`)
	h.sync()
	got := h.entries(`true`)
	if len(got) != 2 || str(got[0].ActorID) != "mine" || str(got[1].ActorID) != "through the function" || str(got[1].Request) != "r" {
		for _, e := range got {
			t.Logf("entry: actor %s request %s", str(e.ActorID), str(e.Request))
		}
		t.Fatal("the bridge did not read the myapp.* variables")
	}
	h.stop()
}

// TestForgedEventMessage: a raw logical message that claims a row action,
// a time long past and database facts is stored as an event of its own
// ("event:update", flagged), at the time walscribe read it: never as a
// change, never backdated, never in another month's partition.
func TestForgedEventMessage(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.start()
	h.exec(`SELECT pg_logical_emit_message(false, 'walscribe.event', '{"action": " Update\t", "target": "public.t",
		"object_id": "1", "at": "2019-01-01T00:00:00Z", "context": {"db_user": "postgres", "client_addr": "10.9.9.9"}}')`)
	h.exec(`SELECT pg_logical_emit_message(false, 'walscribe.event', '{"action": "gap", "target": "walscribe"}')`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action IN ('update', 'gap')`); n != 0 {
		t.Errorf("%d change or gap entries from forged messages", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action IN ('event:update', 'event:gap')
		AND 'reserved_action' = ANY(flags) AND committed_at > now() - interval '1 hour'`); n != 2 {
		t.Errorf("%d forged messages stored as flagged events of now, want 2", n)
	}
	if n := h.count(`SELECT count(*) FROM pg_class WHERE relname LIKE 'entries_2019%'`); n != 0 {
		t.Error("a forged message created a partition of 2019")
	}
}

// TestEventsKeepMetricsBounded: events with 3,000 distinct actions and
// targets add one series to the entries counter, not 3,000.
func TestEventsKeepMetricsBounded(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.start()
	h.sync()
	before := testutil.CollectAndCount(m.EntriesWritten)
	h.exec(`SELECT audit.log_event('viewed_' || i, 'public.doc_' || i, i::text, transactional => false) FROM generate_series(1, 3000) i`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action LIKE 'viewed_%'`); n != 3000 {
		t.Fatalf("%d events stored, want 3000", n)
	}
	if after := testutil.CollectAndCount(m.EntriesWritten); after-before > 1 {
		t.Errorf("walscribe_entries_written_total grew from %d to %d series with the events", before, after)
	}
}

// TestPresetMarkKeepsNoFactBack: the bridge's mark (the setting
// walscribe.emitted_context) cannot be preset to keep the context message
// back. Neither the key of the settings (what the mark was before it was
// keyed), nor a mark copied from an earlier transaction, nor one copied
// from another session, nor an arbitrary value, leaves a change without
// what the database saw.
func TestPresetMarkKeepsNoFactBack(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.start()
	key := `concat(` + strings.Join([]string{
		`quote_nullable(current_setting('audit.actor_id', true))`, `quote_nullable(current_setting('audit.actor', true))`,
		`quote_nullable(current_setting('audit.ip', true))`, `quote_nullable(current_setting('audit.user_agent', true))`,
		`quote_nullable(current_setting('audit.request_id', true))`, `quote_nullable(current_setting('audit.context', true))`,
		`quote_nullable(current_user)`, `quote_nullable(current_setting('application_name', true))`}, `, ',', `) + `)`
	ctx := context.Background()
	conn := pgtest.Connect(t, h.dsn)
	var copied string
	if err := conn.QueryRow(ctx, `INSERT INTO t VALUES (1) RETURNING current_setting('walscribe.emitted_context')`).Scan(&copied); err != nil {
		t.Fatal(err)
	}
	if copied == "" {
		t.Fatal("the bridge left no mark")
	}
	run := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for i, preset := range []string{key, quote(copied), `'on'`, `''`} {
		run(fmt.Sprintf(`BEGIN; SELECT set_config('walscribe.emitted_context', %s, true); INSERT INTO t VALUES (%d); COMMIT`, preset, 10+i))
		run(fmt.Sprintf(`SET walscribe.emitted_context = %s; INSERT INTO t VALUES (%d)`, quote(copied), 20+i))
	}
	run(`RESET walscribe.emitted_context`)
	// The mark of the same transaction, read and set again, is already the
	// mark of a message written.
	run(`BEGIN; INSERT INTO t VALUES (30); SELECT set_config('walscribe.emitted_context', current_setting('walscribe.emitted_context'), true);
		INSERT INTO t VALUES (31); COMMIT`)
	// A session that has written no context message yet and presets a mark
	// gets an error, and writes nothing.
	fresh := pgtest.Connect(t, h.dsn)
	if _, err := fresh.Exec(ctx, `SET walscribe.emitted_context = `+quote(copied)+`; INSERT INTO t VALUES (40)`); err == nil {
		t.Error("a fresh session's preset mark let its change through")
	}
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 11 {
		t.Fatalf("%d changes of t stored, want 11", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't' AND (flags IS NOT NULL OR db_user IS DISTINCT FROM 'postgres' OR client_addr IS NULL)`); n != 0 {
		t.Errorf("%d changes lack what the database saw after the mark was preset", n)
	}
	if n := testutil.ToFloat64(m.Errors.WithLabelValues("no_context")); n != 0 {
		t.Errorf("no_context counted %v times, want 0", n)
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestUnguardedTableCounted: a tracked table whose context trigger was
// dropped shows in walscribe_unguarded_tables, and its changes are flagged.
func TestUnguardedTableCounted(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	m := metrics.Discard()
	h.cfg.Metrics = m
	h.cfg.SlotPollInterval = 100 * time.Millisecond
	h.start()
	h.sync()
	if n := testutil.ToFloat64(m.UnguardedTables); n != 0 {
		t.Fatalf("walscribe_unguarded_tables = %v after setup, want 0", n)
	}
	h.exec(`DROP TRIGGER walscribe_context ON t`)
	h.waitFor("the unguarded table counted", func() bool { return testutil.ToFloat64(m.UnguardedTables) == 1 })
	h.exec(`INSERT INTO t VALUES (1)`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't' AND flags = '{no_context}'`); n != 1 {
		t.Error("the change of the unguarded table is not flagged no_context")
	}
	if n := testutil.ToFloat64(m.Errors.WithLabelValues("no_context")); n != 1 {
		t.Errorf("no_context counted %v times, want 1", n)
	}
}
