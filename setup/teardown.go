package setup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pg"
)

// TeardownConfig is what Teardown needs: the names setup used.
type TeardownConfig struct {
	SourceDSN   string
	SinkDSN     string // "" or equal to SourceDSN: the audit schema lives in the source database
	SinkSchema  string // the audit schema; in the source it also holds the context bridge
	Slot        string
	Publication string
	// DropAuditData also drops the audit schema in the sink database, with
	// every entry, checkpoint, rules record and gap. Without it the audit
	// data is kept.
	DropAuditData bool
	// Force terminates the process streaming the slot (a walsender) instead
	// of refusing to drop a slot in use.
	Force bool
	// AdminSourceDSN and AdminSinkDSN, when set, are the connections
	// teardown works through (the superuser that ran setup); "" means the
	// daemon's own.
	AdminSourceDSN string
	AdminSinkDSN   string
	// Owner is the trail's owner role (roles.owner), whose grant of
	// pg_logical_emit_message teardown takes back; "" means the default.
	Owner string
}

// bridgeFunctions are the functions setup installs in the audit schema of
// the source: the context bridge (bridge.sql), and the capture of new tables
// as earlier versions installed it there, in an order that drops users
// before what they use.
var bridgeFunctions = []string{"capture_new_tables", "capture_table", "log_event", "set_context", "emit_context", "current_context"}

// bridgeRelations are the bridge's sequences and tables in the audit schema
// of the source: its secret, and the capture patterns of earlier versions.
var bridgeRelations = []string{BridgeTruncates, "bridge_emits", "bridge_key_a", "bridge_key_b", "capture_patterns"}

// captureTrigger is the event trigger of capture.sql.
const captureTrigger = "walscribe_capture"

// forceTimeout bounds how long Force keeps terminating the slot's user
// before giving up.
const forceTimeout = 10 * time.Second

