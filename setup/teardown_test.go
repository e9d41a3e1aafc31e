package setup

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/migrations"
	"github.com/walscribe/walscribe/rules"
)

// teardownRules track every table of public, tables created there later
// included (so that setup installs the event trigger), and sales.orders.
func teardownRules(t *testing.T) *rules.Set {
	t.Helper()
	rs, err := rules.New(rules.Config{Tables: []rules.TableConfig{{Name: "public.*"}, {Name: "sales.orders"}}})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// setUpForTeardown prepares a fresh source (and sink, when separate) with
// rules, checks that setup left what teardown must remove, and stores an
// entry and a checkpoint in the audit schema.
func setUpForTeardown(t *testing.T, separateSink bool) Config {
	t.Helper()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, schemaSQL)
	cfg := config(t, dsn)
	cfg.Rules = teardownRules(t)
	if separateSink {
		cfg.SinkDSN = srv.NewDB(t)
	}
	if out, err := run(t, cfg); err != nil {
		t.Fatalf("setup: %v\noutput:\n%s", err, out)
	}
	// Without these, the checks after teardown would prove nothing.
	left := leftovers(t, cfg)
	if len(left.Slots) != 1 || len(left.Publications) != 1 || !slices.Contains(left.EventTriggers, "walscribe_capture") ||
		len(left.ContextTriggers) < 8 || len(left.BridgeFunctions) != len(bridgeFunctions) || !left.CapturePatterns || !left.BridgeKey {
		t.Fatalf("setup did not install what teardown removes: %+v", left)
	}
	pgtest.Exec(t, sinkDSN(cfg),
		`INSERT INTO audit.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action, pk, new)
			VALUES (1, '0/1000', 1, now(), 'public', 'invoices', 'insert', '{"id": 1}', '{"id": 1, "amount": 5}'),
			       (2, '0/1000', 2, now(), 'public', 'invoices', 'update', '{"id": 1}', '{"id": 1, "amount": 6}')`,
		`INSERT INTO audit.checkpoints (slot, end_lsn, last_id, committed_at, entries) VALUES ('`+cfg.Slot+`', '0/1100', 2, now(), 2)`)
	return cfg
}

func sinkDSN(cfg Config) string {
	if cfg.SinkDSN != "" {
		return cfg.SinkDSN
	}
	return cfg.SourceDSN
}

func teardownConfig(cfg Config) TeardownConfig {
	return TeardownConfig{SourceDSN: cfg.SourceDSN, SinkDSN: cfg.SinkDSN, SinkSchema: cfg.SinkSchema, Slot: cfg.Slot, Publication: cfg.Publication}
}

// teardown calls Teardown and returns what it said.
func teardown(t *testing.T, cfg TeardownConfig) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	err := Teardown(ctx, cfg, func(format string, args ...any) {
		fmt.Fprintf(&out, format+"\n", args...)
	})
	return out.String(), err
}

// leftover is what setup installs in the source, read from its catalogs.
type leftover struct {
	Slots           []string // slots of the config's name, anywhere on the server
	Publications    []string
	EventTriggers   []string
	ContextTriggers []string // tables with a trigger named walscribe_context, partitions included
	BridgeFunctions []string // functions named as the bridge's, in any schema
	CapturePatterns bool     // the capture's patterns table exists
	BridgeKey       bool     // the bridge's key table exists
}

func (l leftover) empty() bool {
	return len(l.Slots)+len(l.Publications)+len(l.EventTriggers)+len(l.ContextTriggers)+len(l.BridgeFunctions) == 0 && !l.CapturePatterns && !l.BridgeKey
}

