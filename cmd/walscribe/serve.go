package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/api"
	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/ui"
)

// defaultAPIListen is where walscribe serve listens when api.listen is not set.
const defaultAPIListen = "127.0.0.1:9188"

func newServeCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the REST API (/api/v1) and the web UI (/) until stopped; read-only",
		Long: `serve answers the API and the web UI from the trail, reading through api.dsn
(a role with only the reader role; a replica of the sink will do) and recording
every read in the trail through api.events_dsn (log_event in the source database).
It also serves /healthz and /metrics. Callers need a token: walscribe token create.`,
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
			if listen == "" {
				listen = c.API.Listen
			}
			if listen == "" {
				listen = defaultAPIListen
			}
			reg := prometheus.NewRegistry()
			ctx := cmd.Context()
			srv, err := openAPI(ctx, c, log, reg)
			if err != nil {
				return err
			}
			defer srv.Close()
			mux := http.NewServeMux()
			mux.Handle("/", srv.handler)
			mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
			mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
			})
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("api.listen %s: %w (choose another address with --listen or api.listen)", listen, err)
			}
			return serveAPI(ctx, ln, mux, c, log)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "host:port to listen on (default api.listen, else "+defaultAPIListen+")")
	return cmd
}

// apiServer is the API and UI with the connections they hold.
type apiServer struct {
	api     *api.Server
	handler http.Handler
	pools   []*pgxpool.Pool
}

func (s *apiServer) Close() {
	for _, p := range s.pools {
		p.Close()
	}
}

