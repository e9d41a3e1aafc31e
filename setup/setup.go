// Package setup prepares the databases for walscribe, idempotently: it checks
// the source server, applies the audit schema migrations to the sink, sets
// REPLICA IDENTITY FULL on the tracked tables, makes the publication publish
// exactly them, and creates the replication slot.
package setup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/migrations"
	"github.com/walscribe/walscribe/rules"
)

// Config is what setup needs.
type Config struct {
	SourceDSN   string
	SinkDSN     string // "" or equal to SourceDSN: the audit schema lives in the source database
	SinkSchema  string
	Slot        string
	Publication string
	Tables      []cdc.Table
	SlotTimeout time.Duration // how long slot creation may wait for open transactions
	// ContextPrefix is the prefix of the session variables the context
	// bridge reads (context.prefix), e.g. "audit" for audit.actor_id.
	ContextPrefix string
	// Rules, when set, decide the tracked tables from the configured names
	// and patterns (Tables is then ignored), and are installed for tables
	// created later.
	Rules *rules.Set
	// AdminSourceDSN and AdminSinkDSN, when set, are the connections setup
	// works through (a superuser, or an admin that may create roles and act
	// as the owner); SourceDSN and SinkDSN are then only the daemon's, whose
	// users get what the daemon needs. "" means the daemon's own.
	AdminSourceDSN string
	AdminSinkDSN   string
	// Roles are the owner, reader and application roles; zero means
	// DefaultRoles.
	Roles Roles
	// IPIndex creates the index of the entries' ip (sink.ip_index).
	IPIndex bool
}

// DSNUser is the user a connection string logs in as ("" when it
// cannot be parsed: config checks it).
func DSNUser(dsn string) string {
	c, err := pg.ParseConfig(dsn, pg.AppTool)
	if err != nil {
		return ""
	}
	return c.User
}

