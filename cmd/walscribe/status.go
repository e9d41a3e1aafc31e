package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/query"
	"github.com/walscribe/walscribe/setup"
)

// statusReport is what `walscribe status` prints.
type statusReport struct {
	Slot              string     `json:"slot"`
	Active            bool       `json:"active"`
	ActivePID         *int32     `json:"active_pid,omitempty"`
	WALStatus         string     `json:"wal_status"`
	ConfirmedLSN      string     `json:"confirmed_flush_lsn"`
	CurrentLSN        string     `json:"current_wal_lsn"`
	LagBytes          int64      `json:"lag_bytes"`
	RetainedBytes     int64      `json:"retained_wal_bytes"`
	SafeWALSize       *int64     `json:"safe_wal_size_bytes,omitempty"`
	CheckpointLSN     string     `json:"checkpoint_lsn,omitempty"`
	CheckpointAt      *time.Time `json:"checkpoint_written_at,omitempty"`
	LastCommitAt      *time.Time `json:"last_commit_at,omitempty"`
	LastID            int64      `json:"last_entry_id"`
	CheckpointBehind  bool       `json:"slot_ahead_of_checkpoint"`
	CheckpointMissing bool       `json:"no_checkpoint"`
	Gaps              int        `json:"gaps"`
	// UnguardedTables are published tables whose context trigger is
	// missing, disabled or not ENABLE ALWAYS.
	UnguardedTables []string `json:"unguarded_tables,omitempty"`
	LastGap         *gapInfo `json:"last_gap,omitempty"`
	// Integrity is the integrity log's state; nil when it has none.
	Integrity *integrityStatus `json:"integrity,omitempty"`
	// Retention is what the configuration says of expiry, and the last
	// purge; Export the newest export.
	Retention retentionStatus `json:"retention"`
	Export    *exportStatus   `json:"last_export,omitempty"`
	// Daemon is what the running walscribe says of itself on /readyz
	// (http.listen); nil when no HTTP server is configured.
	Daemon *daemonState `json:"daemon,omitempty"`
}

// daemonState is the answer of the daemon's /readyz.
type daemonState struct {
	URL         string     `json:"url"`
	Reachable   bool       `json:"reachable"`
	Ready       bool       `json:"ready"`
	Reason      string     `json:"reason,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// IntegrityViolation is the last time the daemon found the stored head
	// of the integrity log altered, and how.
	IntegrityViolation   string     `json:"integrity_violation,omitempty"`
	IntegrityViolationAt *time.Time `json:"integrity_violation_at,omitempty"`
}

// integrityStatus is the integrity log as stored: its size, and its newest
// signed checkpoint.
type integrityStatus struct {
	TreeSize   int64      `json:"tree_size"`
	SignedSize int64      `json:"signed_size"`
	SignedAt   *time.Time `json:"signed_at,omitempty"`
}

// retentionStatus is expiry as configured, and the last purge recorded.
type retentionStatus struct {
	Classes   []string   `json:"classes"`         // the periods entries are stamped with
	Schedule  string     `json:"schedule"`        // "off", or how often walscribe run expires entries
	Holds     []string   `json:"holds,omitempty"` // legal holds
	Prunes    int64      `json:"prunes"`          // purges recorded
	Removed   int64      `json:"entries_removed"` // entries they removed
	LastPrune *time.Time `json:"last_prune,omitempty"`
}

// exportStatus is the newest export's newest state.
type exportStatus struct {
	ID    string    `json:"export_id"`
	State string    `json:"state"`
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// askDaemon asks the walscribe serving http.listen how it is.
func askDaemon(ctx context.Context, listen string) *daemonState {
	if listen == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	st := &daemonState{URL: "http://" + net.JoinHostPort(host, port) + "/readyz"}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.URL, nil)
	if err != nil {
		return st
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	var body struct {
		Ready       bool       `json:"ready"`
		Reason      string     `json:"reason"`
		LastError   string     `json:"last_error"`
		LastErrorAt *time.Time `json:"last_error_at"`
		Violation   string     `json:"integrity_violation"`
		ViolationAt *time.Time `json:"integrity_violation_at"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) == nil {
		st.Reachable = true
		st.Ready, st.Reason, st.LastError, st.LastErrorAt = body.Ready, body.Reason, body.LastError, body.LastErrorAt
		st.IntegrityViolation, st.IntegrityViolationAt = body.Violation, body.ViolationAt
	}
	return st
}

