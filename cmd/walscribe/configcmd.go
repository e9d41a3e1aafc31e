package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/setup"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the configuration",
	}
	var asJSON bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration against the live database and show what will be recorded",
		Long: `check loads the configuration (every problem in the file is reported with its key),
then compares it with the source database: it prints, for each tracked table, the
entry that governs it, the actions recorded, the columns excluded and masked, the
diff, and the table's replica identity, publication and context trigger; then every
problem found — a pattern that matches nothing, a table that does not exist, a
masked or excluded column that no governed table has, a table without REPLICA
IDENTITY FULL, a missing masking secret. It exits with status 1 when there is a
problem.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			rep, err := inspect(cmd.Context(), c)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printReport(cmd.OutOrStdout(), rep)
			}
			if len(rep.Problems) > 0 {
				return fmt.Errorf("%d problem(s) found", len(rep.Problems))
			}
			return nil
		},
	}
	check.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(check)
	return cmd
}

// inspect runs setup.Inspect for a configuration.
func inspect(ctx context.Context, c *config.Config) (*setup.Report, error) {
	rs, err := rulesFromConfig(c)
	if err != nil {
		return nil, err
	}
	conn, err := pg.Connect(ctx, c.Source.DSN, pg.AppTool)
	if err != nil {
		return nil, fmt.Errorf("connect to source (source.dsn): %w", err)
	}
	defer conn.Close(ctx)
	skip := ""
	if c.SinkDSN() == c.Source.DSN {
		skip = c.Sink.Schema
	}
	rep, err := setup.Inspect(ctx, conn, rs, c.Source.Publication, c.Sink.Schema, skip)
	if err != nil {
		return nil, err
	}
	problems, warnings, err := setup.TrustProblems(ctx, conn, setupRoles(c), conn.Config().User)
	if err != nil {
		return nil, err
	}
	rep.Problems = append(rep.Problems, problems...)
	rep.Warnings = append(rep.Warnings, warnings...)
	return rep, nil
}

func printReport(w io.Writer, r *setup.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tENTRY\tACTIONS\tEXCLUDED\tMASKED\tDIFF\tREPLICA IDENTITY\tPUBLISHED\tCONTEXT")
	for _, t := range r.Tables {
		var masked []string
		for c, st := range t.Mask {
			masked = append(masked, c+" ("+st+")")
		}
		sort.Strings(masked)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Table, t.Entry, strings.Join(t.Actions, ","),
			dash(strings.Join(t.Exclude, ",")), dash(strings.Join(masked, ",")), t.Diff, t.ReplicaIdentity, yesNo(t.Published), yesNo(t.ContextTrigger))
	}
	tw.Flush()
	if r.CaptureInstalled {
		fmt.Fprintln(w, "\ntables created later that match a pattern: captured from their first row")
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "\nwarning: %s\n", warning)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintf(w, "\nno problems: %d tables tracked\n", len(r.Tables))
		return
	}
	fmt.Fprintf(w, "\n%d problem(s):\n", len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