// Run prepares the databases, telling say what it did. On an unprepared
// server it returns cdc.Problems, each saying what to run.
func Run(ctx context.Context, cfg Config, say func(format string, args ...any)) error {
	cfg.Roles = cfg.Roles.orDefault()
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
	if cfg.AdminSourceDSN != "" { // else cdc.Check checks the role it connects as
		if err := checkReplicationRole(ctx, src, DSNUser(cfg.SourceDSN)); err != nil {
			return err
		}
	}
	skipSchema := ""
	if sameDB {
		skipSchema = cfg.SinkSchema
	}
	if cfg.Rules != nil {
		tables, unmatched, err := ResolveTables(ctx, src, cfg.Rules, skipSchema)
		if err != nil {
			return err
		}
		for _, p := range unmatched {
			say("warning: pattern %s matches no table yet", p)
		}
		cfg.Tables = tables
	}
	check := cdc.SetupConfig{Slot: cfg.Slot, Publication: cfg.Publication, Tables: cfg.Tables}
	if sameDB {
		check.SinkSchema = cfg.SinkSchema
	}
	if err := cdc.Check(ctx, src, check); err != nil {
		return err
	}

	sinkConn, sinkDSN := src, cfg.SinkDSN
	if sameDB {
		sinkDSN = cfg.SourceDSN
	} else {
		dsn, key := cfg.SinkDSN, "sink.dsn"
		if cfg.AdminSinkDSN != "" {
			dsn, key = cfg.AdminSinkDSN, "--admin-sink-dsn"
		}
		if sinkConn, err = pg.Connect(ctx, dsn, pg.AppTool); err != nil {
			return fmt.Errorf("connect to sink (%s): %w", key, err)
		}
		defer sinkConn.Close(ctx)
	}
	applied, warnings, err := PrepareSink(ctx, sinkConn, SinkConfig{Schema: cfg.SinkSchema, Roles: cfg.Roles, Writers: []string{DSNUser(sinkDSN)}, IPIndex: cfg.IPIndex})
	for _, w := range warnings {
		say("warning: %s", w)
	}
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		say("audit schema %q: applied migrations %v", cfg.SinkSchema, applied)
	} else {
		say("audit schema %q: up to date (version %d)", cfg.SinkSchema, migrations.Latest())
	}
	say("audit schema %q: owned by %s; %s may append to it, %s may read it", cfg.SinkSchema, cfg.Roles.Owner, DSNUser(sinkDSN), cfg.Roles.Reader)

	changed, err := cdc.SetReplicaIdentityFull(ctx, src, cfg.Tables)
	if err != nil {
		return err
	}
	for _, t := range changed {
		say("replica identity full: %s", t)
	}
	if cfg.ContextPrefix == "" {
		cfg.ContextPrefix = "audit"
	}
	bridged, unbridged, warnings, err := InstallBridge(ctx, src, cfg.SinkSchema, cfg.ContextPrefix, cfg.Roles, cfg.Tables)
	for _, w := range warnings {
		say("warning: %s", w)
	}
	if err != nil {
		return err
	}
	for _, t := range bridged {
		say("context trigger: installed on %s", t)
	}
	for _, t := range unbridged {
		say("context trigger: removed from %s", t)
	}
	say("context bridge: %s.set_context(), %s.log_event() for members of %s (GRANT %s TO your_app), variables %s.actor_id, .actor, .ip, .user_agent, .request_id, .context",
		cfg.SinkSchema, cfg.SinkSchema, cfg.Roles.App, cfg.Roles.App, cfg.ContextPrefix)

	if cfg.Rules != nil {
		installed, err := InstallCapture(ctx, src, cfg.SinkSchema, cfg.Publication, skipSchema, cfg.Rules)
		switch {
		case errors.Is(err, ErrCapturePatternsStale):
			say("warning: tables created later are captured with the patterns of the last setup run by a superuser: run setup as a superuser to update them")
		case err != nil:
			return err
		case installed:
			say("tables created later that match the patterns are captured from their first row (event trigger walscribe_capture)")
		default:
			say("warning: tables created later are not captured until setup runs again: installing the event trigger that captures them needs a superuser (run setup once as one)")
		}
	}

	added, removed, err := cdc.EnsurePublication(ctx, src, cfg.Publication,
		append(slices.Clone(cfg.Tables), cdc.Table{Schema: cfg.SinkSchema, Name: BridgeTruncates}))
	if err != nil {
		return err
	}
	for _, t := range added {
		say("publication %q: added %s", cfg.Publication, t)
	}
	for _, t := range removed {
		say("publication %q: removed %s", cfg.Publication, t)
	}
	created, err := cdc.EnsureSlot(ctx, src, cfg.Slot, cfg.SlotTimeout)
	if err != nil {
		return err
	}
	if created {
		say("replication slot %q: created", cfg.Slot)
	} else {
		say("replication slot %q: exists", cfg.Slot)
	}
	if cfg.Rules != nil {
		rep, err := Inspect(ctx, src, cfg.Rules, cfg.Publication, cfg.SinkSchema, skipSchema)
		if err != nil {
			return err
		}
		for _, p := range rep.Problems {
			say("warning: %s", p)
		}
	}
	say("ready: %d tables tracked; start the daemon with `walscribe run`", len(cfg.Tables))
	return nil
}

// checkReplicationRole checks that the daemon's role on the source exists
// and may stream (REPLICATION or superuser).
func checkReplicationRole(ctx context.Context, conn *pgx.Conn, name string) error {
	if name == "" {
		return nil
	}
	var repl bool
	err := conn.QueryRow(ctx, `SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = $1`, name).Scan(&repl)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return cdc.Problems{fmt.Sprintf("role %s (the user of source.dsn) does not exist: run CREATE ROLE %s LOGIN REPLICATION PASSWORD '...'", name, pgx.Identifier{name}.Sanitize())}
	case err != nil:
		return fmt.Errorf("read role %s: %w", name, err)
	case !repl:
		return cdc.Problems{fmt.Sprintf("role %s (the user of source.dsn) may not stream changes: run ALTER ROLE %s REPLICATION", name, pgx.Identifier{name}.Sanitize())}
	}
	return nil
}