func leftovers(t *testing.T, cfg Config) leftover {
	t.Helper()
	conn := pgtest.Connect(t, cfg.SourceDSN)
	var l leftover
	l.Slots = queryStrings(t, conn, `SELECT slot_name::text FROM pg_replication_slots WHERE slot_name = $1`, cfg.Slot)
	l.Publications = queryStrings(t, conn, `SELECT pubname::text FROM pg_publication`)
	l.EventTriggers = queryStrings(t, conn, `SELECT evtname::text FROM pg_event_trigger`)
	l.ContextTriggers = queryStrings(t, conn, `SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'walscribe_context' ORDER BY 1`)
	l.BridgeFunctions = queryStrings(t, conn, `SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.proname IN ('current_context', 'emit_context', 'set_context', 'log_event', 'capture_table', 'capture_new_tables') ORDER BY 1`)
	if err := conn.QueryRow(context.Background(), `SELECT to_regclass('walscribe_capture.patterns') IS NOT NULL OR to_regclass('audit.capture_patterns') IS NOT NULL,
		to_regclass('audit.bridge_key_a') IS NOT NULL`).Scan(&l.CapturePatterns, &l.BridgeKey); err != nil {
		t.Fatal(err)
	}
	return l
}

// auditData is the content of the audit tables, as the server prints it;
// nil when the audit schema does not exist.
func auditData(t *testing.T, dsn string) []string {
	t.Helper()
	conn := pgtest.Connect(t, dsn)
	var exists bool
	if err := conn.QueryRow(context.Background(), `SELECT to_regnamespace('audit') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		return nil
	}
	return queryStrings(t, conn, `SELECT 'entries ' || e::text FROM (SELECT * FROM audit.entries ORDER BY id) e
		UNION ALL SELECT 'checkpoints ' || c::text FROM audit.checkpoints c
		UNION ALL SELECT 'migrations ' || m.version || ' ' || m.name FROM audit.schema_migrations m`)
}

// auditObjects lists the functions and the tables (not partitions) of the
// audit schema.
func auditObjects(t *testing.T, dsn string) []string {
	t.Helper()
	conn := pgtest.Connect(t, dsn)
	return queryStrings(t, conn, `SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
			FROM pg_proc p WHERE p.pronamespace = to_regnamespace('audit')
		UNION ALL SELECT 'table ' || c.relname FROM pg_class c
			WHERE c.relnamespace = to_regnamespace('audit') AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		ORDER BY 1`)
}

// TestTeardown removes walscribe after a setup with rules, in every
// arrangement, twice, and checks that the application's tables work as
// before.
func TestTeardown(t *testing.T) {
	// What the audit schema holds without the bridge: the migrations
	// alone, applied by the server to an empty database.
	scratch := srv.NewDB(t)
	if _, err := migrations.Apply(context.Background(), pgtest.Connect(t, scratch), "audit"); err != nil {
		t.Fatalf("apply migrations: %v", err)
	}
	auditOnly := auditObjects(t, scratch)

	for _, tc := range []struct {
		name         string
		separateSink bool
		dropData     bool
	}{
		{name: "same database, audit data kept"},
		{name: "same database, audit data dropped", dropData: true},
		{name: "separate sink, audit data kept", separateSink: true},
		{name: "separate sink, audit data dropped", separateSink: true, dropData: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := setUpForTeardown(t, tc.separateSink)
			data := auditData(t, sinkDSN(cfg))
			if len(data) < 3 {
				t.Fatalf("audit data before teardown: %v", data)
			}
			app := newRole(t, srv, cfg.SourceDSN, "app", "LOGIN")
			pgtest.Exec(t, cfg.SourceDSN,
				"GRANT USAGE ON SCHEMA sales TO "+ident(app),
				"GRANT SELECT, INSERT, UPDATE, DELETE ON invoices, events, sales.orders TO "+ident(app))
			td := teardownConfig(cfg)
			td.DropAuditData = tc.dropData

			for _, pass := range []string{"first", "second"} {
				out, err := teardown(t, td)
				if err != nil {
					t.Fatalf("%s teardown: %v\noutput:\n%s", pass, err, out)
				}
				if pass == "second" {
					for _, word := range []string{": dropped", "removed from", "revoked", "terminated"} {
						if strings.Contains(out, word) {
							t.Errorf("second teardown says %q, want nothing left to remove:\n%s", word, out)
						}
					}
				} else {
					for _, s := range []string{`replication slot "` + cfg.Slot + `": dropped`, `publication "walscribe": dropped`,
						"event trigger walscribe_capture: dropped", "context trigger: removed from public.events_2025_b"} {
						if !strings.Contains(out, s) {
							t.Errorf("output lacks %q:\n%s", s, out)
						}
					}
				}
				left := leftovers(t, cfg)
				if !left.empty() {
					t.Errorf("after the %s teardown, left behind: %+v", pass, left)
				}

				switch got := auditData(t, sinkDSN(cfg)); {
				case tc.dropData && got != nil:
					t.Errorf("audit schema still in the sink after --drop-audit-data: %v", got)
				case !tc.dropData && !reflect.DeepEqual(got, data):
					t.Errorf("audit data changed:\ngot  %v\nwant %v", got, data)
				}
				if !tc.dropData {
					if got := auditObjects(t, sinkDSN(cfg)); !reflect.DeepEqual(got, auditOnly) {
						t.Errorf("audit schema in the sink holds\n%v\nwant what the migrations create:\n%v", got, auditOnly)
					}
				}
				if tc.separateSink {
					if got := auditObjects(t, cfg.SourceDSN); len(got) > 0 {
						t.Errorf("the source's audit schema still holds %v", got)
					}
					var schema *string
					if err := pgtest.Connect(t, cfg.SourceDSN).QueryRow(context.Background(), `SELECT to_regnamespace('audit')::text`).Scan(&schema); err != nil {
						t.Fatal(err)
					}
					if schema != nil {
						t.Errorf("the source keeps the audit schema, which only held the bridge")
					}
				}
			}

			// The application writes to the formerly tracked tables, as a
			// role with no rights on the audit schema: a trigger left
			// behind would fail or call into it.
			appConn := pgtest.Connect(t, asUser(t, cfg.SourceDSN, app))
			for _, q := range []string{
				`INSERT INTO invoices VALUES (1, 10)`,
				`UPDATE invoices SET amount = 11 WHERE id = 1`,
				`INSERT INTO events VALUES ('2024-06-01', 'a', 'x'), ('2025-06-01', 'b', 'y')`,
				`DELETE FROM events WHERE kind = 'b'`,
				`INSERT INTO sales.orders VALUES (1, 1)`,
				`DELETE FROM invoices`,
			} {
				if _, err := appConn.Exec(context.Background(), q); err != nil {
					t.Errorf("the application after teardown: %s: %v", q, err)
				}
			}
			if tc.separateSink || !tc.dropData {
				// USAGE on the audit schema was setup's grant to PUBLIC
				// for the bridge; it does not outlive it.
				var usage bool
				err := appConn.QueryRow(context.Background(), `SELECT has_schema_privilege('audit', 'USAGE')`).Scan(&usage)
				if err == nil && usage {
					t.Errorf("role %s keeps USAGE on the audit schema after teardown", app)
				}
			}

			// A table created later, matching the pattern, is an ordinary
			// table: no event trigger adds it anywhere.
			pgtest.Exec(t, cfg.SourceDSN, `CREATE TABLE public.created_after (id int PRIMARY KEY)`, `INSERT INTO public.created_after VALUES (1)`)
			conn := pgtest.Connect(t, cfg.SourceDSN)
			var replIdent string
			var triggers, published int
			if err := conn.QueryRow(context.Background(), `SELECT relreplident::text,
					(SELECT count(*) FROM pg_trigger WHERE tgrelid = c.oid)::int,
					(SELECT count(*) FROM pg_publication_rel WHERE prrelid = c.oid)::int
				FROM pg_class c WHERE c.oid = 'public.created_after'::regclass`).Scan(&replIdent, &triggers, &published); err != nil {
				t.Fatal(err)
			}
			if replIdent != "d" || triggers != 0 || published != 0 {
				t.Errorf("a table created after teardown: replica identity %q, %d triggers, in %d publications; want d, 0, 0", replIdent, triggers, published)
			}
		})
	}
}

// TestTeardownRefuses: a slot in use, and an event trigger the role may not
// drop, stop teardown before it changes anything; --force ends the slot's
// use.
func TestTeardownRefuses(t *testing.T) {
	t.Run("slot in use", func(t *testing.T) {
		cfg := setUpForTeardown(t, false)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		repl, err := cdc.Dial(ctx, cfg.SourceDSN)
		if err != nil {
			t.Fatal(err)
		}
		defer repl.Close(context.Background())
		if err := repl.Start(ctx, cfg.Slot, cfg.Publication, 0); err != nil {
			t.Fatal(err)
		}
		conn := pgtest.Connect(t, cfg.SourceDSN)
		var pid int32
		for {
			err := conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active`, cfg.Slot).Scan(&pid)
			if err == nil {
				break
			}
			if err != pgx.ErrNoRows || ctx.Err() != nil {
				t.Fatalf("wait for the slot to be active: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		before := leftovers(t, cfg)

		out, err := teardown(t, teardownConfig(cfg))
		if err == nil {
			t.Fatalf("teardown with the slot in use succeeded:\n%s", out)
		}
		for _, s := range []string{"in use", "stop every `walscribe run`", "--force"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error lacks %q: %v", s, err)
			}
		}
		if after := leftovers(t, cfg); !reflect.DeepEqual(after, before) {
			t.Errorf("a refused teardown changed the database:\nbefore %+v\nafter  %+v", before, after)
		}

		td := teardownConfig(cfg)
		td.Force = true
		out, err = teardown(t, td)
		if err != nil {
			t.Fatalf("teardown --force: %v\noutput:\n%s", err, out)
		}
		if want := fmt.Sprintf("terminated process %d", pid); !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
		if left := leftovers(t, cfg); !left.empty() {
			t.Errorf("after teardown --force, left behind: %+v", left)
		}
		var alive bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if alive {
			t.Errorf("walsender %d still runs after teardown --force", pid)
		}
	})

	t.Run("objects of other roles", func(t *testing.T) {
		cfg := setUpForTeardown(t, false)
		role := newRole(t, srv, cfg.SourceDSN, "repl", "LOGIN REPLICATION")
		db := dbName(t, cfg.SourceDSN)
		pgtest.Exec(t, cfg.SourceDSN, "GRANT CREATE ON DATABASE "+ident(db)+" TO "+ident(role))
		before := leftovers(t, cfg)
		td := teardownConfig(cfg)
		td.SourceDSN = asUser(t, cfg.SourceDSN, role)
		out, err := teardown(t, td)
		if err == nil || !containsAll(err.Error(), []string{"nothing removed", "event trigger walscribe_capture (owner postgres)",
			"publication walscribe (owner postgres)", "function audit.emit_context() (owner walscribe_owner)", "schema walscribe_capture (owner postgres)", "table public.invoices (owner postgres)", "as a superuser"}) {
			t.Fatalf("teardown as a role that owns nothing: error %v, want one naming what it may not drop and saying to run it as a superuser\noutput:\n%s", err, out)
		}
		if after := leftovers(t, cfg); !reflect.DeepEqual(after, before) {
			t.Errorf("a refused teardown changed the database:\nbefore %+v\nafter  %+v", before, after)
		}
	})
}

