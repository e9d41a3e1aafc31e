package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/export"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/prune"
	"github.com/walscribe/walscribe/query"
	"github.com/walscribe/walscribe/retention"
	"github.com/walscribe/walscribe/sink"
)

func newCleanupCmd(g *globals) *cobra.Command {
	var dryRun bool
	var tables []string
	var olderThan string
	cmd := &cobra.Command{
		Use:   "cleanup [--dry-run] [--table T]... [--older-than 30d]",
		Short: "Remove expired entries from the audit trail, on the record",
		Long: `cleanup removes the entries whose retention period has passed: each month of
one retention class (the period stamped on its entries when written, from
tables[i].retention or retention.default) goes whole once the period has passed
since the month's end, its partition dropped; rows are deleted, in batches of
retention.delete_batch, only where a partition cannot go whole (a table held or
now kept longer than the partition's class, a table whose period was shortened
since). Tables under a legal hold (retention.holds) keep everything.

--table T (repeatable, patterns allowed) with --older-than 30d instead deletes the
entries of those tables committed more than that long ago, whatever their period.

Every removal is on the record: an entry of action pruned in the trail, and a row
of the audit schema's prunes table with the ids removed; with the integrity log, a
prune record signed with the log's key, which walscribe verify accepts the holes
from. --dry-run shows what would go, and removes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			var o retention.Options
			switch {
			case olderThan != "" && len(tables) == 0:
				return errors.New("--older-than needs the tables it applies to: --table public.sessions (patterns allowed, *.* for every table)")
			case olderThan == "" && len(tables) > 0:
				return errors.New("--table needs --older-than: how old the entries removed are, e.g. --older-than 90d")
			case olderThan != "":
				if err := config.CheckPeriod(olderThan); err != nil {
					return fmt.Errorf("--older-than: %w", err)
				}
				o = retention.Options{Tables: tables, OlderThan: olderThan}
			}
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			_, err = cleanup(cmd.Context(), c, log, o, dryRun, cmd.OutOrStdout())
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "show what would be removed, and remove nothing")
	f.StringSliceVar(&tables, "table", nil, "remove entries of this table (schema.table, patterns allowed) older than --older-than")
	f.StringVar(&olderThan, "older-than", "", "with --table: the age of the entries removed, e.g. 30d, 12w, 6m, 1y")
	return cmd
}

// cleanup plans a cleanup of the configuration's trail, prints the plan to
// out and, unless dryRun, carries it out, printing each removal. It returns
// the entries removed. One cleanup runs at a time per audit schema.
func cleanup(ctx context.Context, c *config.Config, log *zap.Logger, o retention.Options, dryRun bool, out io.Writer) (int64, error) {
	rs, err := rulesFromConfig(c)
	if err != nil {
		return 0, err
	}
	pol := retention.Policy{Holds: c.Retention.Holds, Period: func(schema, table string) string {
		if t, ok := rs.For(schema, table); ok {
			return t.Retention
		}
		return c.Retention.Default
	}}
	conn, err := pg.Connect(ctx, c.SinkDSN(), "walscribe cleanup")
	if err != nil {
		return 0, fmt.Errorf("connect to the sink: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('walscribe.retention.' || $1))`, c.Sink.Schema).Scan(&locked); err != nil {
		return 0, fmt.Errorf("take the cleanup lock: %w", err)
	}
	if !locked {
		return 0, fmt.Errorf("another cleanup of schema %q is running (walscribe run with retention.schedule, or walscribe cleanup): try again once it is done", c.Sink.Schema)
	}
	schema := pgx.Identifier{c.Sink.Schema}.Sanitize()
	plan, err := retention.Make(ctx, conn, schema, pol, time.Now(), o)
	if err != nil {
		return 0, err
	}
	printPlan(out, plan, dryRun)
	if dryRun || len(plan.Steps) == 0 {
		return 0, nil
	}
	_, scfg, err := daemonConfig(c)
	if err != nil {
		return 0, err
	}
	s := sink.NewPostgres(scfg, log)
	if err := s.Open(ctx); err != nil {
		return 0, err
	}
	defer s.Close(context.WithoutCancel(ctx))
	began := time.Now()
	// On a terminal, a bar of the entries removed; the lines of each
	// removal go above it.
	var bar *mpb.Bar
	var progress *mpb.Progress
	terminal := out
	if isTerminal(out) {
		progress = mpb.New(mpb.WithOutput(out), mpb.WithRefreshRate(200*time.Millisecond))
		bar = progress.AddBar(plan.Entries(), mpb.PrependDecorators(decor.Name("cleanup "), decor.CountersNoUnit("%d / %d")),
			mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.AverageETA(decor.ET_STYLE_GO)))
		out = progress
	}
	removed, err := retention.Execute(ctx, plan, func(ctx context.Context, scope prune.Scope, limit int) (int64, error) {
		var expect func(prune.IDs) error
		if scope.Leaf != "" && c.Retention.Archive {
			shard, err := archive(ctx, c, log, scope, plannedEntries(plan, scope), out)
			if err != nil {
				return 0, err
			}
			// What goes is what was archived: entries that came in since
			// (a backlog replayed) keep the partition until the next run
			// archives them too.
			expect = func(ids prune.IDs) error {
				if shard == nil || ids.Count() != shard.Entries || ids[0].First != shard.FirstID || ids[len(ids)-1].Last != shard.LastID {
					return fmt.Errorf("partition %s holds other entries than its archive: it stays until the next cleanup archives it again", scope.Leaf)
				}
				return nil
			}
		}
		p, err := s.Prune(ctx, scope, limit, expect)
		if err != nil {
			return 0, err
		}
		if bar != nil {
			bar.IncrInt64(p.Entries)
		}
		if p.Entries > 0 {
			fmt.Fprintf(out, "removed %d entries: %s (recorded as entry %d)\n", p.Entries, scope, p.Entry)
			// Logged for the daemon's scheduled cleanups, which print
			// nothing; a command prints the line above.
			level := zap.DebugLevel
			if out == io.Discard {
				level = zap.InfoLevel
			}
			log.Log(level, "retention: entries removed", zap.Int64("entries", p.Entries), zap.String("scope", scope.JSON()), zap.Int64("entry", p.Entry))
		}
		return p.Entries, nil
	}, c.Retention.DeleteBatch, nil)
	if progress != nil {
		bar.SetTotal(-1, true)
		progress.Wait()
		out = terminal
	}
	fmt.Fprintf(out, "%d entries removed in %s\n", removed, time.Since(began).Round(time.Millisecond))
	return removed, err
}

