package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/auth"
	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/query"
	"github.com/walscribe/walscribe/sink"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke the API's tokens",
		Long: `A token lets its holder use the API and the web UI with a role: viewer (read
entries, history, activity, the summary; post events), auditor (+ download entries,
the export history) or admin (+ restore and revert, the token list). Only the
SHA-256 of its secret is stored; the token itself is shown once, when created.
Creating and revoking one is recorded in the trail.`,
	}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var name, role, actorID, expires string
	cmd := &cobra.Command{
		Use:   "create --name NAME --role viewer|auditor|admin [--actor-id ID] [--expires 90d]",
		Short: "Create a token and print it (once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			var until time.Time
			if expires != "" {
				if err := config.CheckPeriod(expires); err != nil {
					return fmt.Errorf("--expires %q: a period such as 30d, 12w, 6m or 1y", expires)
				}
				until = addPeriod(time.Now(), expires)
			}
			c, err := g.load()
			if err != nil {
				return err
			}
			// The trail's writer first: a token that could not be recorded
			// is not made.
			record, done, err := tokenRecorder(cmd.Context(), c)
			if err != nil {
				return err
			}
			defer done()
			var tok auth.Token
			var text string
			err = withTokens(cmd.Context(), c, func(s *auth.Store) error {
				tok, text, err = s.Create(cmd.Context(), name, r, actorID, until, requester())
				return err
			})
			if err != nil {
				return err
			}
			if err := record("token_created", tok); err != nil {
				return fmt.Errorf("%w; the token %s exists but is not in the trail: revoke it (walscribe token revoke %s) and create another", err, tok.ID, tok.ID)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, text)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s (%s, %s) created; it is shown only now: keep it in a secret store.\n"+
				"Use it as: curl -H 'Authorization: Bearer %s…' http://%s/api/v1/entries\n",
				tok.ID, query.Clean(tok.Name, 80), tok.Role, text[:8], defaultAPIListen)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "whose token it is, e.g. \"alice (support)\" (required)")
	cmd.Flags().StringVar(&role, "role", "viewer", "viewer, auditor or admin")
	cmd.Flags().StringVar(&actorID, "actor-id", "", "the holder's own actor id in the application (for me/activity)")
	cmd.Flags().StringVar(&expires, "expires", "", "how long it lasts, e.g. 90d or 1y (default: until revoked)")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newTokenListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			return withTokens(cmd.Context(), c, func(s *auth.Store) error {
				tokens, err := s.List(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tROLE\tACTOR ID\tCREATED\tSTATE")
				now := time.Now()
				for _, t := range tokens {
					state := "active"
					switch {
					case !t.RevokedAt.IsZero():
						state = "revoked " + t.RevokedAt.UTC().Format(time.DateTime)
					case !t.Active(now):
						state = "expired " + t.ExpiresAt.UTC().Format(time.DateTime)
					case !t.ExpiresAt.IsZero():
						state = "active until " + t.ExpiresAt.UTC().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, query.Clean(t.Name, 40), t.Role, query.Clean(t.ActorID, 20),
						t.CreatedAt.UTC().Format(time.DateTime), state)
				}
				return tw.Flush()
			})
		},
	}
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load()
			if err != nil {
				return err
			}
			var tok auth.Token
			err = withTokens(cmd.Context(), c, func(s *auth.Store) error {
				tok, err = s.Revoke(cmd.Context(), strings.TrimSpace(args[0]), requester())
				return err
			})
			if err != nil {
				return err
			}
			// Revoked whatever happens next: the record follows.
			record, done, err := tokenRecorder(cmd.Context(), c)
			if err != nil {
				return fmt.Errorf("token %s is revoked, but the revocation is not in the trail: %w", tok.ID, err)
			}
			defer done()
			if err := record("token_revoked", tok); err != nil {
				return fmt.Errorf("token %s is revoked, but the revocation is not in the trail: %w", tok.ID, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s (%s) revoked\n", tok.ID, query.Clean(tok.Name, 80))
			return nil
		},
	}
}

// withTokens runs fn with the token store of the sink, connected as the
// daemon's role.
func withTokens(ctx context.Context, c *config.Config, fn func(*auth.Store) error) error {
	conn, err := pg.Connect(ctx, c.SinkDSN(), pg.AppTool)
	if err != nil {
		return fmt.Errorf("connect to the sink: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(auth.NewStore(conn, c.Sink.Schema))
}

// tokenRecorder opens the trail's writer, and returns what records an
// action on a token with it, and what closes it.
func tokenRecorder(ctx context.Context, c *config.Config) (record func(action string, t auth.Token) error, done func(), err error) {
	_, scfg, err := daemonConfig(c)
	if err != nil {
		return nil, nil, err
	}
	s := sink.NewPostgres(scfg, zap.NewNop())
	if err := s.Open(ctx); err != nil {
		return nil, nil, fmt.Errorf("open the trail to record the token: %w", err)
	}
	record = func(action string, t auth.Token) error {
		detail := map[string]any{"token_id": t.ID, "name": t.Name, "role": t.Role.String(), "by": requester()}
		if t.ActorID != "" {
			detail["actor_id"] = t.ActorID
		}
		if _, err := s.Record(ctx, "token", action, detail); err != nil {
			return fmt.Errorf("record %s in the trail: %w", action, err)
		}
		return nil
	}
	return record, func() { s.Close(context.WithoutCancel(ctx)) }, nil
}

// addPeriod is t plus a period such as 90d (config.CheckPeriod accepts it).
func addPeriod(t time.Time, period string) time.Time {
	n, _ := strconv.Atoi(period[:len(period)-1])
	switch period[len(period)-1] {
	case 'w':
		return t.AddDate(0, 0, 7*n)
	case 'm':
		return t.AddDate(0, n, 0)
	case 'y':
		return t.AddDate(n, 0, 0)
	}
	return t.AddDate(0, 0, n)
}