// TestTeardownAsOwner: a role with REPLICATION that is a member of the
// tables' owner, the least a setup without a superuser needs, removes what
// it installed.
func TestTeardownAsOwner(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, schemaSQL)
	owner := newRole(t, srv, dsn, "owner", "NOLOGIN")
	role := newRole(t, srv, dsn, "walscribe", "LOGIN REPLICATION")
	// The roles setup needs, made by a superuser; the role that runs
	// setup may act as the trail's owner.
	if _, _, err := EnsureRoles(context.Background(), pgtest.Connect(t, dsn), DefaultRoles()); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dsn,
		"GRANT USAGE ON SCHEMA sales TO "+ident(owner),
		"GRANT "+ident(owner)+" TO "+ident(role),
		"GRANT walscribe_owner TO "+ident(role),
		"GRANT CREATE ON DATABASE "+ident(dbName(t, dsn))+" TO "+ident(role))
	for _, tbl := range []string{"invoices", "customers", "untracked", "events", "events_2024", "events_2025", "events_2025_a", "events_2025_b", "sales.orders"} {
		pgtest.Exec(t, dsn, "ALTER TABLE "+tbl+" OWNER TO "+ident(owner))
	}
	cfg := config(t, asUser(t, dsn, role))
	cfg.Rules = teardownRules(t)
	out, err := run(t, cfg)
	if err != nil {
		t.Fatalf("setup as %s: %v\noutput:\n%s", role, err, out)
	}
	if !strings.Contains(out, "needs a superuser") {
		t.Errorf("setup as a non-superuser does not warn about the capture of new tables:\n%s", out)
	}
	if left := leftovers(t, cfg); len(left.Slots) != 1 || len(left.ContextTriggers) < 8 || len(left.BridgeFunctions) != 4 {
		t.Fatalf("setup as %s did not install what teardown removes: %+v", role, left)
	}
	td := teardownConfig(cfg)
	td.DropAuditData = true
	if out, err := teardown(t, td); err != nil {
		t.Fatalf("teardown as %s: %v\noutput:\n%s", role, err, out)
	}
	if left := leftovers(t, cfg); !left.empty() {
		t.Errorf("left behind: %+v", left)
	}
	if got := auditData(t, dsn); got != nil {
		t.Errorf("audit schema kept after --drop-audit-data: %v", got)
	}
}

