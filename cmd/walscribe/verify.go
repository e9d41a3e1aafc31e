package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/verify"
)

// exitError ends walscribe with an exit code other than 1, printing err
// when there is one.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitError) Unwrap() error { return e.err }

func newVerifyCmd(g *globals) *cobra.Command {
	var key, dsn, schema, dir, statePath string
	var asJSON bool
	var entry int64
	cmd := &cobra.Command{
		Use:   "verify --key VERIFIER [--checkpoints DIR] [--json] [--state FILE] [--entry ID]",
		Short: "Check the audit trail against its signed integrity log",
		Long: `verify recomputes the hash of every entry from the row as stored, rebuilds the
Merkle tree of the integrity log, and checks it against every signed checkpoint: those
stored in the database and those in --checkpoints (integrity.checkpoint_dir), which
show a trail cut short or restored from an old backup. It prints one line per entry
altered, missing, inserted or out of order, and exits 0 when the trail is intact, 1
when it is not, 2 when it cannot tell (no checkpoint signed by the key, wrong key).

--key is the verifier key (the text walscribe keygen --signer printed, or the file
holding it). The database is the configuration's sink (or --dsn); a role that may
read the audit schema is enough (walscribe_reader).

--state FILE makes runs incremental: an intact run saves where it ended, and the next
one reads only the entries after it (and checks that the log extends the one
verified); run a full verify now and then, which reads every entry again.
--entry ID prints the inclusion proof of one entry against the newest signed
checkpoint covering it, checked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if key == "" {
				return exitError{2, errors.New("--key is required: the verifier key of the log (walscribe keygen --signer printed it, and wrote it to FILE.pub)")}
			}
			text := key
			if b, err := os.ReadFile(key); err == nil {
				text = string(b)
			} else if !strings.Contains(key, "+") {
				return exitError{2, fmt.Errorf("--key: %w", err)}
			}
			verifier, err := integrity.ParseVerifier(text)
			if err != nil {
				return exitError{2, fmt.Errorf("--key: %w", err)}
			}
			if dsn == "" || schema == "" || dir == "" {
				c, err := g.load()
				if err != nil && dsn == "" {
					return exitError{2, fmt.Errorf("%w (or give --dsn)", err)}
				}
				if c != nil {
					dsn = cmp.Or(dsn, c.SinkDSN())
					schema = cmp.Or(schema, c.Sink.Schema)
					dir = cmp.Or(dir, c.Integrity.CheckpointDir)
				}
			}
			schema = cmp.Or(schema, "audit")
			conn, err := pg.Connect(ctx, dsn, "walscribe verify")
			if err != nil {
				return exitError{2, fmt.Errorf("connect: %w", err)}
			}
			defer conn.Close(ctx)
			leavesConn, err := pg.Connect(ctx, dsn, "walscribe verify")
			if err != nil {
				return exitError{2, fmt.Errorf("connect: %w", err)}
			}
			defer leavesConn.Close(ctx)
			o := verify.Options{Schema: schema, Verifier: verifier, Dir: dir}
			out := cmd.OutOrStdout()

			if entry > 0 {
				proof, err := verify.Prove(ctx, conn, leavesConn, o, entry)
				if errors.Is(err, verify.ErrCannotVerify) {
					return exitError{2, err}
				}
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(out).Encode(proof)
				}
				fmt.Fprintf(out, "entry %d is leaf %d of the log of %d entries (checked)\nleaf hash: %s\nproof:\n", proof.ID, proof.Index, proof.TreeSize, proof.LeafHash)
				for _, h := range proof.Hashes {
					fmt.Fprintf(out, "  %s\n", h)
				}
				fmt.Fprintf(out, "signed checkpoint:\n%s", proof.Checkpoint)
				return nil
			}

			if statePath != "" {
				if o.From, err = verify.LoadState(statePath); err != nil {
					return exitError{2, err}
				}
				if o.From != nil && o.From.Origin != verifier.Name() {
					return exitError{2, fmt.Errorf("--state %s is of the log %s, not of %s", statePath, o.From.Origin, verifier.Name())}
				}
			}
			progress, done := newProgress(cmd.ErrOrStderr())
			o.Progress = progress
			report, err := verify.Run(ctx, conn, leavesConn, o)
			done()
			if errors.Is(err, verify.ErrCannotVerify) {
				return exitError{2, err}
			}
			if err != nil {
				return exitError{2, err}
			}
			if asJSON {
				if err := json.NewEncoder(out).Encode(report); err != nil {
					return err
				}
			} else {
				for _, f := range report.Findings {
					fmt.Fprintln(out, f)
				}
				state := "intact"
				if !report.Intact {
					state = fmt.Sprintf("NOT intact: %d findings", len(report.Findings))
				}
				fmt.Fprintf(out, "%s: %d entries read, log of %d entries, %d checkpoints checked (%d outside the database), signed up to %d",
					state, report.Entries, report.TreeSize, report.Checkpoints+report.External, report.External, report.SignedSize)
				if report.Pruned > 0 {
					fmt.Fprintf(out, "; %d entries removed by retention, as %d signed prune records say", report.Pruned, report.Prunes)
				}
				if report.Unsigned > 0 {
					fmt.Fprintf(out, "; the last %d entries are in the log but not signed yet", report.Unsigned)
				}
				fmt.Fprintln(out)
			}
			if !report.Intact {
				return exitError{code: 1}
			}
			if statePath != "" && report.State != nil {
				if err := verify.SaveState(statePath, report.State); err != nil {
					return exitError{2, fmt.Errorf("--state: %w", err)}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "the log's verifier key, or a file holding it (required)")
	f.StringVar(&dsn, "dsn", "", "the database holding the trail (default: the configuration's sink)")
	f.StringVar(&schema, "schema", "", "the audit schema (default: sink.schema, audit)")
	f.StringVar(&dir, "checkpoints", "", "the directory of checkpoints kept outside the database (default: integrity.checkpoint_dir)")
	f.BoolVar(&asJSON, "json", false, "print the report (or the proof) as JSON")
	f.StringVar(&statePath, "state", "", "resume from, and save to, this file: only new entries are read")
	f.Int64Var(&entry, "entry", 0, "print the inclusion proof of the entry with this id")
	return cmd
}

// newProgress reports the progress of a long verification: a bar on a
// terminal, a plain line every 10 seconds otherwise.
func newProgress(w io.Writer) (func(id, newest int64), func()) {
	if isTerminal(w) {
		p := mpb.New(mpb.WithOutput(w), mpb.WithRefreshRate(200*time.Millisecond))
		var bar *mpb.Bar
		return func(id, newest int64) {
				if bar == nil {
					bar = p.AddBar(newest, mpb.PrependDecorators(decor.Name("verify "), decor.CountersNoUnit("%d / %d")),
						mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.AverageETA(decor.ET_STYLE_GO)))
				}
				bar.SetCurrent(id)
			}, func() {
				if bar != nil {
					bar.SetTotal(-1, true)
				}
				p.Wait()
			}
	}
	last := time.Now()
	return func(id, newest int64) {
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			fmt.Fprintf(w, "verify: entry %d of %d\n", id, newest)
		}
	}, func() {}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newCountProgress reports the progress of a long run whose total is not
// known, counting rows: a counter on a terminal w (when bar, and what is
// written does not go to that terminal too), a plain line every 10 seconds
// otherwise. done is told the final count.
func newCountProgress(w io.Writer, bar bool, what string) (step func(), done func(n int64)) {
	if bar && isTerminal(w) {
		p := mpb.New(mpb.WithOutput(w), mpb.WithRefreshRate(200*time.Millisecond))
		b := p.New(0, mpb.SpinnerStyle(), mpb.PrependDecorators(decor.Name(what+" "), decor.CurrentNoUnit("%d entries")),
			mpb.AppendDecorators(decor.AverageSpeed(0, " %.0f/s")))
		return func() { b.Increment() }, func(int64) {
			b.SetTotal(-1, true)
			p.Wait()
		}
	}
	var n int64
	last := time.Now()
	return func() {
			n++
			if n%4096 == 0 && time.Since(last) >= 10*time.Second {
				last = time.Now()
				fmt.Fprintf(w, "%s: %d entries\n", what, n)
			}
		}, func(total int64) {
			if total >= 100_000 {
				fmt.Fprintf(w, "%s: %d entries, done\n", what, total)
			}
		}
}
