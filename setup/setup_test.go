package setup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/migrations"
)

// schemaSQL is a source database with a plain table, a table in another
// schema, a two-level partitioned table, and tables to add later or never.
const schemaSQL = `
CREATE TABLE invoices (id int PRIMARY KEY, amount numeric);
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int PRIMARY KEY, total numeric);
CREATE TABLE customers (id int PRIMARY KEY, name text);
CREATE TABLE untracked (id int PRIMARY KEY);
CREATE TABLE events (at timestamptz NOT NULL, kind text NOT NULL, body text) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY LIST (kind);
CREATE TABLE events_2025_a PARTITION OF events_2025 FOR VALUES IN ('a');
CREATE TABLE events_2025_b PARTITION OF events_2025 FOR VALUES IN ('b');
`

// config returns a Config for the test database at dsn tracking tables
// ("schema.table"), with a slot named after the database: slot names are
// server-wide, databases are not shared between tests.
func config(t *testing.T, dsn string, tables ...string) Config {
	t.Helper()
	cfg := Config{
		SourceDSN:   dsn,
		SinkSchema:  "audit",
		Slot:        dbName(t, dsn),
		Publication: "walscribe",
		SlotTimeout: 10 * time.Second,
	}
	for i, name := range tables {
		schema, table, _ := strings.Cut(name, ".")
		cfg.Tables = append(cfg.Tables, cdc.Table{Schema: schema, Name: table, Key: fmt.Sprintf("tables[%d].name", i)})
	}
	return cfg
}

// run calls Run and returns what it said, one line per call of say.
func run(t *testing.T, cfg Config) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	err := Run(ctx, cfg, func(format string, args ...any) {
		fmt.Fprintf(&out, format+"\n", args...)
	})
	return out.String(), err
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// asUser returns dsn connecting as role instead.
func asUser(t *testing.T, dsn, role string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	u.User = url.User(role)
	return u.String()
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// newRole creates a role on the server of dsn (roles are server-wide, so the
// name comes from the database's) and drops it when the test ends, after the
// database whose objects it may own.
func newRole(t *testing.T, s *pgtest.Server, dsn, suffix, attrs string) string {
	t.Helper()
	db := dbName(t, dsn)
	name := db
	if limit := 63 - len(suffix) - 1; len(name) > limit {
		name = name[:limit]
	}
	name += "_" + suffix
	pgtest.Exec(t, s.DSN("postgres"), "CREATE ROLE "+ident(name)+" "+attrs)
	t.Cleanup(func() {
		s.DropDB(db)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, s.DSN("postgres")); err == nil {
			conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident(name))
			conn.Close(ctx)
		}
	})
	return name
}

// state is what setup may change in a database, read from the catalogs.
type state struct {
	Schemas      []string // schemas other than the system ones
	Migration    int      // highest applied audit migration
	Publications []string // "name all=… ops=… viaroot=… tables=…", from pg_publication_tables
	Slots        []string // "name plugin type temporary" for the database's slots
	Identity     []string // "schema.table=relreplident" for every table and partition
}