// openAPI connects the API's pools (reads: small, read-only, with a
// statement timeout; events: two connections) and checks that the trail
// has what the API reads.
func openAPI(ctx context.Context, c *config.Config, log *zap.Logger, reg prometheus.Registerer) (*apiServer, error) {
	reader, err := pg.Pool(ctx, c.APIDSN(), pg.AppAPI, int32(c.API.PoolSize), map[string]string{
		"statement_timeout":             strconv.FormatInt(c.API.StatementTimeout.Milliseconds(), 10),
		"default_transaction_read_only": "on",
		// Plans made for each query's own values: the months it covers
		// pruned at planning, and the index its filter needs chosen
		// (a generic plan keeps neither). No JIT: the API's queries are
		// short, and JIT's compile time (0.1-1.5 s) would dwarf them.
		"plan_cache_mode": "force_custom_plan",
		"jit":             "off",
	})
	if err != nil {
		return nil, fmt.Errorf("api.dsn: %w", err)
	}
	s := &apiServer{pools: []*pgxpool.Pool{reader}}
	events, err := pg.Pool(ctx, c.EventsDSN(), pg.AppAPI, 4, map[string]string{
		"statement_timeout": strconv.FormatInt(c.API.StatementTimeout.Milliseconds(), 10),
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("api.events_dsn: %w", err)
	}
	s.pools = append(s.pools, events)
	if err := checkAPIReader(ctx, reader, c, log); err != nil {
		s.Close()
		return nil, err
	}
	if err := checkAPIEvents(ctx, events, c); err != nil {
		s.Close()
		return nil, err
	}
	// Restores are planned on the source through the events role (or the
	// restore role), and applied only through api.restore_dsn.
	restores := &apiRestorer{restorer: restorerOn(c, reader, events)}
	if c.API.RestoreDSN != "" {
		// A row another transaction holds is waited for 5 s, then refused.
		src, err := pg.Pool(ctx, c.API.RestoreDSN, pg.AppAPI, 2, map[string]string{"lock_timeout": "5000"})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("api.restore_dsn: %w", err)
		}
		s.pools = append(s.pools, src)
		restores = &apiRestorer{restorer: restorerOn(c, reader, src), apply: true}
	}
	s.api, err = api.New(api.Config{Schema: c.Sink.Schema, RatePerSecond: float64(c.API.RateLimit), Restore: restores}, reader,
		api.NewSourceEvents(events, c.Sink.Schema, c.Context.Prefix), log, reg)
	if err != nil {
		s.Close()
		return nil, err
	}
	web, err := ui.New(ui.Config{Schema: c.Sink.Schema, Secure: c.API.TLSCertFile != "" || c.API.SecureCookies, SessionMaxAge: c.API.SessionTTL, Restore: restores},
		s.api, reader, log)
	if err != nil {
		s.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(api.BaseURL+"/", s.api.Handler())
	mux.Handle("/", web.Handler())
	s.handler = mux
	return s, nil
}

// checkAPIReader checks that the API's role can read the trail and its
// tokens, and warns when it could also write the trail.
func checkAPIReader(ctx context.Context, pool *pgxpool.Pool, c *config.Config, log *zap.Logger) error {
	tctx, cancel := context.WithTimeout(ctx, pg.ConnectTimeout)
	defer cancel()
	schema := pgx.Identifier{c.Sink.Schema}.Sanitize()
	var user string
	var tokens, write bool
	err := pool.QueryRow(tctx, `SELECT current_user, to_regclass($1) IS NOT NULL,
		coalesce(has_table_privilege(to_regclass($2), 'INSERT'), false)`,
		c.Sink.Schema+".api_tokens", c.Sink.Schema+".entries").Scan(&user, &tokens, &write)
	if err != nil {
		return fmt.Errorf("api.dsn: %w", err)
	}
	if !tokens {
		return fmt.Errorf("api.dsn: the trail in schema %s has no api_tokens table: run walscribe setup (or walscribe migrate) with this version first", c.Sink.Schema)
	}
	if _, err := pool.Exec(tctx, `SELECT 1 FROM `+schema+`.entries LIMIT 0`); err != nil {
		return fmt.Errorf("api.dsn: role %s cannot read the trail (%w): GRANT %s TO %s", user, err,
			pgx.Identifier{c.Roles.Reader}.Sanitize(), pgx.Identifier{user}.Sanitize())
	}
	if write {
		log.Warn("api.dsn: the API's role may write the trail; give the API a role granted only the reader role (roles.reader)",
			zap.String("role", user))
	}
	return nil
}

// checkAPIEvents checks that the API's events role may call log_event in
// the source database.
func checkAPIEvents(ctx context.Context, pool *pgxpool.Pool, c *config.Config) error {
	tctx, cancel := context.WithTimeout(ctx, pg.ConnectTimeout)
	defer cancel()
	fn := pgx.Identifier{c.Sink.Schema, "log_event"}.Sanitize() + "(text, text, text, jsonb, boolean)"
	var user string
	var may *bool
	if err := pool.QueryRow(tctx, `SELECT current_user, has_function_privilege(to_regprocedure($1), 'EXECUTE')`, fn).Scan(&user, &may); err != nil {
		return fmt.Errorf("api.events_dsn: %w", err)
	}
	switch {
	case may == nil:
		return fmt.Errorf("api.events_dsn: the database has no %s: point api.events_dsn at the source database, set up by walscribe setup", fn)
	case !*may:
		return fmt.Errorf("api.events_dsn: role %s may not record events (every read of the API is recorded): run GRANT %s TO %s, or set api.events_dsn to a role of the application group",
			user, pgx.Identifier{c.Roles.App}.Sanitize(), pgx.Identifier{user}.Sanitize())
	}
	return nil
}

// serveAPI serves h on ln (over TLS when configured) until ctx is done,
// then shuts down gracefully.
func serveAPI(ctx context.Context, ln net.Listener, h http.Handler, c *config.Config, log *zap.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10}
	scheme := "http"
	if c.API.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.API.TLSCertFile, c.API.TLSKeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("api.tls_cert_file, api.tls_key_file: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	log.Info("api listening: /api/v1 (the API), / (the web UI)", zap.String("url", scheme+"://"+ln.Addr().String()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			// Requests still running after 10 s (a download to a client
			// that stopped reading) are cut off, so that their database
			// connections are given back.
			srv.Close()
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api server: %w", err)
	}
	<-done
	return nil
}
