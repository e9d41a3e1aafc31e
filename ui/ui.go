// Package ui is walscribe's web UI: server-rendered pages over the trail —
// the entries a filter selects, one entry with its images side by side, a
// row's history, a transaction, a request, an actor's activity, a summary
// with its chart, the alerts of watches, and restores for admins.
//
// It stands on package api: the same tokens (signed in once, then held in
// an HttpOnly, SameSite=Strict session cookie), the same reader of the
// trail, and the same recording of reads — nothing is shown that was not
// first recorded as read. Pages are html/template, so every captured
// value (all of them written by whoever changed the data) is escaped;
// htmx, vendored and embedded, only enhances links and forms that work
// without JavaScript. No page loads anything from another origin, and a
// strict Content-Security-Policy says so to the browser.
package ui

import (
	"errors"
	"html/template"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/walscribe/walscribe/api"
	"github.com/walscribe/walscribe/auth"
	"github.com/walscribe/walscribe/browse"
	"github.com/walscribe/walscribe/query"
)

// Default windows, in days, of pages that are given neither since nor
// days; the same as the API's.
const (
	listDays     = 7
	activityDays = 30
	historyDays  = 36500 // a row's whole history
	summaryDays  = 30
)

// Config is what the UI needs besides its dependencies.
type Config struct {
	// Schema is the trail's schema (sink.schema): the API's Config.Schema.
	Schema string
	// Secure marks the session cookie Secure: set it when browsers reach
	// the UI over TLS (directly or through a proxy that terminates it).
	Secure bool
	// SessionMaxAge is how long a sign-in lasts (default 12 hours), and
	// never past the token's own expiry.
	SessionMaxAge time.Duration
	// Restore undoes entries: the API's Config.Restore (nil: restores are
	// not configured, and the UI says so).
	Restore api.Restorer
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// UI serves the web UI.
type UI struct {
	cfg     Config
	api     *api.Server
	store   *browse.Store
	db      query.Querier
	log     *zap.Logger
	pages   map[string]*template.Template
	static  map[string]asset
	handler http.Handler
}

// New is the UI over server (the API: its tokens, its reader of the trail,
// its recording of reads), with db the API's read-only pool, which the
// summary is added up on. It does no I/O.
func New(cfg Config, server *api.Server, db query.Querier, log *zap.Logger) (*UI, error) {
	switch {
	case server == nil:
		return nil, errors.New("ui: the API server is required")
	case db == nil:
		return nil, errors.New("ui: the API's read-only pool is required")
	case cfg.Schema == "":
		return nil, errors.New("ui: schema is required (the trail's schema, sink.schema)")
	case cfg.SessionMaxAge < 0:
		return nil, errors.New("ui: session_max_age must not be negative")
	}
	if cfg.SessionMaxAge == 0 {
		cfg.SessionMaxAge = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	static, err := loadStatic()
	if err != nil {
		return nil, err
	}
	u := &UI{cfg: cfg, api: server, store: server.Store(), db: db, log: log.Named("ui"), pages: pages, static: static}
	u.handler = u.routes()
	return u, nil
}

// Handler serves the UI at / and below. The API is served beside it, at
// api.BaseURL, by the same server: the UI links there for downloads.
func (u *UI) Handler() http.Handler { return u.handler }

func (u *UI) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /signin", u.signInPage)
	mux.HandleFunc("POST /signin", u.signIn)
	mux.Handle("POST /signout", u.page(auth.Viewer, u.signOut))
	mux.HandleFunc("GET /static/{name}", u.serveStatic)

	mux.Handle("GET /{$}", u.page(auth.Viewer, u.list))
	mux.Handle("GET /entries/{id}", u.page(auth.Viewer, u.entry))
	mux.Handle("GET /history", u.page(auth.Viewer, u.history))
	mux.Handle("GET /transaction", u.page(auth.Viewer, u.transaction))
	mux.Handle("GET /request", u.page(auth.Viewer, u.request))
	mux.Handle("GET /actor", u.page(auth.Viewer, u.actor))
	mux.Handle("GET /me", u.page(auth.Viewer, u.me))
	mux.Handle("GET /summary", u.page(auth.Viewer, u.summary))
	mux.Handle("GET /entries/{id}/restore", u.page(auth.Admin, u.planRestore))
	mux.Handle("POST /entries/{id}/restore", u.page(auth.Admin, u.applyRestore))
	mux.HandleFunc("/", u.notFound)

	// Forms posted from other sites are refused (Sec-Fetch-Site, or else
	// Origin against Host), on top of SameSite=Strict and the CSRF token.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.fail(w, r, nil, errCrossOrigin)
	}))
	return secure(cop.Handler(mux))
}

// contentSecurityPolicy allows the UI's own script and style sheet and
// nothing else: no inline script or style, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure sets the headers every answer carries.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
