package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/setup"
)

func newTeardownCmd(g *globals) *cobra.Command {
	var dropAuditData, yes, force bool
	var adminDSN, adminSinkDSN string
	cmd := &cobra.Command{
		Use:   "teardown",
		Short: "Remove walscribe from the source database: slot, publication, triggers, bridge (keeps the audit data)",
		Long: `teardown removes what setup installed in the source database: the replication
slot (the server stops keeping WAL for walscribe), the publication, the event trigger
walscribe_capture and its schema, the context trigger walscribe_context on every
table that has it, and the bridge's functions in the audit schema, and it makes
pg_logical_emit_message executable by PUBLIC again. It keeps
the audit data (entries, checkpoints, rules, gaps, schema_migrations) unless
--drop-audit-data is given, which drops the audit schema in the sink database and
needs --yes as well. REPLICA IDENTITY FULL stays on the tables that had it.

Stop every ` + "`walscribe run`" + ` first: teardown refuses to drop a slot in use, and
--force terminates the connection that holds it instead. Run it as the superuser
that ran setup, through --admin-dsn (and --admin-sink-dsn for a separate sink).
Running teardown again is harmless. The roles setup created stay.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			if dropAuditData && !yes {
				return fmt.Errorf("--drop-audit-data deletes the audit trail for good (schema %q in the sink database, every entry in it): add --yes to confirm, or leave --drop-audit-data out to keep it", c.Sink.Schema)
			}
			cfg := teardownConfig(c)
			cfg.DropAuditData = dropAuditData
			cfg.Force = force
			cfg.AdminSourceDSN, cfg.AdminSinkDSN = adminDSN, adminSinkDSN
			return setup.Teardown(cmd.Context(), cfg, func(format string, a ...any) {
				fmt.Fprintf(cmd.OutOrStdout(), format+"\n", a...)
			})
		},
	}
	cmd.Flags().BoolVar(&dropAuditData, "drop-audit-data", false, "also drop the audit schema in the sink database, with every entry (needs --yes)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm --drop-audit-data")
	cmd.Flags().BoolVar(&force, "force", false, "terminate the connection streaming the slot instead of refusing to drop it")
	cmd.Flags().StringVar(&adminDSN, "admin-dsn", os.Getenv("WALSCRIBE_ADMIN_DSN"),
		"connect to the source database as this superuser (or admin); default: source.dsn (env WALSCRIBE_ADMIN_DSN)")
	cmd.Flags().StringVar(&adminSinkDSN, "admin-sink-dsn", os.Getenv("WALSCRIBE_ADMIN_SINK_DSN"),
		"the same for a separate sink database; default: sink.dsn (env WALSCRIBE_ADMIN_SINK_DSN)")
	return cmd
}

// teardownConfig maps the configuration onto what teardown needs, with the
// names setup used.
func teardownConfig(c *config.Config) setup.TeardownConfig {
	s := setupConfig(c)
	return setup.TeardownConfig{
		SourceDSN:   s.SourceDSN,
		SinkDSN:     s.SinkDSN,
		SinkSchema:  s.SinkSchema,
		Slot:        s.Slot,
		Publication: s.Publication,
		Owner:       s.Roles.Owner,
	}
}