// gapInfo is the newest gap recorded for the slot.
type gapInfo struct {
	Reason     string    `json:"reason"`
	FromLSN    string    `json:"from_lsn"`
	ToLSN      *string   `json:"to_lsn"`
	DetectedAt time.Time `json:"detected_at"`
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the slot's state, lag, retained WAL and the last stored checkpoint",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			r, err := readStatus(cmd.Context(), c)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printStatus(cmd.OutOrStdout(), r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func readStatus(ctx context.Context, c *config.Config) (*statusReport, error) {
	src, err := pg.Connect(ctx, c.Source.DSN, pg.AppTool)
	if err != nil {
		return nil, fmt.Errorf("connect to source: %w", err)
	}
	defer src.Close(ctx)
	slot, err := cdc.ReadSlot(ctx, src, c.Source.Slot)
	if err != nil {
		return nil, err
	}
	r := &statusReport{
		Daemon:        askDaemon(ctx, c.HTTP.Listen),
		Slot:          slot.Name,
		Active:        slot.Active,
		ActivePID:     slot.ActivePID,
		WALStatus:     slot.WALStatus,
		ConfirmedLSN:  slot.ConfirmedFlushLSN.String(),
		CurrentLSN:    slot.CurrentLSN.String(),
		LagBytes:      slot.LagBytes(),
		RetainedBytes: slot.RetainedBytes(),
		SafeWALSize:   slot.SafeWALSize,
	}
	if r.UnguardedTables, err = setup.UnguardedTables(ctx, src, c.Source.Publication, c.Sink.Schema); err != nil {
		return nil, err
	}
	sinkConn := src
	if c.SinkDSN() != c.Source.DSN {
		if sinkConn, err = pg.Connect(ctx, c.SinkDSN(), pg.AppTool); err != nil {
			return nil, fmt.Errorf("connect to sink: %w", err)
		}
		defer sinkConn.Close(ctx)
	}
	var lsn pglogrepl.LSN
	err = sinkConn.QueryRow(ctx, `SELECT end_lsn, written_at, committed_at, last_id
		FROM `+pgx.Identifier{c.Sink.Schema, "checkpoints"}.Sanitize()+`
		WHERE slot = $1 ORDER BY end_lsn DESC LIMIT 1`, c.Source.Slot).Scan(
		&lsn, &r.CheckpointAt, &r.LastCommitAt, &r.LastID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		r.CheckpointMissing = true
	case err != nil:
		return nil, fmt.Errorf("read checkpoint (is the audit schema set up? run `walscribe setup`): %w", err)
	default:
		r.CheckpointLSN = lsn.String()
		r.CheckpointBehind = lsn < slot.ConfirmedFlushLSN
	}
	gaps := pgx.Identifier{c.Sink.Schema, "gaps"}.Sanitize()
	if err := sinkConn.QueryRow(ctx, `SELECT count(*) FROM `+gaps+` WHERE slot = $1`, c.Source.Slot).Scan(&r.Gaps); err != nil {
		return nil, fmt.Errorf("read gaps (run `walscribe setup` to bring the audit schema up to date): %w", err)
	}
	if r.Gaps > 0 {
		g := &gapInfo{}
		if err := sinkConn.QueryRow(ctx, `SELECT reason, from_lsn::text, to_lsn::text, detected_at FROM `+gaps+`
			WHERE slot = $1 ORDER BY detected_at DESC LIMIT 1`, c.Source.Slot).Scan(&g.Reason, &g.FromLSN, &g.ToLSN, &g.DetectedAt); err != nil {
			return nil, fmt.Errorf("read gaps: %w", err)
		}
		r.LastGap = g
	}
	in := &integrityStatus{}
	err = sinkConn.QueryRow(ctx, `SELECT coalesce((SELECT first_id + octet_length(leaves) / 32 - 1 FROM `+pgx.Identifier{c.Sink.Schema, "integrity_leaves"}.Sanitize()+`
			ORDER BY first_id DESC LIMIT 1), 0), coalesce(c.tree_size, 0), c.signed_at
		FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT tree_size, signed_at FROM `+pgx.Identifier{c.Sink.Schema, "integrity_checkpoints"}.Sanitize()+`
			ORDER BY tree_size DESC LIMIT 1) c ON true`).Scan(&in.TreeSize, &in.SignedSize, &in.SignedAt)
	if err != nil {
		return nil, fmt.Errorf("read the integrity log (run `walscribe setup` to bring the audit schema up to date): %w", err)
	}
	if in.TreeSize > 0 {
		r.Integrity = in
	}
	r.Retention = retentionStatus{Classes: c.RetentionClasses(), Schedule: "off", Holds: c.Retention.Holds}
	if c.Retention.Schedule > 0 {
		r.Retention.Schedule = "every " + c.Retention.Schedule.String()
	}
	if err := sinkConn.QueryRow(ctx, `SELECT count(*), coalesce(sum(entries), 0), max(pruned_at) FROM `+pgx.Identifier{c.Sink.Schema, "prunes"}.Sanitize()).Scan(
		&r.Retention.Prunes, &r.Retention.Removed, &r.Retention.LastPrune); err != nil {
		return nil, fmt.Errorf("read the prune records (run `walscribe setup` to bring the audit schema up to date): %w", err)
	}
	ex := &exportStatus{}
	var exErr *string
	err = sinkConn.QueryRow(ctx, `SELECT export_id, state, at, error FROM `+pgx.Identifier{c.Sink.Schema, "exports"}.Sanitize()+` ORDER BY at DESC LIMIT 1`).Scan(
		&ex.ID, &ex.State, &ex.At, &exErr)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read the export history: %w", err)
	default:
		if exErr != nil {
			ex.Error = *exErr
		}
		r.Export = ex
	}
	return r, nil
}