// archive exports the partition scope names (retention.archive) before
// it is dropped, as the export archive-<partition>-<entries>, unless that
// export succeeded already, and returns its archive (nil: the partition is
// empty).
func archive(ctx context.Context, c *config.Config, log *zap.Logger, scope prune.Scope, entries int64, out io.Writer) (*export.Shard, error) {
	month, err := time.Parse("2006-01", scope.Month)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", scope.Leaf, err)
	}
	req := export.Request{ID: fmt.Sprintf("archive-%s-%d", scope.Leaf, entries), Format: c.Export.Format,
		Filter: query.Filter{Since: month, Until: month.AddDate(0, 1, 0), Classes: []string{scope.Class}}}
	rec, ok, err := findExport(ctx, c, req.ID)
	if err != nil {
		return nil, err
	}
	var shards []export.Shard
	if ok && rec.State == export.Succeeded {
		if err := json.Unmarshal(rec.Shards, &shards); err != nil {
			return nil, fmt.Errorf("archive %s: the export %s: %w", scope.Leaf, req.ID, err)
		}
	} else {
		res, err := runExport(ctx, c, log, req, c.Export.To, "walscribe cleanup (retention.archive)", io.Discard)
		if err != nil {
			return nil, fmt.Errorf("archive %s before it is dropped (it stays): %w", scope.Leaf, err)
		}
		fmt.Fprintf(out, "archived %d entries of %s to %s (export %s)\n", res.Entries, scope.Leaf, c.Export.To, res.ID)
		shards = res.Shards
	}
	if len(shards) != 1 {
		return nil, nil
	}
	return &shards[0], nil
}

// plannedEntries is how many entries the plan says scope removes.
func plannedEntries(plan *retention.Plan, scope prune.Scope) int64 {
	for _, s := range plan.Steps {
		if s.Scope.Leaf == scope.Leaf && s.Scope.Schema == scope.Schema && s.Scope.Table == scope.Table {
			return s.Entries
		}
	}
	return 0
}

// printPlan prints what a cleanup removes.
func printPlan(out io.Writer, plan *retention.Plan, dryRun bool) {
	verb := "go"
	if dryRun {
		verb = "would go (dry run: nothing is removed)"
	}
	fmt.Fprintf(out, "%d entries %s\n", plan.Entries(), verb)
	if len(plan.Steps) > 0 {
		fmt.Fprintln(out)
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "entries\thow\toldest\tnewest\tof what")
		for _, s := range plan.Steps {
			how := "delete"
			if s.Drop {
				how = "drop"
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", s.Entries, how, s.Oldest.UTC().Format(time.DateTime), s.Newest.UTC().Format(time.DateTime),
				strings.ReplaceAll(s.Scope.String()+" — "+s.Scope.Reason, "\t", " "))
		}
		w.Flush()
	}
	for _, h := range plan.Held {
		fmt.Fprintf(out, "held (retention.holds): %d expired entries of %q.%q stay\n", h.Entries, h.Schema, h.Table)
	}
}
