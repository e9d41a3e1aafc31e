package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/walscribe/walscribe/api"
	"github.com/walscribe/walscribe/auditctx"
	"github.com/walscribe/walscribe/browse"
	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/restore"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var id int64
	var apply bool
	var dsn, actor string
	cmd := &cobra.Command{
		Use:   "restore --entry ID [--apply]",
		Short: "Undo one entry on the source database: restore a deleted row, revert an update (a dry run unless --apply)",
		Long: `restore shows the SQL that undoes entry ID from its stored images — an INSERT of a
deleted row, an UPDATE setting an update's changed columns back, a DELETE of an
inserted row — or why it cannot: a value masked or a column left out by the rules, an
image without what is needed, an entry altered to be stored, a table or column gone,
or a row that changed since the entry. With --apply it runs it in one transaction
that locks and checks the row again and records a "restored" event in the trail.
It connects with --dsn (default api.restore_dsn, else source.dsn): a role that may
write the table and is granted the application group (roles.app).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			if dsn == "" {
				dsn = c.API.RestoreDSN
			}
			if dsn == "" {
				dsn = c.Source.DSN
			}
			if actor == "" {
				actor = requester()
			}
			ctx := cmd.Context()
			r, err := newRestorer(ctx, c, dsn)
			if err != nil {
				return err
			}
			defer r.Close()
			plan, err := r.plan(ctx, id)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "entry %d: %s of %s.%s %s\n", plan.EntryID, plan.Kind, safe(plan.Schema, false), safe(plan.Table, false), safe(plan.Key, false))
			for _, n := range plan.Notes {
				fmt.Fprintf(out, "note: %s\n", safe(n, false))
			}
			if plan.Refused() {
				for _, ref := range plan.Refusals {
					fmt.Fprintf(out, "refused: %s\n", safe(ref.String(), false))
				}
				return exitError{code: 1, err: fmt.Errorf("entry %d cannot be undone", id)}
			}
			text := safe(plan.Change.Text, true)
			fmt.Fprintf(out, "%s;\n", text)
			if text != plan.Change.Text {
				fmt.Fprintln(cmd.ErrOrStderr(), "the statement holds control characters, shown escaped above: copy it from the API or the UI, or use --apply")
			}
			if !apply {
				fmt.Fprintln(cmd.ErrOrStderr(), "dry run: nothing changed; --apply runs it")
				return nil
			}
			if err := r.r.Apply(ctx, r.src, plan, auditctx.Context{Actor: actor}); err != nil {
				return err
			}
			fmt.Fprintf(out, "applied as %s; a restored event goes into the trail with the change\n", safe(actor, false))
			return nil
		},
	}
	cmd.Flags().Int64Var(&id, "entry", 0, "the entry to undo (its id)")
	cmd.Flags().BoolVar(&apply, "apply", false, "run it (default: show it)")
	cmd.Flags().StringVar(&dsn, "dsn", "", "the source database, as a role that may write the table (default api.restore_dsn, else source.dsn)")
	cmd.Flags().StringVar(&actor, "actor", "", "who restores, as the trail records it (default user@host)")
	cmd.MarkFlagRequired("entry")
	return cmd
}

// safe is a text from the trail, safe on a terminal: control and format
// characters escaped (line breaks and tabs too unless keepLines).
func safe(s string, keepLines bool) string {
	var b strings.Builder
	for _, r := range s {
		if keepLines && (r == '\n' || r == '\t') {
			b.WriteRune(r)
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// restorer is the restore package on the trail and the source.
type restorer struct {
	r          *restore.Restorer
	trail, src *pgxpool.Pool
	owned      bool // the pools are the restorer's to close
}

func newRestorer(ctx context.Context, c *config.Config, srcDSN string) (*restorer, error) {
	trail, err := pg.Pool(ctx, c.SinkDSN(), pg.AppTool, 2, nil)
	if err != nil {
		return nil, fmt.Errorf("connect to the sink: %w", err)
	}
	src, err := pg.Pool(ctx, srcDSN, pg.AppTool, 2, nil)
	if err != nil {
		trail.Close()
		return nil, fmt.Errorf("connect to the source: %w", err)
	}
	r := restorerOn(c, trail, src)
	r.owned = true
	return r, nil
}

// restorerOn is a restorer reading the trail through trail and the source
// through src.
func restorerOn(c *config.Config, trail, src *pgxpool.Pool) *restorer {
	return &restorer{r: restore.New(restore.Config{Schema: c.Sink.Schema, Prefix: c.Context.Prefix, AppRole: c.Roles.App, Slot: c.Source.Slot}),
		trail: trail, src: src}
}

func (r *restorer) Close() {
	if r.owned {
		r.trail.Close()
		r.src.Close()
	}
}

func (r *restorer) plan(ctx context.Context, id int64) (*restore.Plan, error) {
	p, err := r.r.PlanID(ctx, r.trail, r.src, id)
	if errors.Is(err, restore.ErrNoEntry) {
		return nil, fmt.Errorf("entry %d: %w", id, browse.ErrNotFound)
	}
	return p, err
}

// apiRestorer undoes entries for the API and the UI: it plans with the
// API's connections, and applies only when api.restore_dsn is set.
type apiRestorer struct {
	*restorer
	apply bool
}

var _ api.Restorer = (*apiRestorer)(nil)

func (a *apiRestorer) Plan(ctx context.Context, id int64) (api.RestorePlan, error) {
	p, err := a.plan(ctx, id)
	if err != nil {
		return api.RestorePlan{}, err
	}
	return planOf(p, nil), nil
}

func (a *apiRestorer) Apply(ctx context.Context, id int64, who api.Caller) (api.RestorePlan, error) {
	p, err := a.plan(ctx, id)
	if err != nil {
		return api.RestorePlan{}, err
	}
	if !a.apply {
		return planOf(p, errors.New("restores are not applied by this server (api.restore_dsn is not set): run the SQL, or walscribe restore --apply")), nil
	}
	err = a.r.Apply(ctx, a.src, p, auditctx.Context{ActorID: who.ActorID, Actor: who.Actor, IP: who.IP, UserAgent: who.UserAgent, RequestID: who.RequestID})
	var refused *restore.RefusedError
	switch {
	case errors.As(err, &refused):
		p.Refusals = refused.Refusals
		return planOf(p, nil), nil
	case errors.Is(err, restore.ErrEventNotAllowed):
		return planOf(p, err), nil
	case err != nil:
		return api.RestorePlan{}, err
	}
	out := planOf(p, nil)
	out.Applied = ptrTo(true)
	return out, nil
}

// planOf is a plan as the API shows it; fail, when set, makes it refused.
func planOf(p *restore.Plan, fail error) api.RestorePlan {
	out := api.RestorePlan{EntryId: p.EntryID, Kind: string(p.Kind), Possible: !p.Refused() && fail == nil, Sql: p.Change.Text}
	var reasons []string
	for _, r := range p.Refusals {
		reasons = append(reasons, r.String())
	}
	if fail != nil {
		reasons = append(reasons, fail.Error())
	}
	if len(reasons) > 0 {
		out.Reason = ptrTo(strings.Join(reasons, "; "))
	}
	if len(p.Notes) > 0 {
		out.Notes = &p.Notes
	}
	if p.Refused() && out.Sql != "" && !onlyChangedSince(p) {
		out.Sql = ""
	}
	return out
}

func onlyChangedSince(p *restore.Plan) bool {
	for _, r := range p.Refusals {
		if r.Code != restore.CodeChangedSince {
			return false
		}
	}
	return true
}

func ptrTo[T any](v T) *T { return &v }
