// Package setup prepares the databases for walscribe, idempotently: it checks
// the source server, applies the audit schema migrations to the sink, sets
// REPLICA IDENTITY FULL on the tracked tables, makes the publication publish
// exactly them, and creates the replication slot.
package setup

import (
	"context"
	"errors"
	"fmt"
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
}

// Run prepares the databases, telling say what it did. On an unprepared
// server it returns cdc.Problems, each saying what to run.
func Run(ctx context.Context, cfg Config, say func(format string, args ...any)) error {
	src, err := pg.Connect(ctx, cfg.SourceDSN, pg.AppTool)
	if err != nil {
		return fmt.Errorf("connect to source (source.dsn): %w", err)
	}
	defer src.Close(ctx)
	sameDB := cfg.SinkDSN == "" || cfg.SinkDSN == cfg.SourceDSN
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

	sinkConn := src
	if !sameDB {
		if sinkConn, err = pg.Connect(ctx, cfg.SinkDSN, pg.AppTool); err != nil {
			return fmt.Errorf("connect to sink (sink.dsn): %w", err)
		}
		defer sinkConn.Close(ctx)
	}
	applied, err := migrations.Apply(ctx, sinkConn, cfg.SinkSchema)
	if err != nil {
		return fmt.Errorf("audit schema %q: %w", cfg.SinkSchema, err)
	}
	if len(applied) > 0 {
		say("audit schema %q: applied migrations %v", cfg.SinkSchema, applied)
	} else {
		say("audit schema %q: up to date (version %d)", cfg.SinkSchema, migrations.Latest())
	}

	// The months the sink writes first exist before it starts, so that its
	// first batches do no DDL.
	now := time.Now().UTC()
	if _, err := sinkConn.Exec(ctx, `SELECT `+pgx.Identifier{cfg.SinkSchema}.Sanitize()+`.ensure_partitions($1, $2, $3)`,
		now.AddDate(0, -1, 0), now.AddDate(0, 2, 0), []string{"default"}); err != nil {
		return fmt.Errorf("audit schema %q: create partitions: %w", cfg.SinkSchema, err)
	}

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
	bridged, unbridged, err := InstallBridge(ctx, src, cfg.SinkSchema, cfg.ContextPrefix, cfg.Tables)
	if err != nil {
		return err
	}
	for _, t := range bridged {
		say("context trigger: installed on %s", t)
	}
	for _, t := range unbridged {
		say("context trigger: removed from %s", t)
	}
	say("context bridge: %s.set_context(), %s.log_event(), variables %s.actor_id, .actor, .ip, .user_agent, .request_id, .context",
		cfg.SinkSchema, cfg.SinkSchema, cfg.ContextPrefix)

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

	added, removed, err := cdc.EnsurePublication(ctx, src, cfg.Publication, cfg.Tables)
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
		rep, err := Inspect(ctx, src, cfg.Rules, cfg.Publication, skipSchema)
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
