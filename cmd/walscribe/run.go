package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/daemon"
	"github.com/walscribe/walscribe/sink"
)

func newRunCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Stream changes into the audit trail until stopped (SIGINT/SIGTERM drain and exit)",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			defer log.Sync()
			log.Info("walscribe starting", zap.String("version", version), zap.Any("config", c.Redacted()))
			return daemon.New(daemonConfig(c), log).Run(cmd.Context())
		},
	}
}

func daemonConfig(c *config.Config) daemon.Config {
	return daemon.Config{
		SourceDSN:      c.Source.DSN,
		Slot:           c.Source.Slot,
		Publication:    c.Source.Publication,
		StatusInterval: c.Source.StatusInterval,
		Sink: sink.Config{
			DSN:             c.SinkDSN(),
			Schema:          c.Sink.Schema,
			Slot:            c.Source.Slot,
			BatchMaxEntries: c.Sink.BatchMaxEntries,
			BatchMaxWait:    c.Sink.BatchMaxWait,
		},
	}
}