// Teardown removes walscribe from the source database, telling say what it
// removed: the replication slot, the publication, the event trigger that
// captures new tables, the context trigger on every table that has it, and
// the bridge's functions and capture_patterns table in the audit schema.
// The audit data (entries, checkpoints, rules, gaps, schema_migrations) is
// kept unless cfg.DropAuditData. Running it again changes nothing.
//
// It refuses, having changed nothing, when the slot is in use (unless
// cfg.Force) or when the role may not drop one of the objects (the event
// trigger, which setup installs as a superuser, needs one). It does not change REPLICA IDENTITY back: setup does not know
// what it was before.
func Teardown(ctx context.Context, cfg TeardownConfig, say func(format string, args ...any)) error {
	if cfg.Owner == "" {
		cfg.Owner = DefaultRoles().Owner
	}
	srcDSN, srcKey := cfg.SourceDSN, "source.dsn"
	if cfg.AdminSourceDSN != "" {
		srcDSN, srcKey = cfg.AdminSourceDSN, "--admin-dsn"
	}
	src, err := pg.Connect(ctx, srcDSN, pg.AppTool)
	if err != nil {
		return fmt.Errorf("connect to source (%s): %w", srcKey, err)
	}
	defer src.Close(ctx)
	sameDB := cfg.SinkDSN == "" || cfg.SinkDSN == cfg.SourceDSN
	schema := pgx.Identifier{cfg.SinkSchema}.Sanitize()

	// What would stop teardown halfway is checked before anything changes.
	if err := checkOwnership(ctx, src, cfg); err != nil {
		return err
	}
	var eventTrigger bool
	if err := src.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1)`, captureTrigger).Scan(&eventTrigger); err != nil {
		return fmt.Errorf("read event triggers: %w", err)
	}

	if err := dropSlot(ctx, src, cfg.Slot, cfg.Force, say); err != nil {
		return err
	}

	if eventTrigger {
		if _, err := src.Exec(ctx, `DROP EVENT TRIGGER IF EXISTS `+captureTrigger); err != nil {
			return fmt.Errorf("drop event trigger %s: %w", captureTrigger, err)
		}
		say("event trigger %s: dropped (tables created from now on are not captured)", captureTrigger)
	}
	var captureExists bool
	if err := src.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, captureSchema).Scan(&captureExists); err != nil {
		return fmt.Errorf("read schema %s: %w", captureSchema, err)
	}
	if captureExists {
		if _, err := src.Exec(ctx, `DROP SCHEMA `+captureSchema+` CASCADE`); err != nil {
			return fmt.Errorf("drop schema %s: %w", captureSchema, err)
		}
		say("schema %s: dropped (the capture of new tables)", captureSchema)
	}

	// Triggers cloned onto partitions go with their parent's.
	rows, err := src.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname)
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE t.tgname = $1 AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY 1`, bridgeTrigger)
	if err != nil {
		return fmt.Errorf("read context triggers: %w", err)
	}
	bridged, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read context triggers: %w", err)
	}
	for _, name := range bridged {
		if _, err := src.Exec(ctx, `DROP TRIGGER IF EXISTS `+bridgeTrigger+` ON `+name); err != nil {
			return fmt.Errorf("drop the context trigger on %s: %w (the table's owner, or a member of its owning role, can drop it)", name, err)
		}
		say("context trigger: removed from %s", name)
	}

	var pubExists bool
	if err := src.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, cfg.Publication).Scan(&pubExists); err != nil {
		return fmt.Errorf("read publication %q: %w", cfg.Publication, err)
	}
	if pubExists {
		if _, err := src.Exec(ctx, `DROP PUBLICATION IF EXISTS `+pgx.Identifier{cfg.Publication}.Sanitize()); err != nil {
			return fmt.Errorf("drop publication %q: %w", cfg.Publication, err)
		}
		say("publication %q: dropped", cfg.Publication)
	} else {
		say("publication %q: not there", cfg.Publication)
	}

	rows, err = src.Query(ctx, `SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = $1 AND p.proname::text = ANY($2::text[])
		ORDER BY array_position($2::text[], p.proname::text), 1`, cfg.SinkSchema, bridgeFunctions)
	if err != nil {
		return fmt.Errorf("read the bridge's functions: %w", err)
	}
	funcs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read the bridge's functions: %w", err)
	}
	for _, f := range funcs {
		if _, err := src.Exec(ctx, `DROP FUNCTION IF EXISTS `+f); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.DependentObjectsStillExist {
				return fmt.Errorf("drop function %s: objects that walscribe did not create use it (%s): drop them or make them stop using it, then run teardown again", f, pgErr.Detail)
			}
			return fmt.Errorf("drop function %s: %w", f, err)
		}
		say("function %s: dropped", f)
	}
	for _, rel := range bridgeRelations {
		name := pgx.Identifier{cfg.SinkSchema, rel}.Sanitize()
		var kind *string
		if err := src.QueryRow(ctx, `SELECT CASE relkind WHEN 'S' THEN 'sequence' ELSE 'table' END FROM pg_class WHERE oid = to_regclass($1)`, name).Scan(&kind); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if kind == nil {
			continue
		}
		if _, err := src.Exec(ctx, `DROP `+strings.ToUpper(*kind)+` IF EXISTS `+name); err != nil {
			return fmt.Errorf("drop %s %s: %w", *kind, name, err)
		}
		say("%s %s.%s: dropped", *kind, cfg.SinkSchema, rel)
	}
	if err := restoreMessages(ctx, src, cfg.Owner, say); err != nil {
		return err
	}

	var schemaExists bool
	if err := src.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, cfg.SinkSchema).Scan(&schemaExists); err != nil {
		return fmt.Errorf("read schema %q: %w", cfg.SinkSchema, err)
	}
	switch {
	case !schemaExists || (sameDB && cfg.DropAuditData):
		// Dropped below, with the audit data.
	case sameDB:
		// setup granted USAGE to every role for the bridge, which is gone;
		// roles that read the audit data need their own grant.
		var public bool
		if err := src.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
			WHERE n.nspname = $1 AND a.grantee = 0 AND a.privilege_type = 'USAGE')`, cfg.SinkSchema).Scan(&public); err != nil {
			return fmt.Errorf("read privileges on schema %q: %w", cfg.SinkSchema, err)
		}
		if !public {
			break
		}
		if _, err := src.Exec(ctx, `REVOKE USAGE ON SCHEMA `+schema+` FROM PUBLIC`); err != nil {
			return fmt.Errorf("revoke usage on schema %q from public: %w", cfg.SinkSchema, err)
		}
		say("schema %q: USAGE revoked from PUBLIC (granted by setup for the bridge; roles that read the audit data need GRANT USAGE ON SCHEMA %s TO role)", cfg.SinkSchema, schema)
	default:
		// The sink is elsewhere: the schema in the source held only the
		// bridge, unless it was there before with other objects.
		_, err := src.Exec(ctx, `DROP SCHEMA `+schema)
		switch {
		case err == nil:
			say("schema %q in the source database: dropped (it held only the bridge)", cfg.SinkSchema)
		case pg.Is(err, pgerrcode.DependentObjectsStillExist):
			say("schema %q in the source database: kept, it holds objects that are not walscribe's", cfg.SinkSchema)
		default:
			return fmt.Errorf("drop schema %q in the source database: %w", cfg.SinkSchema, err)
		}
	}

	if !cfg.DropAuditData {
		say("audit data kept: schema %q in the sink database (entries, checkpoints, rules, gaps); --drop-audit-data removes it", cfg.SinkSchema)
		return nil
	}
	sinkConn := src
	if !sameDB {
		dsn, key := cfg.SinkDSN, "sink.dsn"
		if cfg.AdminSinkDSN != "" {
			dsn, key = cfg.AdminSinkDSN, "--admin-sink-dsn"
		}
		if sinkConn, err = pg.Connect(ctx, dsn, pg.AppTool); err != nil {
			return fmt.Errorf("connect to sink (%s): %w", key, err)
		}
		defer sinkConn.Close(ctx)
	}
	if err := unguard(ctx, sinkConn, cfg.SinkSchema); err != nil {
		say("the guard of schema %q: not removed (%v): walscribe_capture.guarded_schemas still names it, which guards nothing once it is gone", cfg.SinkSchema, err)
	}
	return dropAuditData(ctx, sinkConn, cfg.SinkSchema, say)
}

// checkOwnership returns an error naming every object teardown would
// remove that the role may not drop: only their owners (and members of the
// owning role, and superusers) may. setup installs the capture of new
// tables as a superuser, so that is who removes it.
func checkOwnership(ctx context.Context, conn *pgx.Conn, cfg TeardownConfig) error {
	rows, err := conn.Query(ctx, `SELECT format('event trigger %s (owner %s)', e.evtname, e.evtowner::regrole)
			FROM pg_event_trigger e WHERE e.evtname = $1 AND NOT pg_has_role(e.evtowner, 'USAGE')
		UNION ALL
		SELECT format('publication %s (owner %s)', p.pubname, p.pubowner::regrole)
			FROM pg_publication p WHERE p.pubname = $2 AND NOT pg_has_role(p.pubowner, 'USAGE')
		UNION ALL
		SELECT format('function %I.%I(%s) (owner %s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.proowner::regrole)
			FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = $3 AND p.proname::text = ANY($4::text[]) AND NOT pg_has_role(p.proowner, 'USAGE')
		UNION ALL
		SELECT format('table %s (owner %s)', c.oid::regclass, c.relowner::regrole)
			FROM pg_class c WHERE NOT pg_has_role(c.relowner, 'USAGE') AND (
				(c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $3) AND c.relname IN ('capture_patterns', 'bridge_emits', 'bridge_key_a', 'bridge_key_b', 'partition_truncates'))
				OR c.oid IN (SELECT tgrelid FROM pg_trigger WHERE tgname = $5 AND NOT tgisinternal AND tgparentid = 0))
		UNION ALL
		SELECT format('schema %s (owner %s)', n.nspname, n.nspowner::regrole)
			FROM pg_namespace n WHERE n.nspname = $6 AND NOT pg_has_role(n.nspowner, 'USAGE')`,
		captureTrigger, cfg.Publication, cfg.SinkSchema, bridgeFunctions, bridgeTrigger, captureSchema)
	if err != nil {
		return fmt.Errorf("read owners: %w", err)
	}
	foreign, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read owners: %w", err)
	}
	if len(foreign) == 0 {
		return nil
	}
	return fmt.Errorf("nothing removed: this role may not drop %s; run walscribe teardown as a superuser "+
		"(setup installs the capture of new tables as one), or as a member of those owners", strings.Join(foreign, ", "))
}

// dropSlot drops the slot if it exists in this database. A slot in use is
// an error, unless force: then its user is terminated until the slot can be
// dropped.
func dropSlot(ctx context.Context, conn *pgx.Conn, slot string, force bool, say func(format string, args ...any)) error {
	_, err := cdc.ReadSlot(ctx, conn, slot)
	switch {
	case errors.Is(err, cdc.ErrNoSlot):
		say("replication slot %q: not there", slot)
		return nil
	case errors.Is(err, cdc.ErrOtherDatabase):
		// Slot names are server-wide: this one streams another database.
		say("%v: left alone", err)
		return nil
	case err != nil:
		return err
	}
	deadline := time.Now().Add(forceTimeout)
	for {
		dropped, err := cdc.DropSlot(ctx, conn, slot)
		switch {
		case err == nil && dropped:
			say("replication slot %q: dropped (the server no longer keeps WAL for walscribe)", slot)
			return nil
		case err == nil:
			say("replication slot %q: not there", slot)
			return nil
		case pg.ObjectInUse(err):
			if !force {
				return fmt.Errorf("replication slot %q is in use (%w): stop every `walscribe run` on this database first, "+
					"then run teardown again; --force terminates the connection that holds the slot instead", slot, err)
			}
		default:
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication slot %q: still in use after %s of terminating its connection (%w): "+
				"a `walscribe run` is probably reconnecting; stop it, then run teardown again", slot, forceTimeout, err)
		}
		var pid *int32
		if err := conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read replication slot %q: %w", slot, err)
		}
		if pid != nil {
			var ok bool
			if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, *pid).Scan(&ok); err != nil {
				return fmt.Errorf("replication slot %q: terminate process %d that holds it: %w", slot, *pid, err)
			}
			if ok {
				say("replication slot %q: terminated process %d that was streaming it", slot, *pid)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dropAuditData drops the audit schema with everything in it. The
// append-only triggers guard rows against UPDATE, DELETE and TRUNCATE; they
// do not fire on DROP.
func dropAuditData(ctx context.Context, conn *pgx.Conn, schema string, say func(format string, args ...any)) error {
	rows, err := conn.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition ORDER BY 1`, schema)
	if err != nil {
		return fmt.Errorf("read schema %q: %w", schema, err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read schema %q: %w", schema, err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return fmt.Errorf("read schema %q: %w", schema, err)
	}
	if !exists {
		say("audit schema %q: not there", schema)
		return nil
	}
	if _, err := conn.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("drop audit schema %q: %w (its owner, or a superuser, can drop it)", schema, err)
	}
	what := "nothing in it"
	if len(tables) > 0 {
		what = strings.Join(tables, ", ")
	}
	say("audit schema %q: dropped with all its data (%s)", schema, what)
	return nil
}

// restoreMessages gives pg_logical_emit_message back to PUBLIC, as
// PostgreSQL has it, and takes it from owner (setup's grant), when setup
// revoked it. Only a superuser may; another role is told what to run.
func restoreMessages(ctx context.Context, conn *pgx.Conn, owner string, say func(format string, args ...any)) error {
	fns, public, err := emitMessage(ctx, conn)
	if err != nil {
		return err
	}
	var super, ownerExists bool
	if err := conn.QueryRow(ctx, `SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
		EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, owner).Scan(&super, &ownerExists); err != nil {
		return fmt.Errorf("read roles: %w", err)
	}
	if public {
		return nil
	}
	stmt := `GRANT EXECUTE ON FUNCTION ` + fns + ` TO PUBLIC`
	if owner != "" && ownerExists {
		stmt += `; REVOKE EXECUTE ON FUNCTION ` + fns + ` FROM ` + pgx.Identifier{owner}.Sanitize()
	}
	if !super {
		say("pg_logical_emit_message: still revoked from PUBLIC; a superuser can give it back: %s", stmt)
		return nil
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("give pg_logical_emit_message back to PUBLIC: %w", err)
	}
	say("pg_logical_emit_message: executable by PUBLIC again")
	return nil
}
