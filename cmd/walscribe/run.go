package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/daemon"
	"github.com/walscribe/walscribe/daily"
	"github.com/walscribe/walscribe/decoder"
	"github.com/walscribe/walscribe/export"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/query"
	"github.com/walscribe/walscribe/retention"
	"github.com/walscribe/walscribe/sink"
	"github.com/walscribe/walscribe/spool"
	"github.com/walscribe/walscribe/watch"
)

func newRunCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Stream changes into the audit trail until stopped (SIGINT/SIGTERM drain and exit; SIGHUP reloads the rules)",
		Long: `run streams the replication slot into the audit schema until SIGINT or SIGTERM,
which store what was received, acknowledge it and exit.

SIGHUP reloads the configuration file's per-table rules (columns excluded and
masked, diff, actions, the masking secret) without a restart: they apply from the
next transaction, and the rules in force are recorded in the audit schema's rules
table with the position they apply from. A file with errors is refused, and the
rules in force stay. Tables to add to or remove from the publication need
` + "`walscribe setup`" + ` (tables created later that match a pattern are added by itself).`,
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
			rs, err := rulesFromConfig(c)
			if err != nil {
				return err
			}
			log.Info("walscribe starting", zap.String("version", version), zap.Any("config", c.Redacted()))
			// The checks of config check, as warnings: the daemon runs
			// anyway, and records what it can.
			ictx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			if rep, err := inspect(ictx, c); err == nil {
				for _, p := range append(rep.Problems, rep.Warnings...) {
					log.Warn("configuration: " + p)
				}
			}
			cancel()
			cfg, sinkCfg, err := daemonConfig(c)
			if err != nil {
				return err
			}
			cfg.Rules = rs
			reg := prometheus.NewRegistry()
			cfg.Metrics = metrics.New(reg, version)
			sinkCfg.Metrics = cfg.Metrics
			// Watches see each batch once it is stored; their alerts go
			// into the trail through a sink of their own (the daemon's
			// is its writer goroutine's alone).
			var watches *watch.Evaluator
			if len(c.Watches) > 0 {
				recCfg := sinkCfg
				recCfg.Metrics = nil
				recorder := sink.NewPostgres(recCfg, log.Named("watch"))
				defer recorder.Close(context.WithoutCancel(cmd.Context()))
				if watches, err = watch.New(watch.Config{Rules: c.Watches, QueueSize: c.Watch.QueueSize, WebhookSecret: c.Watch.WebhookSecret},
					watch.Deps{Log: log, Registerer: reg, Recorder: recorder}); err != nil {
					return err
				}
				sinkCfg.Stored = watches.Observe
			}
			d := daemon.New(cfg, sink.NewPostgres(sinkCfg, log), log)
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			if c.HTTP.Listen != "" {
				ln, err := net.Listen("tcp", c.HTTP.Listen)
				if err != nil {
					return fmt.Errorf("http.listen %s: %w (choose another address, or \"\" for no HTTP server)", c.HTTP.Listen, err)
				}
				go serveHTTP(ctx, ln, newHTTP(reg, d, c.HTTP.Pprof), log)
			}
			if c.API.Listen != "" {
				served := make(chan struct{})
				go func() {
					defer close(served)
					serveAPIBeside(ctx, c, log, reg)
				}()
				// The API drains its requests before the daemon's end.
				defer func() { stop(); <-served }()
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go reloadOnHangup(ctx, hup, g, d, log)
			if c.Retention.Schedule > 0 {
				go expireOnSchedule(ctx, g, c, cfg.Metrics, log)
			}
			go countDaily(ctx, c, d, log)
			if c.Export.Schedule == "daily" {
				go exportDaily(ctx, c, d, cfg.Metrics, log)
			}
			if watches != nil {
				if err := watches.Open(ctx); err != nil {
					return err
				}
			}
			runErr := d.Run(ctx)
			if watches != nil {
				// The daemon has stored what it will: deliver the alerts
				// still queued, for a while.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 10*time.Second)
				if err := watches.Close(cctx); err != nil {
					log.Warn("watch: alerts left undelivered at shutdown", zap.Error(err))
				}
				cancel()
			}
			if runErr != nil {
				logStop(log, runErr)
				return loggedError{runErr}
			}
			return nil
		},
	}
}

