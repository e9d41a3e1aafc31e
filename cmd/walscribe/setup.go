package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/migrations"
	"github.com/walscribe/walscribe/setup"
)

func newSetupCmd(g *globals) *cobra.Command {
	var slotTimeout time.Duration
	var adminDSN, adminSinkDSN string
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Prepare the databases: check the server, create the audit schema, publication and slot (idempotent)",
		Long: `setup checks that the source server can stream changes (version, wal_level,
replication rights, free slots, table ownership) and stops with what to change if
not. Then it applies the audit schema migrations to the sink, sets REPLICA IDENTITY
FULL on every tracked table (and partition), makes the publication publish exactly
the tracked tables, and creates the replication slot. Run it again after changing
the tracked tables.

The audit schema belongs to roles.owner, a NOLOGIN role; the daemon's role (the
user of source.dsn and sink.dsn) may only append to the trail, roles.reader may
read it, and roles.app may call set_context and log_event. setup creates these
roles and grants. Run it as a superuser: give the superuser's connection with
--admin-dsn (or WALSCRIBE_ADMIN_DSN), and keep the daemon's own in the config.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			cfg := setupConfig(c)
			cfg.SlotTimeout = slotTimeout
			cfg.AdminSourceDSN, cfg.AdminSinkDSN = adminDSN, adminSinkDSN
			if cfg.Rules, err = rulesFromConfig(c); err != nil {
				return err
			}
			return setup.Run(cmd.Context(), cfg, func(format string, a ...any) {
				fmt.Fprintf(cmd.OutOrStdout(), format+"\n", a...)
			})
		},
	}
	cmd.Flags().DurationVar(&slotTimeout, "slot-timeout", time.Minute, "how long slot creation may wait for open transactions")
	cmd.Flags().StringVar(&adminDSN, "admin-dsn", os.Getenv("WALSCRIBE_ADMIN_DSN"),
		"connect to the source database as this superuser (or admin) to set it up; default: source.dsn (env WALSCRIBE_ADMIN_DSN)")
	cmd.Flags().StringVar(&adminSinkDSN, "admin-sink-dsn", os.Getenv("WALSCRIBE_ADMIN_SINK_DSN"),
		"the same for a separate sink database; default: sink.dsn (env WALSCRIBE_ADMIN_SINK_DSN)")
	return cmd
}

func setupConfig(c *config.Config) setup.Config {
	tables := make([]cdc.Table, len(c.Tables))
	for i, t := range c.Tables {
		schema, name := t.Split()
		tables[i] = cdc.Table{Schema: schema, Name: name, Key: fmt.Sprintf("tables[%d].name", i)}
	}
	return setup.Config{
		SourceDSN:     c.Source.DSN,
		SinkDSN:       c.SinkDSN(),
		SinkSchema:    c.Sink.Schema,
		Slot:          c.Source.Slot,
		Publication:   c.Source.Publication,
		Tables:        tables,
		ContextPrefix: c.Context.Prefix,
		Roles:         setupRoles(c),
		IPIndex:       c.Sink.IPIndex,
	}
}

func setupRoles(c *config.Config) setup.Roles {
	return setup.Roles{Owner: c.Roles.Owner, Reader: c.Roles.Reader, App: c.Roles.App, RevokeEmitMessage: c.Roles.RevokeEmitMessage}
}

func newMigrateCmd(g *globals) *cobra.Command {
	var adminDSN string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the audit schema migrations to the sink database only",
		Long: `migrate prepares only the audit schema of the sink database: the roles, the
schema owned by roles.owner, its migrations, and the grants to the daemon's role
(the user of sink.dsn) and roles.reader.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			dsn, key := c.SinkDSN(), "sink.dsn"
			if adminDSN != "" {
				dsn, key = adminDSN, "--admin-dsn"
			}
			conn, err := pg.Connect(ctx, dsn, pg.AppTool)
			if err != nil {
				return fmt.Errorf("connect to sink (%s): %w", key, err)
			}
			defer conn.Close(ctx)
			applied, warnings, err := setup.PrepareSink(ctx, conn, setup.SinkConfig{Schema: c.Sink.Schema, Roles: setupRoles(c),
				Writers: []string{setup.DSNUser(c.SinkDSN())}, IPIndex: c.Sink.IPIndex})
			for _, w := range warnings {
				fmt.Fprintf(cmd.OutOrStdout(), "warning: %s\n", w)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit schema %q: applied %v, now at version %d\n", c.Sink.Schema, applied, migrations.Latest())
			return nil
		},
	}
	cmd.Flags().StringVar(&adminDSN, "admin-dsn", os.Getenv("WALSCRIBE_ADMIN_SINK_DSN"),
		"connect to the sink database as this superuser (or admin); default: sink.dsn (env WALSCRIBE_ADMIN_SINK_DSN)")
	return cmd
}