func readState(t *testing.T, dsn string) state {
	t.Helper()
	ctx := context.Background()
	conn := pgtest.Connect(t, dsn)
	var s state
	strs := func(sql string) []string {
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Fatalf("read state: %v", err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("read state: %v", err)
		}
		return out
	}
	s.Schemas = strs(`SELECT nspname::text FROM pg_namespace
		WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND nspname NOT LIKE 'pg\_%' ORDER BY 1`)
	s.Publications = strs(`SELECT format('%s all=%s ops=%s%s%s%s viaroot=%s tables=%s', p.pubname, p.puballtables,
			p.pubinsert::int, p.pubupdate::int, p.pubdelete::int, p.pubtruncate::int, p.pubviaroot,
			(SELECT string_agg(t.schemaname || '.' || t.tablename, ',' ORDER BY t.schemaname, t.tablename) FROM pg_publication_tables t WHERE t.pubname = p.pubname))
		FROM pg_publication p ORDER BY 1`)
	s.Slots = strs(`SELECT format('%s %s %s temporary=%s', slot_name, plugin, slot_type, temporary)
		FROM pg_replication_slots WHERE database = current_database() ORDER BY 1`)
	s.Identity = strs(`SELECT n.nspname || '.' || c.relname || '=' || c.relreplident::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
	var err error
	if s.Migration, err = migrations.Current(ctx, conn, "audit"); err != nil {
		t.Fatalf("read migration version: %v", err)
	}
	return s
}

// queryStrings runs sql on conn and returns its single text column.
func queryStrings(t *testing.T, conn *pgx.Conn, sql string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return out
}

// checkPrepared asserts, against the catalogs, everything Run must leave
// behind for cfg.
func checkPrepared(t *testing.T, cfg Config) {
	t.Helper()
	ctx := context.Background()
	conn := pgtest.Connect(t, cfg.SourceDSN)

	for _, rel := range []string{"audit.entries", "audit.checkpoints", "audit.schema_migrations"} {
		var reg *string
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1)::text`, rel).Scan(&reg); err != nil {
			t.Fatal(err)
		}
		if reg == nil {
			t.Errorf("%s does not exist after setup", rel)
		}
	}
	if latest := migrations.Latest(); latest < 1 {
		t.Errorf("migrations.Latest() = %d, want at least 1", latest)
	} else if v, err := migrations.Current(ctx, conn, "audit"); err != nil || v != latest {
		t.Errorf("audit schema at version %d (err %v), want %d", v, err, latest)
	}

	var want []string
	for _, tb := range cfg.Tables {
		want = append(want, tb.String())
		// Every member of the partition tree, the root and the leaves and
		// the partitioned partitions between them.
		// pg_partition_tree is empty for a table that is not partitioned.
		notFull := queryStrings(t, conn, `SELECT c.oid::regclass::text FROM pg_class c
			WHERE c.relreplident <> 'f' AND (c.oid = $1::regclass OR c.oid IN (SELECT relid FROM pg_partition_tree($1::regclass)))`, tb.String())
		if len(notFull) > 0 {
			t.Errorf("%s: replica identity is not FULL on %v", tb, notFull)
		}
		// The context trigger, enabled always, on every member too.
		noBridge := queryStrings(t, conn, `SELECT c.oid::regclass::text FROM pg_class c
			WHERE (c.oid = $1::regclass OR c.oid IN (SELECT relid FROM pg_partition_tree($1::regclass)))
			  AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'walscribe_context' AND g.tgenabled = 'A')`, tb.String())
		if len(noBridge) > 0 {
			t.Errorf("%s: no context trigger on %v", tb, noBridge)
		}
	}
	// And on nothing else.
	var tracked []string
	for _, tb := range cfg.Tables {
		tracked = append(tracked, tb.String())
	}
	extra := queryStrings(t, conn, `SELECT g.tgrelid::regclass::text FROM pg_trigger g
		WHERE g.tgname = 'walscribe_context' AND NOT EXISTS (
			SELECT 1 FROM unnest($1::text[]) tr WHERE g.tgrelid = tr::regclass OR g.tgrelid IN (SELECT relid FROM pg_partition_tree(tr::regclass)))`, tracked)
	if len(extra) > 0 {
		t.Errorf("context trigger left on untracked tables %v", extra)
	}
	got := queryStrings(t, conn, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, cfg.Publication)
	want = append(want, cfg.SinkSchema+"."+BridgeTruncates) // the bridge's reports
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("publication %q publishes %v, want exactly %v", cfg.Publication, got, want)
	}
	// What the walsender will actually publish includes partitions of the
	// listed tables: none of them may be in the audit schema.
	audit := queryStrings(t, conn, `SELECT c.oid::regclass::text FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_publication p ON p.pubname = $1
		WHERE n.nspname = $2 AND c.relkind IN ('r', 'p')
		  AND (p.puballtables OR c.oid IN (SELECT relid FROM pg_publication_rel pr, pg_partition_tree(pr.prrelid) WHERE pr.prpubid = p.oid))`,
		cfg.Publication, cfg.SinkSchema)
	if len(audit) > 0 {
		t.Errorf("publication %q publishes audit tables %v", cfg.Publication, audit)
	}
	var ins, upd, del, trunc, viaRoot bool
	if err := conn.QueryRow(ctx, `SELECT pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot FROM pg_publication WHERE pubname = $1`,
		cfg.Publication).Scan(&ins, &upd, &del, &trunc, &viaRoot); err != nil {
		t.Fatalf("read publication %q: %v", cfg.Publication, err)
	}
	if !ins || !upd || !del || !trunc || !viaRoot {
		t.Errorf("publication %q: insert=%v update=%v delete=%v truncate=%v via_root=%v, want all true", cfg.Publication, ins, upd, del, trunc, viaRoot)
	}

	var plugin, slotType, db, currentDB string
	var temporary bool
	err := conn.QueryRow(ctx, `SELECT plugin, slot_type, database, current_database(), temporary FROM pg_replication_slots WHERE slot_name = $1`,
		cfg.Slot).Scan(&plugin, &slotType, &db, &currentDB, &temporary)
	if err != nil {
		t.Fatalf("slot %q: %v", cfg.Slot, err)
	}
	if plugin != "pgoutput" || slotType != "logical" || db != currentDB || temporary {
		t.Errorf("slot %q: plugin %s, type %s, database %s, temporary %v; want a permanent logical pgoutput slot in %s",
			cfg.Slot, plugin, slotType, db, temporary, currentDB)
	}
}