// TestTeardownForeignUserOfTheBridge: a trigger that setup did not create
// but that calls the bridge stops teardown with its name; once it is gone,
// teardown finishes.
func TestTeardownForeignUserOfTheBridge(t *testing.T) {
	cfg := setUpForTeardown(t, false)
	pgtest.Exec(t, cfg.SourceDSN, `CREATE TRIGGER mine BEFORE INSERT ON customers FOR EACH STATEMENT EXECUTE FUNCTION audit.emit_context()`)
	out, err := teardown(t, teardownConfig(cfg))
	if err == nil || !strings.Contains(err.Error(), "trigger mine on table public.customers") {
		t.Fatalf("teardown with a foreign trigger on the bridge: error %v, want one naming that trigger\noutput:\n%s", err, out)
	}
	pgtest.Exec(t, cfg.SourceDSN, `DROP TRIGGER mine ON customers`)
	if out, err := teardown(t, teardownConfig(cfg)); err != nil {
		t.Fatalf("teardown again: %v\noutput:\n%s", err, out)
	}
	if left := leftovers(t, cfg); !left.empty() {
		t.Errorf("left behind: %+v", left)
	}
}

// TestTeardownLeavesOtherDatabasesAlone: slot names are server-wide; a slot
// of the configured name that streams another database is not teardown's.
func TestTeardownLeavesOtherDatabasesAlone(t *testing.T) {
	other := setUpForTeardown(t, false)
	dsn := srv.NewDB(t)
	td := teardownConfig(config(t, dsn))
	td.Slot = other.Slot
	out, err := teardown(t, td)
	if err != nil {
		t.Fatalf("teardown of a database walscribe never touched: %v\noutput:\n%s", err, out)
	}
	if !strings.Contains(out, "belongs to database") {
		t.Errorf("output does not say the slot belongs elsewhere:\n%s", out)
	}
	if left := leftovers(t, other); len(left.Slots) != 1 {
		t.Errorf("the other database's slot %q was dropped", other.Slot)
	}
}