func printStatus(w io.Writer, r *statusReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	state := "inactive (no walscribe streaming it)"
	if r.Active {
		state = "active"
		if r.ActivePID != nil {
			state = fmt.Sprintf("active (walsender pid %d)", *r.ActivePID)
		}
	}
	if d := r.Daemon; d != nil {
		switch {
		case !d.Reachable:
			fmt.Fprintf(tw, "walscribe run\tnot reachable at %s: is it running?\n", d.URL)
		case d.Ready:
			fmt.Fprintf(tw, "walscribe run\tready: streaming, sink writable\n")
		default:
			fmt.Fprintf(tw, "walscribe run\tNOT READY: %s\n", d.Reason)
		}
		if d.LastError != "" {
			fmt.Fprintf(tw, "last error\t%s: %s\n", fmtTime(d.LastErrorAt), d.LastError)
		}
		if d.IntegrityViolation != "" {
			fmt.Fprintf(tw, "INTEGRITY VIOLATION\t%s: %s (run walscribe verify)\n", fmtTime(d.IntegrityViolationAt), d.IntegrityViolation)
		}
	}
	if in := r.Integrity; in != nil {
		fmt.Fprintf(tw, "integrity log\t%d entries, signed up to %d (%s)\n", in.TreeSize, in.SignedSize, fmtTime(in.SignedAt))
	}
	rt := r.Retention
	classes := "none (entries are kept until a cleanup names them)"
	if len(rt.Classes) > 0 {
		classes = strings.Join(rt.Classes, ", ")
	}
	fmt.Fprintf(tw, "retention\tperiods %s; schedule %s; %d purges recorded, %d entries removed", classes, rt.Schedule, rt.Prunes, rt.Removed)
	if rt.LastPrune != nil {
		fmt.Fprintf(tw, ", the last %s", fmtTime(rt.LastPrune))
	}
	fmt.Fprintln(tw)
	if len(rt.Holds) > 0 {
		fmt.Fprintf(tw, "legal holds\t%s\n", strings.Join(rt.Holds, ", "))
	}
	if ex := r.Export; ex != nil {
		at := ex.At
		line := fmt.Sprintf("%s %s %s", query.Clean(ex.ID, 100), ex.State, fmtTime(&at))
		if ex.Error != "" {
			line += ": " + query.Clean(ex.Error, 200)
		}
		fmt.Fprintf(tw, "last export\t%s\n", line)
	}
	fmt.Fprintf(tw, "slot\t%s: %s\n", r.Slot, state)
	fmt.Fprintf(tw, "wal_status\t%s\n", r.WALStatus)
	fmt.Fprintf(tw, "confirmed LSN\t%s (server at %s)\n", r.ConfirmedLSN, r.CurrentLSN)
	fmt.Fprintf(tw, "lag\t%s\n", bytesHuman(r.LagBytes))
	fmt.Fprintf(tw, "retained WAL\t%s\n", bytesHuman(r.RetainedBytes))
	if r.SafeWALSize != nil {
		fmt.Fprintf(tw, "safe WAL size\t%s\n", bytesHuman(*r.SafeWALSize))
	}
	if r.CheckpointMissing {
		fmt.Fprintf(tw, "checkpoint\tnone yet\n")
	} else {
		fmt.Fprintf(tw, "checkpoint\t%s, written %s\n", r.CheckpointLSN, fmtTime(r.CheckpointAt))
		fmt.Fprintf(tw, "last commit stored\t%s\n", fmtTime(r.LastCommitAt))
		fmt.Fprintf(tw, "last entry id\t%d\n", r.LastID)
	}
	if r.Gaps > 0 {
		to := "not resumed"
		if r.LastGap.ToLSN != nil {
			to = "resumed at " + *r.LastGap.ToLSN
		}
		fmt.Fprintf(tw, "GAPS\t%d recorded; the last: %s after %s, %s, detected %s (see audit.gaps)\n", r.Gaps, r.LastGap.Reason,
			r.LastGap.FromLSN, to, r.LastGap.DetectedAt.UTC().Format(time.RFC3339))
	}
	if len(r.UnguardedTables) > 0 {
		fmt.Fprintf(tw, "WARNING\tthe context trigger of %s is missing, disabled, not ENABLE ALWAYS or not walscribe's: their changes lack who made them; run walscribe setup\n",
			strings.Join(r.UnguardedTables, ", "))
	}
	if r.CheckpointBehind {
		fmt.Fprintf(tw, "WARNING\tthe slot is ahead of the stored checkpoint: changes may be missing from the trail (walscribe checks at its next start, and records a gap unless the stretch was idle)\n")
	}
	tw.Flush()
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), time.Since(*t).Round(time.Second))
}

func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}
