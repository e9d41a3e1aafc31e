package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/export"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/query"
	"github.com/walscribe/walscribe/sink"
)

func newExportCmd(g *globals) *cobra.Command {
	var ff filterFlags
	var format, to, id string
	cmd := &cobra.Command{
		Use:   "export [filters] [--format jsonl|csv] [--to DIR | --to s3://bucket/prefix] [--id ID]",
		Short: "Write the entries a filter selects as ZIP archives to a directory or S3, on the record",
		Long: `export reads the entries the filters select (as walscribe report does) in one snapshot
and writes one ZIP archive per month they cover — ID/YYYY-MM.zip, each holding
entries.jsonl (or .csv) and a manifest.json: the filter, the id range, the rows, the
SHA-256 of the file, and the newest signed checkpoint of the integrity log — then
ID/manifest.json listing the archives, each file with a sidecar FILE.sha256. --to is a
directory or s3://bucket/prefix (default export.to; export.s3.* says how to reach
the store, credentials from the environment).

Every export is in the audit schema's exports table (queued, running, succeeded or
failed, with who asked, the filter, the destination, rows, bytes and hashes) and, once
done, an entry of action exported in the trail. walscribe export --id ID, without
filters, runs export ID again with the filter, format and destination it was given:
the archives stored whole (and still of the same entries) are kept, so a failed
export is resumed. An id is never reused for another filter.

  walscribe export list             the history
  walscribe export url ID           links to download an export's archives`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			req := export.Request{ID: id, Format: cmp.Or(format, c.Export.Format)}
			dest := cmp.Or(to, c.Export.To)
			if id == "" {
				req.ID = newExportID()
			} else if rec, ok, err := findExport(cmd.Context(), c, id); err != nil {
				return err
			} else if ok && !ff.given(cmd) && format == "" && to == "" {
				// The same export again: what it was asked to do.
				if err := json.Unmarshal(rec.Filter, &req.Filter); err != nil {
					return fmt.Errorf("export %s: its recorded filter: %w", id, err)
				}
				req.Format, dest = rec.Format, rec.Destination
				fmt.Fprintf(cmd.ErrOrStderr(), "export %s again (it %s): the filter, format and destination it was given\n", id, rec.State)
			}
			if req.Filter.Since.IsZero() {
				if req.Filter, err = ff.filter(time.Now()); err != nil {
					return err
				}
			}
			res, err := runExport(cmd.Context(), c, log, req, dest, requester(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "export %s: %d entries in %d archives, %d bytes, to %s\n", res.ID, res.Entries, len(res.Shards), res.Bytes, cmp.Or(to, c.Export.To))
			for _, s := range res.Shards {
				state := ""
				if s.Resumed {
					state = " (stored already)"
				}
				fmt.Fprintf(out, "  %s  %d entries  sha256 %s%s\n", s.Key, s.Entries, s.SHA256, state)
			}
			fmt.Fprintf(out, "  %s\n", res.Manifest)
			return nil
		},
	}
	fl := cmd.Flags()
	ff.add(fl)
	fl.StringVar(&format, "format", "", "jsonl or csv (default export.format)")
	fl.StringVar(&to, "to", "", "a directory, or s3://bucket/prefix (default export.to)")
	fl.StringVar(&id, "id", "", "the export's id, which names its folder (default: the time and a random suffix); an id alone resumes that export")
	cmd.AddCommand(newExportListCmd(g), newExportURLCmd(g))
	return cmd
}

// newExportID is an export id from the time and a random suffix.
func newExportID() string {
	var b [3]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// requester says who runs this command.
func requester() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "walscribe export, " + name + "@" + host
}

func s3Config(c *config.Config) export.S3Config {
	s := c.Export.S3
	return export.S3Config{Endpoint: s.Endpoint, Region: s.Region, AccessKey: s.AccessKey, SecretKey: s.SecretKey,
		Insecure: s.Insecure, PartSize: uint64(s.PartSize)}
}

