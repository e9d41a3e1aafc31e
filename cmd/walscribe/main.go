// Command walscribe turns a PostgreSQL database's logical replication stream
// into an append-only audit trail.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/walscribe/walscribe/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			if exit.err != nil {
				fmt.Fprintln(os.Stderr, "walscribe:", exit.err)
			}
			os.Exit(exit.code)
		}
		if !errors.As(err, new(loggedError)) {
			fmt.Fprintln(os.Stderr, "walscribe:", err)
		}
		os.Exit(1)
	}
}

type globals struct {
	configPath string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "walscribe",
		Short:         "A complete, append-only audit trail for PostgreSQL, from logical replication",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", os.Getenv("WALSCRIBE_CONFIG"),
		"config file (YAML); every key can also be set as WALSCRIBE_<SECTION>_<KEY> (default $WALSCRIBE_CONFIG)")
	root.AddCommand(newSetupCmd(g), newRunCmd(g), newStatusCmd(g), newMigrateCmd(g), newConfigCmd(g), newTeardownCmd(g))
	root.AddCommand(newKeygenCmd(), newVerifyCmd(g), newCleanupCmd(g), newReportCmd(g), newExportCmd(g))
	root.AddCommand(newServeCmd(g), newTokenCmd(g), newRestoreCmd(g))
	return root
}

func (g *globals) load() (*config.Config, error) {
	return config.Load(g.configPath)
}

// newLogger builds the logger from log.level and log.format.
func newLogger(c *config.Config) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Log.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	format := c.Log.Format
	if format == "auto" || format == "" {
		format = "json"
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "console"
		}
	}
	var zc zap.Config
	if format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		zc.Development = false
		zc.DisableStacktrace = true
	} else {
		zc = zap.NewProductionConfig()
		zc.EncoderConfig.TimeKey = "time"
		zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
		zc.Sampling = nil
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	return zc.Build()
}