func TestRunPreparesSourceIdempotently(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, schemaSQL)

	steps := []struct {
		name   string
		tables []string
		// said and unsaid are lines (or parts) Run must and must not print.
		said, unsaid []string
		// unchanged: the run must leave the catalogs exactly as they were.
		unchanged bool
	}{
		{
			name:   "first run",
			tables: []string{"public.invoices", "public.events", "sales.orders"},
			said: []string{
				"applied migrations",
				"replica identity full: public.invoices",
				"replica identity full: public.events_2025_b",
				"replica identity full: sales.orders",
				"context trigger: installed on public.events_2025_b",
				`publication "walscribe": added public.events`,
				"created",
				"ready: 3 tables tracked",
			},
			unsaid: []string{"up to date", "exists", "removed"},
		},
		{
			name:   "again, unchanged",
			tables: []string{"public.invoices", "public.events", "sales.orders"},
			said: []string{
				fmt.Sprintf(`audit schema "audit": up to date (version %d)`, migrations.Latest()),
				"exists",
				"ready: 3 tables tracked",
			},
			unsaid:    []string{"applied", "replica identity full:", "added", "removed", "created", "installed on"},
			unchanged: true,
		},
		{
			name:   "customers added, orders removed",
			tables: []string{"public.invoices", "public.events", "public.customers"},
			said: []string{
				"up to date",
				"replica identity full: public.customers",
				`publication "walscribe": added public.customers`,
				`publication "walscribe": removed sales.orders`,
				"context trigger: installed on public.customers",
				"context trigger: removed from sales.orders",
				"exists",
			},
			unsaid: []string{"applied", "added public.invoices", "removed public", "created"},
		},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			cfg := config(t, dsn, step.tables...)
			before := readState(t, dsn)
			out, err := run(t, cfg)
			if err != nil {
				t.Fatalf("Run: %v\noutput:\n%s", err, out)
			}
			for _, s := range step.said {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range step.unsaid {
				if strings.Contains(out, s) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
			checkPrepared(t, cfg)
			after := readState(t, dsn)
			if step.unchanged && !reflect.DeepEqual(before, after) {
				t.Errorf("a second run changed the database:\nbefore %+v\nafter  %+v", before, after)
			}
			// Tables never tracked keep their replica identity.
			for _, id := range after.Identity {
				if strings.HasPrefix(id, "public.untracked=") && id != "public.untracked=d" {
					t.Errorf("untracked table changed: %s", id)
				}
			}
		})
	}
}