// serveAPIBeside serves the API and the UI from walscribe run until ctx
// is done. A problem of the API's (its database down, its port taken)
// never stops the capture: it is logged, and tried again a minute later.
func serveAPIBeside(ctx context.Context, c *config.Config, log *zap.Logger, reg prometheus.Registerer) {
	for {
		err := func() error {
			srv, err := openAPI(ctx, c, log, reg)
			if err != nil {
				return err
			}
			defer srv.Close()
			ln, err := net.Listen("tcp", c.API.Listen)
			if err != nil {
				return fmt.Errorf("api.listen %s: %w (choose another address, or \"\" for no API)", c.API.Listen, err)
			}
			return serveAPI(ctx, ln, srv.handler, c, log)
		}()
		if ctx.Err() != nil {
			return
		}
		log.Error("the API is not served; the daemon goes on, and the API is tried again in a minute", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

// expireOnSchedule runs a cleanup every retention.schedule (the first
// shortly after the start) until ctx is done, each with the configuration
// file as it is then (holds and periods change without a restart; a file
// with errors leaves the last good one in force). A failed cleanup is
// logged and counted; the next one tries again.
func expireOnSchedule(ctx context.Context, g *globals, c *config.Config, m *metrics.Metrics, log *zap.Logger) {
	wait := 5 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if fresh, err := g.load(); err == nil {
			c = fresh
		} else {
			log.Warn("retention: the configuration file has errors; the cleanup keeps the last good one", zap.Error(err))
		}
		wait = c.Retention.Schedule
		if wait <= 0 {
			wait = time.Hour // turned off since: checked again in an hour
			continue
		}
		removed, err := cleanup(ctx, c, log, retention.Options{}, false, io.Discard)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.Errors.WithLabelValues("retention").Inc()
			log.Error("retention: the scheduled cleanup failed; the next one tries again", zap.Error(err), zap.Duration("in", wait))
			continue
		}
		m.RetentionRemoved.Add(float64(removed))
		log.Info("retention: scheduled cleanup done", zap.Int64("entries_removed", removed), zap.Duration("next_in", wait))
	}
}

// exportDaily ships each UTC day to export.to as the export
// daily-YYYY-MM-DD, once: every 10 minutes (the first time shortly after
// the start) it exports the days since the newest daily export that
// succeeded (yesterday at first; at most 31 days back), each once the
// daemon has stored everything committed in it (storedThrough) — so that a
// day is exported whole, also after a restart with a backlog, and on a
// source that is never idle.
func exportDaily(ctx context.Context, c *config.Config, d *daemon.Daemon, m *metrics.Metrics, log *zap.Logger) {
	wait := 5 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = 10 * time.Minute
		today := time.Now().UTC().Truncate(24 * time.Hour)
		days, err := pendingDays(ctx, c, today)
		if err != nil {
			log.Warn("export: the history could not be read; trying again later", zap.Error(err))
			continue
		}
		if len(days) == 0 {
			continue
		}
		through, err := exportThrough(ctx, c, d)
		if err != nil {
			log.Warn("export: the source's position could not be read; trying again later", zap.Error(err))
			continue
		}
		for _, day := range days {
			if day.AddDate(0, 0, 1).After(through.Add(-time.Minute)) {
				break // not all of it is stored yet
			}
			req := export.Request{ID: "daily-" + day.Format(time.DateOnly), Format: c.Export.Format,
				Filter: query.Filter{Since: day, Until: day.AddDate(0, 0, 1)}}
			res, err := runExport(ctx, c, log, req, c.Export.To, "walscribe run (export.schedule)", io.Discard)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				m.Errors.WithLabelValues("export").Inc()
				log.Error("export: a daily export failed; it is tried again in 10 minutes", zap.String("export_id", req.ID), zap.Error(err))
				break
			}
			log.Info("export: a daily export is done", zap.String("export_id", res.ID), zap.Int64("entries", res.Entries), zap.String("destination", c.Export.To))
		}
	}
}