// runExport runs one export, keeping its history, and records it in the
// trail once done. Progress goes to progressOut. One run of an export id
// at a time; an id given another filter or format before is refused.
func runExport(ctx context.Context, c *config.Config, log *zap.Logger, req export.Request, to, requester string, progressOut io.Writer) (*export.Result, error) {
	dest, err := export.Open(to, s3Config(c))
	if err != nil {
		return nil, err
	}
	if err := export.CheckID(req.ID); err != nil {
		return nil, err
	}
	// The history has a connection of its own: an export cancelled while
	// reading takes its connection down with it, and the failure must
	// still be recorded.
	hist, err := pg.Connect(ctx, c.SinkDSN(), "walscribe export")
	if err != nil {
		return nil, fmt.Errorf("connect to the sink: %w", err)
	}
	defer hist.Close(context.WithoutCancel(ctx))
	schema := pgx.Identifier{c.Sink.Schema}.Sanitize()
	var locked bool
	if err := hist.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('walscribe.export.' || $1 || '.' || $2))`, c.Sink.Schema, req.ID).Scan(&locked); err != nil {
		return nil, fmt.Errorf("take the export's lock: %w", err)
	}
	if !locked {
		return nil, fmt.Errorf("export %s is running elsewhere: try again once it is done", req.ID)
	}
	if err := export.SameRequest(ctx, hist, schema, req, dest); err != nil {
		return nil, err
	}
	for _, state := range []string{export.Queued, export.Running} {
		if err := export.Log(ctx, hist, schema, state, requester, req, dest, nil, nil); err != nil {
			return nil, err
		}
	}
	res, err := exportAndRecord(ctx, c, log, req, dest, requester, progressOut)
	if err != nil {
		if lerr := export.Log(context.WithoutCancel(ctx), hist, schema, export.Failed, requester, req, dest, nil, err); lerr != nil {
			log.Error("export: the failure could not be recorded", zap.Error(lerr))
		}
		return nil, err
	}
	if err := export.Log(ctx, hist, schema, export.Succeeded, requester, req, dest, res, nil); err != nil {
		return nil, err
	}
	log.Debug("export done", zap.String("export_id", res.ID), zap.Int64("entries", res.Entries), zap.String("destination", dest.String()))
	return res, nil
}

// exportAndRecord runs the export, then records it in the trail (an entry
// of action exported): an export is done once both are.
func exportAndRecord(ctx context.Context, c *config.Config, log *zap.Logger, req export.Request, dest export.Destination, requester string, progressOut io.Writer) (*export.Result, error) {
	conn, err := pg.Connect(ctx, c.SinkDSN(), "walscribe export")
	if err != nil {
		return nil, fmt.Errorf("connect to the sink: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	step, done := newCountProgress(progressOut, true, "export")
	res, err := export.Run(ctx, conn, pgx.Identifier{c.Sink.Schema}.Sanitize(), dest, req, step)
	if res != nil {
		done(res.Entries)
	} else {
		done(0)
	}
	if err != nil {
		return nil, err
	}
	_, scfg, err := daemonConfig(c)
	if err != nil {
		return nil, err
	}
	s := sink.NewPostgres(scfg, log)
	if err := s.Open(ctx); err != nil {
		return nil, fmt.Errorf("record the export in the trail: %w", err)
	}
	defer s.Close(context.WithoutCancel(ctx))
	if _, err := s.Record(ctx, "export", "exported", map[string]any{"export_id": res.ID, "requester": requester,
		"destination": dest.String(), "filter": req.Filter, "format": req.Format, "entries": res.Entries, "bytes": res.Bytes,
		"shards": res.Shards}); err != nil {
		return nil, fmt.Errorf("record the export in the trail: %w", err)
	}
	return res, nil
}

// findExport is the newest state of export id in the history.
func findExport(ctx context.Context, c *config.Config, id string) (export.Record, bool, error) {
	conn, err := pg.Connect(ctx, c.SinkDSN(), "walscribe export")
	if err != nil {
		return export.Record{}, false, fmt.Errorf("connect to the sink: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return export.Find(ctx, conn, pgx.Identifier{c.Sink.Schema}.Sanitize(), id)
}

func newExportListCmd(g *globals) *cobra.Command {
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--limit N] [--json]",
		Short: "Show the export history: each export's newest state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			conn, err := pg.Connect(cmd.Context(), c.SinkDSN(), "walscribe export list")
			if err != nil {
				return fmt.Errorf("connect to the sink: %w", err)
			}
			defer conn.Close(cmd.Context())
			if limit < 1 {
				return errors.New("--limit: 1 or more")
			}
			recs, err := export.List(cmd.Context(), conn, pgx.Identifier{c.Sink.Schema}.Sanitize(), limit)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(recs)
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "export\tstate\tat\tentries\tbytes\tdestination\terror")
			for _, r := range recs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", query.Clean(r.ID, 100), r.State, r.At.UTC().Format(time.DateTime), orDash(r.Entries), orDash(r.Bytes),
					query.Clean(r.Destination, 200), cmp.Or(query.Clean(deref(r.Error), 300), "-"))
			}
			return w.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "the newest N exports")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the records as JSON")
	return cmd
}

func orDash(n *int64) string {
	if n == nil {
		return "-"
	}
	return fmt.Sprint(*n)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func newExportURLCmd(g *globals) *cobra.Command {
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "url ID [--expires 1h]",
		Short: "Print links to download an export's archives (signed on request, never stored)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			if expires < time.Second || expires > 7*24*time.Hour {
				return fmt.Errorf("--expires %s: from 1s to 168h (S3's longest)", expires)
			}
			ctx := cmd.Context()
			conn, err := pg.Connect(ctx, c.SinkDSN(), "walscribe export url")
			if err != nil {
				return fmt.Errorf("connect to the sink: %w", err)
			}
			defer conn.Close(ctx)
			rec, ok, err := export.Find(ctx, conn, pgx.Identifier{c.Sink.Schema}.Sanitize(), args[0])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no export %q: walscribe export list shows them", args[0])
			}
			if rec.State != export.Succeeded {
				return fmt.Errorf("export %s %s; run it again with --id %s to complete it", rec.ID, rec.State, rec.ID)
			}
			dest, err := export.Open(rec.Destination, s3Config(c))
			if err != nil {
				return err
			}
			var shards []export.Shard
			if err := json.Unmarshal(rec.Shards, &shards); err != nil {
				return fmt.Errorf("export %s: its shards: %w", rec.ID, err)
			}
			out := cmd.OutOrStdout()
			for _, key := range append(shardKeys(shards), rec.ID+"/manifest.json") {
				u, err := dest.URL(ctx, key, expires)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s\n", u)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&expires, "expires", time.Hour, "how long the links work")
	return cmd
}

func shardKeys(shards []export.Shard) []string {
	keys := make([]string, len(shards))
	for i, s := range shards {
		keys[i] = s.Key
	}
	return keys
}

// exportSucceeded reports whether the export id succeeded.
func exportSucceeded(ctx context.Context, c *config.Config, id string) (bool, error) {
	rec, ok, err := findExport(ctx, c, id)
	return ok && rec.State == export.Succeeded, err
}