// TestRunSeparateSink keeps the audit schema in its own database: the source
// gets no audit tables, only the bridge, in a schema of the same name. A
// source schema of that name that holds the application's tables is not
// taken over: setup says to choose another sink.schema.
func TestRunSeparateSink(t *testing.T) {
	src, sink := srv.NewDB(t), srv.NewDB(t)
	pgtest.Exec(t, src, schemaSQL, `CREATE SCHEMA audit`, `CREATE TABLE audit.logins (id int PRIMARY KEY)`)
	cfg := config(t, src, "public.invoices", "audit.logins")
	cfg.SinkDSN = sink
	out, err := run(t, cfg)
	if err == nil || !strings.Contains(err.Error(), `schema "audit" holds objects walscribe does not create (table audit.logins)`) ||
		!strings.Contains(err.Error(), "set sink.schema") {
		t.Fatalf("Run with an application schema named like sink.schema: %v, want a refusal naming audit.logins\noutput:\n%s", err, out)
	}
	if n := queryStrings(t, pgtest.Connect(t, src), `SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'audit'`); len(n) != 1 || n[0] != "postgres" {
		t.Errorf("the application's schema audit changed owner: %v", n)
	}
	pgtest.Exec(t, src, `ALTER SCHEMA audit RENAME TO app_audit`)
	cfg = config(t, src, "public.invoices", "app_audit.logins")
	cfg.SinkDSN = sink
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("Run: %v\noutput:\n%s", err, out)
	}
	ipIndex := func() bool {
		return len(queryStrings(t, pgtest.Connect(t, sink), `SELECT indexrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass('audit.entries_ip_idx')`)) == 1
	}
	if ipIndex() {
		t.Error("the ip index exists without sink.ip_index")
	}
	cfg.IPIndex = true
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("Run with the ip index: %v\noutput:\n%s", err, out)
	}
	if !ipIndex() {
		t.Error("no ip index with sink.ip_index")
	}
	srcState, sinkState := readState(t, src), readState(t, sink)
	if srcState.Migration != 0 {
		t.Errorf("source has audit migrations at version %d, want none", srcState.Migration)
	}
	if sinkState.Migration != migrations.Latest() {
		t.Errorf("sink has audit migrations at version %d, want %d", sinkState.Migration, migrations.Latest())
	}
	if want := []string{"walscribe all=f ops=1111 viaroot=t tables=app_audit.logins,audit.partition_truncates,public.invoices"}; !reflect.DeepEqual(srcState.Publications, want) {
		t.Errorf("source publications %v, want %v", srcState.Publications, want)
	}
	if len(sinkState.Publications)+len(sinkState.Slots) > 0 {
		t.Errorf("sink got publications %v and slots %v, want none", sinkState.Publications, sinkState.Slots)
	}
}

// env is one problem case: a server, a fresh database on it, and the Config
// Run gets.
type env struct {
	srv *pgtest.Server
	dsn string // superuser DSN of the database
	cfg Config
}

