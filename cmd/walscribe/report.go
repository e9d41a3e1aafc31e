package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/query"
)

// filterFlags are the flags that select entries, the same for report and
// export.
type filterFlags struct {
	days              int
	since, until      string
	tables, actions   []string
	actorID, actor    string
	requestID, dbUser string
	ip, pk, changed   string
	xid               int64
}

func (ff *filterFlags) add(f *pflag.FlagSet) {
	f.IntVar(&ff.days, "days", 0, "the last N days (default 7 without --since)")
	f.StringVar(&ff.since, "since", "", "from this time on (RFC 3339, or YYYY-MM-DD, UTC)")
	f.StringVar(&ff.until, "until", "", "up to this time, excluded (default now)")
	f.StringSliceVar(&ff.tables, "table", nil, "only this table (schema.table; repeatable)")
	f.StringSliceVar(&ff.actions, "action", nil, "only this action: insert, update, delete, truncate, or an event (repeatable)")
	f.StringVar(&ff.actorID, "actor", "", "only entries of this actor id")
	f.StringVar(&ff.actor, "actor-name", "", "only entries of this actor name")
	f.StringVar(&ff.requestID, "request", "", "only entries of this request id")
	f.StringVar(&ff.dbUser, "db-user", "", "only entries written by this database role")
	f.StringVar(&ff.ip, "ip", "", "only entries from this address or network (10.0.0.0/8)")
	f.StringVar(&ff.pk, "pk", "", `only entries of the row with this key, as JSON: '{"id": 42}'`)
	f.StringVar(&ff.changed, "changed", "", "only updates that changed this column")
	f.Int64Var(&ff.xid, "xid", 0, "only entries of this source transaction id")
}

// given reports whether any filter flag was given to cmd.
func (ff *filterFlags) given(cmd *cobra.Command) bool {
	for _, name := range []string{"days", "since", "until", "table", "action", "actor", "actor-name", "request", "db-user", "ip", "pk", "changed", "xid"} {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// filter is the filter the flags select, at time now.
func (ff *filterFlags) filter(now time.Time) (query.Filter, error) {
	f := query.Filter{Tables: ff.tables, Actions: ff.actions, ActorID: ff.actorID, Actor: ff.actor, RequestID: ff.requestID,
		DBUser: ff.dbUser, IP: ff.ip, PK: ff.pk, Changed: ff.changed, Xid: ff.xid}
	parse := func(flag, s string) (time.Time, error) {
		for _, layout := range []string{time.RFC3339Nano, time.DateTime, time.DateOnly} {
			if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("--%s %q: write a time as 2026-12-01, 2026-12-01 08:00:00 or 2026-12-01T08:00:00Z", flag, s)
	}
	switch {
	case ff.days != 0 && (ff.since != "" || ff.until != ""):
		return f, errors.New("--days or --since/--until, not both")
	case ff.days < 0 || ff.days > 36500:
		return f, errors.New("--days: a number of days from 1 to 36500")
	case ff.since != "":
		var err error
		if f.Since, err = parse("since", ff.since); err != nil {
			return f, err
		}
		f.Until = now.Add(time.Second)
		if ff.until != "" {
			if f.Until, err = parse("until", ff.until); err != nil {
				return f, err
			}
		}
	case ff.until != "":
		return f, errors.New("--until needs --since")
	default:
		f = withWindow(f, query.Days(cmp.Or(ff.days, 7), now))
	}
	return f, f.Check()
}

func withWindow(f, w query.Filter) query.Filter {
	f.Since, f.Until = w.Since, w.Until
	return f
}

func newReportCmd(g *globals) *cobra.Command {
	var ff filterFlags
	var format, output, dsn string
	var top int
	cmd := &cobra.Command{
		Use:   "report [--days N | --since T [--until T]] [filters] [--format table|csv|json] [--output FILE]",
		Short: "Summarize the audit trail, or write the entries a filter selects as CSV or JSON",
		Long: `report reads the audit trail (the configuration's sink, or --dsn; a role that may read
the audit schema is enough, walscribe_reader). --format table (the default) prints a
summary of the entries the filters select: by action (changes and events), by table,
top actors, by day. --format csv or json writes every one of those entries instead
(json: one object per line), with every stored column, to --output or stdout.

In CSV, a cell that starts with =, +, -, @, a tab or a carriage return is written after
a single quote, so that a spreadsheet does not run it as a formula.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			if top < 1 {
				return errors.New("--top: 1 or more")
			}
			schema := "audit"
			if dsn == "" {
				c, err := g.load()
				if err != nil {
					return fmt.Errorf("%w (or give --dsn)", err)
				}
				dsn, schema = c.SinkDSN(), c.Sink.Schema
			}
			conn, err := pg.Connect(ctx, dsn, "walscribe report")
			if err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			defer conn.Close(ctx)
			quoted := pgx.Identifier{schema}.Sanitize()
			out := cmd.OutOrStdout()
			if output != "" {
				// Audit data: readable by its owner only.
				file, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer file.Close()
				out = file
			}
			bw := bufio.NewWriterSize(out, 256<<10)
			var n int64
			progress, done := newCountProgress(cmd.ErrOrStderr(), output != "", "report")
			switch format {
			case "table":
				s, err := query.Summarize(ctx, conn, quoted, f, top)
				if err != nil {
					return err
				}
				if err := s.WriteText(bw); err != nil {
					return err
				}
			case "summary-json":
				s, err := query.Summarize(ctx, conn, quoted, f, top)
				if err != nil {
					return err
				}
				if err := json.NewEncoder(bw).Encode(s); err != nil {
					return err
				}
			case "csv":
				n, err = query.WriteCSV(ctx, conn, quoted, f, bw, progress)
			case "json":
				n, err = query.WriteJSON(ctx, conn, quoted, f, bw, progress)
			default:
				return fmt.Errorf("--format %q: table, summary-json, csv or json", format)
			}
			done(n)
			if err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if output != "" {
				return closeFile(out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	ff.add(f)
	f.StringVar(&format, "format", "table", "table (a summary), summary-json, csv or json (every entry)")
	f.StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	f.StringVar(&dsn, "dsn", "", "the database holding the audit schema (default: the configuration's sink)")
	f.IntVar(&top, "top", 20, "tables and actors in the summary")
	return cmd
}

// closeFile closes a file written, reporting a failure to write it out.
func closeFile(w io.Writer) error {
	if f, ok := w.(*os.File); ok {
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	}
	return nil
}