// countDaily keeps the daily counts that summaries read: every 10 minutes
// (the first time shortly after the start), once the daemon has stored
// everything committed before the check, it counts the days before today
// that are not counted yet (a purge forgets the days it touched), oldest
// first, at most 31 at a time, back to the trail's first entry or 400
// days.
func countDaily(ctx context.Context, c *config.Config, d *daemon.Daemon, log *zap.Logger) {
	log = log.Named("daily")
	wait := 30 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = 10 * time.Minute
		if n, err := countDays(ctx, c, d); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("the daily counts could not be brought up to date; summaries read the entries meanwhile (run walscribe setup if this says permission denied)", zap.Error(err))
		} else if n > 0 {
			log.Info("daily counts brought up to date", zap.Int("days", n))
			wait = 10 * time.Second // more to count, perhaps
		}
	}
}

func countDays(ctx context.Context, c *config.Config, d *daemon.Daemon) (int, error) {
	conn, err := pg.Connect(ctx, c.SinkDSN(), pg.AppSink)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	schema := pgx.Identifier{c.Sink.Schema}.Sanitize()
	through, err := storedThrough(ctx, c, d, conn)
	if err != nil {
		return 0, err
	}
	before := through.Add(-time.Minute).UTC().Truncate(24 * time.Hour) // the first day not to count
	from := before.AddDate(0, 0, -400)
	var first *time.Time
	if err := conn.QueryRow(ctx, `SELECT min(committed_at) FROM (SELECT committed_at FROM `+schema+`.entries ORDER BY id LIMIT 1) f`).Scan(&first); err != nil {
		return 0, err
	}
	if first == nil {
		return 0, nil
	}
	if f := first.UTC().Truncate(24 * time.Hour); f.After(from) {
		from = f
	}
	if !from.Before(before) {
		return 0, nil
	}
	days, err := daily.Uncounted(ctx, conn, schema, from, before, 31)
	if err != nil {
		return 0, err
	}
	n := 0
	var failed error
	for _, day := range days {
		// A day that cannot be counted (a statement timeout on a huge
		// one) does not hold back the others; it is tried again next time.
		if _, err := daily.Count(ctx, conn, schema, day); err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			failed = err
			continue
		}
		n++
	}
	return n, failed
}

// storedThrough is a time before which every transaction committed is
// stored: the commit time of the newest transaction stored (the source's
// clock; transactions are stored in commit order) — or, when that is before
// today and the daemon has stored everything the source had written when
// asked, the source's time then. Commit times are taken just before the
// commit is written, a little out of order: use it with a minute's margin.
func storedThrough(ctx context.Context, c *config.Config, d *daemon.Daemon, conn *pgx.Conn) (time.Time, error) {
	var through time.Time
	var stored *time.Time
	if err := conn.QueryRow(ctx, `SELECT committed_at FROM `+pgx.Identifier{c.Sink.Schema}.Sanitize()+`.checkpoints WHERE slot = $1 ORDER BY end_lsn DESC LIMIT 1`,
		c.Source.Slot).Scan(&stored); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return through, err
	}
	if stored != nil {
		through = *stored
	}
	if through.Add(-time.Minute).Before(time.Now().UTC().Truncate(24 * time.Hour)) {
		// An idle source: nothing newer to store, perhaps.
		at, ok, err := caughtUpAt(ctx, c, d)
		if err != nil {
			return through, err
		}
		if ok && at.After(through) {
			through = at
		}
	}
	return through, nil
}