func TestRunReportsProblems(t *testing.T) {
	external := os.Getenv("WALSCRIBE_TEST_DSN") != ""
	cases := []struct {
		name string
		// settings, when set, start a server of their own.
		settings map[string]string
		// roles: the case connects as other roles with trust authentication.
		roles bool
		// prepare breaks the database and returns the problems Run must
		// report: one list of substrings per problem.
		prepare func(t *testing.T, e *env) [][]string
		// never are substrings no problem may contain.
		never []string
		// after runs once the problems are checked.
		after func(t *testing.T, e *env)
	}{
		{
			name:     "wal_level replica",
			settings: map[string]string{"wal_level": "replica"},
			prepare: func(t *testing.T, e *env) [][]string {
				return [][]string{{`wal_level is "replica"`, "ALTER SYSTEM SET wal_level = 'logical'", "restart"}}
			},
		},
		{
			name:  "role without replication and create rights",
			roles: true,
			prepare: func(t *testing.T, e *env) [][]string {
				role := newRole(t, e.srv, e.dsn, "owner", "LOGIN NOREPLICATION")
				pgtest.Exec(t, e.dsn, `ALTER TABLE invoices OWNER TO `+ident(role))
				e.cfg.SourceDSN = asUser(t, e.dsn, role)
				return [][]string{
					{"ALTER ROLE " + ident(role) + " REPLICATION;"},
					{"GRANT CREATE ON DATABASE " + ident(dbName(t, e.dsn)) + " TO " + ident(role) + ";"},
				}
			},
		},
		{
			name: "missing table",
			prepare: func(t *testing.T, e *env) [][]string {
				e.cfg = config(t, e.dsn, "public.invoices", "public.nope")
				return [][]string{{"tables[1].name", "public.nope", "does not exist"}}
			},
		},
		{
			name:  "table owned by another role",
			roles: true,
			prepare: func(t *testing.T, e *env) [][]string {
				app := newRole(t, e.srv, e.dsn, "app", "NOLOGIN")
				ws := newRole(t, e.srv, e.dsn, "ws", "LOGIN REPLICATION")
				pgtest.Exec(t, e.dsn,
					`ALTER TABLE invoices OWNER TO `+ident(app),
					`ALTER TABLE events OWNER TO `+ident(ws),
					`GRANT CREATE ON DATABASE `+ident(dbName(t, e.dsn))+` TO `+ident(ws))
				e.cfg = config(t, asUser(t, e.dsn, ws), "public.events", "public.invoices")
				return [][]string{{"tables[1].name", "public.invoices", "GRANT " + ident(app) + " TO " + ident(ws) + ";"}}
			},
		},
		{
			name:  "table owned by a superuser",
			roles: true,
			prepare: func(t *testing.T, e *env) [][]string {
				ws := newRole(t, e.srv, e.dsn, "ws", "LOGIN REPLICATION")
				pgtest.Exec(t, e.dsn, `GRANT CREATE ON DATABASE `+ident(dbName(t, e.dsn))+` TO `+ident(ws))
				e.cfg.SourceDSN = asUser(t, e.dsn, ws)
				return [][]string{{"tables[0].name", "public.invoices", "ALTER TABLE " + pgx.Identifier{"public", "invoices"}.Sanitize() + " OWNER TO " + ident(ws) + ";"}}
			},
			// Membership in a superuser role would make the role a superuser.
			never: []string{`GRANT "postgres"`},
		},
		{
			name: "tracked table in the audit schema",
			prepare: func(t *testing.T, e *env) [][]string {
				pgtest.Exec(t, e.dsn, `CREATE SCHEMA audit`, `CREATE TABLE audit.notes (id int)`)
				e.cfg = config(t, e.dsn, "public.invoices", "audit.notes")
				return [][]string{{"tables[1].name", "audit.notes", "audit schema"}}
			},
		},
		{
			name:     "replication slots exhausted",
			settings: map[string]string{"max_replication_slots": "1"},
			prepare: func(t *testing.T, e *env) [][]string {
				pgtest.Exec(t, e.dsn, `SELECT pg_create_physical_replication_slot('other_slot')`)
				return [][]string{{"all 1 replication slots are in use", "ALTER SYSTEM SET max_replication_slots = 2", "pg_drop_replication_slot"}}
			},
			// With the slot freed, setup takes it; a run with every slot
			// taken by its own slot is fine.
			after: func(t *testing.T, e *env) {
				pgtest.Exec(t, e.dsn, `SELECT pg_drop_replication_slot('other_slot')`)
				for i := range 2 {
					if out, err := run(t, e.cfg); err != nil {
						t.Fatalf("run %d with a free slot: %v\noutput:\n%s", i+1, err, out)
					}
				}
				checkPrepared(t, e.cfg)
			},
		},
		{
			name: "slot with another plugin",
			prepare: func(t *testing.T, e *env) [][]string {
				pgtest.Exec(t, e.dsn, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'test_decoding')`, e.cfg.Slot))
				return [][]string{{`slot "` + e.cfg.Slot + `"`, "pgoutput", "source.slot", "pg_drop_replication_slot('" + e.cfg.Slot + "')"}}
			},
		},
		{
			name: "slot of another database",
			prepare: func(t *testing.T, e *env) [][]string {
				other := e.srv.NewDB(t)
				pgtest.Exec(t, other, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, e.cfg.Slot))
				return [][]string{{`slot "` + e.cfg.Slot + `"`, dbName(t, other), "source.slot"}}
			},
		},
		{
			name: "publication for all tables",
			prepare: func(t *testing.T, e *env) [][]string {
				pgtest.Exec(t, e.dsn, `CREATE PUBLICATION walscribe FOR ALL TABLES`)
				return [][]string{{`publication "walscribe"`, "all tables", "DROP PUBLICATION " + ident("walscribe") + ";", "source.publication"}}
			},
		},
		{
			name: "several at once",
			prepare: func(t *testing.T, e *env) [][]string {
				pgtest.Exec(t, e.dsn, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'test_decoding')`, e.cfg.Slot))
				e.cfg = config(t, e.dsn, "public.invoices", "public.nope", "audit.entries")
				return [][]string{
					{"tables[1].name", "public.nope"},
					{"tables[2].name", "audit.entries"},
					{`slot "` + e.cfg.Slot + `"`, "pgoutput"},
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.roles && external {
				t.Skip("connects as other roles, which needs the trust authentication of a throwaway server")
			}
			t.Parallel()
			e := &env{srv: srv}
			if tc.settings != nil {
				s, err := pgtest.Start(pgtest.Options{Settings: tc.settings})
				if err != nil {
					t.Fatalf("start a server with %v: %v", tc.settings, err)
				}
				t.Cleanup(s.Close)
				e.srv = s
			}
			e.dsn = e.srv.NewDB(t)
			pgtest.Exec(t, e.dsn, schemaSQL)
			e.cfg = config(t, e.dsn, "public.invoices")
			want := tc.prepare(t, e)
			before := readState(t, e.dsn)

			out, err := run(t, e.cfg)
			var problems cdc.Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Run returned %v, want cdc.Problems\noutput:\n%s", err, out)
			}
			matched := make([]bool, len(problems))
			for _, parts := range want {
				found := false
				for i, p := range problems {
					if containsAll(p, parts) {
						matched[i], found = true, true
					}
				}
				if !found {
					t.Errorf("no problem contains all of %q; problems:\n%v", parts, err)
				}
			}
			for i, p := range problems {
				if !matched[i] {
					t.Errorf("unexpected problem: %s", p)
				}
				for _, s := range tc.never {
					if strings.Contains(p, s) {
						t.Errorf("problem contains %q: %s", s, p)
					}
				}
			}
			if after := readState(t, e.dsn); !reflect.DeepEqual(before, after) {
				t.Errorf("Run changed the database although it found problems:\nbefore %+v\nafter  %+v", before, after)
			}
			if tc.after != nil {
				tc.after(t, e)
			}
		})
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// findQuery is the catalog query a slot-creation timeout tells the user to run.
var findQuery = regexp.MustCompile(`SELECT [^;]* FROM pg_stat_activity[^;]*`)

