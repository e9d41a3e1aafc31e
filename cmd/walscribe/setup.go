package main

import (
	"fmt"
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
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Prepare the databases: check the server, create the audit schema, publication and slot (idempotent)",
		Long: `setup checks that the source server can stream changes (version, wal_level,
replication rights, free slots, table ownership) and stops with what to change if
not. Then it applies the audit schema migrations to the sink, sets REPLICA IDENTITY
FULL on every tracked table (and partition), makes the publication publish exactly
the tracked tables, and creates the replication slot. Run it again after changing
the tracked tables.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			cfg := setupConfig(c)
			cfg.SlotTimeout = slotTimeout
			if cfg.Rules, err = rulesFromConfig(c); err != nil {
				return err
			}
			return setup.Run(cmd.Context(), cfg, func(format string, a ...any) {
				fmt.Fprintf(cmd.OutOrStdout(), format+"\n", a...)
			})
		},
	}
	cmd.Flags().DurationVar(&slotTimeout, "slot-timeout", time.Minute, "how long slot creation may wait for open transactions")
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
	}
}

func newMigrateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply the audit schema migrations to the sink database only",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := pg.Connect(ctx, c.SinkDSN(), pg.AppTool)
			if err != nil {
				return fmt.Errorf("connect to sink: %w", err)
			}
			defer conn.Close(ctx)
			applied, err := migrations.Apply(ctx, conn, c.Sink.Schema)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit schema %q: applied %v, now at version %d\n", c.Sink.Schema, applied, migrations.Latest())
			return nil
		},
	}
}