// caughtUpAt is the source's time at a moment the daemon then stored
// everything the source had written (waiting up to a minute for it), and
// whether it did.
func caughtUpAt(ctx context.Context, c *config.Config, d *daemon.Daemon) (time.Time, bool, error) {
	conn, err := pg.Connect(ctx, c.Source.DSN, pg.AppTool)
	if err != nil {
		return time.Time{}, false, err
	}
	var target pglogrepl.LSN
	var at time.Time
	err = conn.QueryRow(ctx, `SELECT pg_current_wal_lsn(), now()`).Scan(&target, &at)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return time.Time{}, false, err
	}
	for range 60 {
		if d.StoredThrough(target) {
			return at, true, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return time.Time{}, false, nil
}

// pendingDays are the days (UTC midnights) before today whose daily export
// is due: those after the newest that succeeded, at most 31.
func pendingDays(ctx context.Context, c *config.Config, today time.Time) ([]time.Time, error) {
	conn, err := pg.Connect(ctx, c.SinkDSN(), "walscribe export")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var newest *string
	if err := conn.QueryRow(ctx, `SELECT max(export_id) FROM `+pgx.Identifier{c.Sink.Schema}.Sanitize()+`.exports
		WHERE state = 'succeeded' AND export_id LIKE 'daily-____-__-__'`).Scan(&newest); err != nil {
		return nil, err
	}
	from := today.AddDate(0, 0, -1)
	if newest != nil {
		if done, err := time.Parse(time.DateOnly, strings.TrimPrefix(*newest, "daily-")); err == nil {
			from = done.AddDate(0, 0, 1)
		}
	}
	from = later(from, today.AddDate(0, 0, -31))
	var days []time.Time
	for day := from; day.Before(today); day = day.AddDate(0, 0, 1) {
		days = append(days, day)
	}
	return days, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// exportThrough is storedThrough, on a connection of its own.
func exportThrough(ctx context.Context, c *config.Config, d *daemon.Daemon) (time.Time, error) {
	conn, err := pg.Connect(ctx, c.SinkDSN(), "walscribe export")
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return storedThrough(ctx, c, d, conn)
}

// reloadOnHangup reloads the rules on each SIGHUP until ctx is done.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, g *globals, d *daemon.Daemon, log *zap.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		c, err := g.load()
		if err == nil {
			rs, rerr := rulesFromConfig(c)
			if rerr == nil {
				d.Reload(rs)
				log.Info("configuration reloaded: the new rules apply from the next transaction")
				continue
			}
			err = rerr
		}
		log.Error("configuration not reloaded: the rules in force stay", zap.Error(err))
	}
}

func daemonConfig(c *config.Config) (daemon.Config, sink.Config, error) {
	var integrity *sink.IntegrityConfig
	signer, err := c.Signer()
	if err != nil {
		return daemon.Config{}, sink.Config{}, fmt.Errorf("integrity: %w", err)
	}
	if signer != nil {
		integrity = &sink.IntegrityConfig{Signer: signer, Interval: c.Integrity.CheckpointInterval, Dir: c.Integrity.CheckpointDir,
			LeafHashing: c.Integrity.LeafHashing}
	}
	return daemon.Config{
			SourceDSN:      c.Source.DSN,
			Slot:           c.Source.Slot,
			Publication:    c.Source.Publication,
			BridgeSchema:   c.Sink.Schema,
			StatusInterval: c.Source.StatusInterval,
			Spool:          spool.Config{Dir: c.Spool.Dir, TxnMemory: int64(c.Spool.TxnMemory)},
			Limits: decoder.Limits{ContextField: int(c.Context.MaxFieldBytes), ContextJSON: int(c.Context.MaxJSONBytes),
				EventData: int(c.Context.MaxEventBytes)},
			RecreateLostSlot: c.Source.RecreateLostSlot,
		}, sink.Config{
			DSN:             c.SinkDSN(),
			Schema:          c.Sink.Schema,
			Slot:            c.Source.Slot,
			BatchMaxEntries: c.Sink.BatchMaxEntries,
			BatchMaxWait:    c.Sink.BatchMaxWait,
			Integrity:       integrity,
			Classes:         c.RetentionClasses(),
		}, nil
}

// logStop logs why the daemon stopped as a log record, with the WAL
// position and table of a message it could not decode.
func logStop(log *zap.Logger, err error) {
	fields := []zap.Field{zap.Error(err)}
	if de := (*daemon.DecodeError)(nil); errors.As(err, &de) {
		fields = append(fields, zap.Stringer("lsn", de.LSN))
		if de.Table != "" {
			fields = append(fields, zap.String("table", de.Table))
		}
	}
	log.Error("walscribe stopped", fields...)
}

// loggedError is an error already logged as a record: main exits with it
// without printing it again.
type loggedError struct{ err error }

func (e loggedError) Error() string { return e.err.Error() }
func (e loggedError) Unwrap() error { return e.err }