// TestRunSlotWaitsForOpenTransaction: creating a slot waits for every
// transaction with an xid, in any database of the server. Setup gives up
// after SlotTimeout with a query that finds the culprit, leaves no slot and
// no waiting backend behind, and succeeds once the transaction ends. A
// connection that only holds a snapshot is not in the way.
func TestRunSlotWaitsForOpenTransaction(t *testing.T) {
	cases := []struct {
		name   string
		open   []string // statements of the open transaction, in another database
		blocks bool
	}{
		{name: "transaction with an xid", open: []string{`BEGIN`, `INSERT INTO t VALUES (1)`}, blocks: true},
		{name: "snapshot only", open: []string{`BEGIN ISOLATION LEVEL REPEATABLE READ`, `SELECT * FROM t`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dsn, elsewhere := srv.NewDB(t), srv.NewDB(t)
			pgtest.Exec(t, dsn, schemaSQL)
			pgtest.Exec(t, elsewhere, `CREATE TABLE t (id int)`)

			blocker := pgtest.Connect(t, elsewhere)
			var blockerPID int32
			if err := blocker.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&blockerPID); err != nil {
				t.Fatal(err)
			}
			for _, q := range tc.open {
				if _, err := blocker.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}

			cfg := config(t, dsn, "public.invoices")
			cfg.SlotTimeout = time.Second
			start := time.Now()
			out, err := run(t, cfg)
			if !tc.blocks {
				if err != nil {
					t.Fatalf("Run: %v\noutput:\n%s", err, out)
				}
				checkPrepared(t, cfg)
				return
			}
			if err == nil {
				t.Fatalf("Run succeeded while a transaction was open:\n%s", out)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Run took %s with a slot timeout of %s", d, cfg.SlotTimeout)
			}
			msg := err.Error()
			for _, s := range []string{cfg.Slot, "open transactions", "pg_terminate_backend", "run setup again"} {
				if !strings.Contains(msg, s) {
					t.Errorf("error lacks %q: %s", s, msg)
				}
			}
			query := findQuery.FindString(msg)
			if query == "" {
				t.Fatalf("error has no pg_stat_activity query: %s", msg)
			}
			admin := pgtest.Connect(t, dsn)
			rows, err := admin.Query(ctx, query)
			if err != nil {
				t.Fatalf("the query in the error fails: %q: %v", query, err)
			}
			var pids []any
			for rows.Next() {
				if vals, err := rows.Values(); err == nil && len(vals) > 0 {
					pids = append(pids, vals[0])
				}
			}
			rows.Close()
			if !slices.Contains(pids, any(blockerPID)) {
				t.Errorf("the query in the error (%s) lists pids %v, not the open transaction's %d", query, pids, blockerPID)
			}

			// Nothing may keep waiting for the transaction: a wait that
			// outlived setup would create the slot behind the user's back.
			var waiting int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE query LIKE '%pg_create_logical_replication_slot%' AND pid <> pg_backend_pid()`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting > 0 {
				t.Errorf("%d backends still wait to create the slot after setup gave up", waiting)
			}

			if _, err := blocker.Exec(ctx, `COMMIT`); err != nil {
				t.Fatal(err)
			}
			if s := readState(t, dsn); len(s.Slots) > 0 {
				t.Errorf("slots exist before setup ran again: %v", s.Slots)
			}
			out, err = run(t, cfg)
			if err != nil {
				t.Fatalf("Run after the transaction ended: %v\noutput:\n%s", err, out)
			}
			if !strings.Contains(out, "created") {
				t.Errorf("Run did not create the slot:\n%s", out)
			}
			checkPrepared(t, cfg)
		})
	}
}
