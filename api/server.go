// Package api is walscribe's REST API under /api/v1: the OpenAPI document
// openapi.yaml is the contract, the server code api.gen.go is generated
// from it (go generate), and requests are validated against it before a
// handler sees them. It reads the trail (package browse), never writes it:
// reads and posted events are recorded through the source database, as an
// application's events are.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/auth"
	"github.com/walscribe/walscribe/browse"
)

// BaseURL is where the API is served.
const BaseURL = "/api/v1"

// Config is what the server needs besides its dependencies.
type Config struct {
	Schema string // the trail's schema (sink.schema)
	// RatePerSecond and Burst bound each token's requests (default 20/s, 40).
	RatePerSecond float64
	Burst         int
	// Restore undoes entries (nil: restores are refused; plans too).
	Restore Restorer
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Server answers the API's requests.
type Server struct {
	cfg     Config
	pool    *pgxpool.Pool
	store   *browse.Store
	tokens  *auth.Store
	events  Events
	log     *zap.Logger
	spec    *openapi3.T
	specDoc []byte
	router  routers.Router
	limits  *limiter
	metrics *metrics
	handler http.Handler
}

// New is a server reading the trail through pool (a read-only role; a
// replica will do) and recording reads and events through events. It
// registers its metrics on reg.
func New(cfg Config, pool *pgxpool.Pool, events Events, log *zap.Logger, reg prometheus.Registerer) (*Server, error) {
	if cfg.RatePerSecond <= 0 {
		cfg.RatePerSecond, cfg.Burst = 20, 40
	}
	if cfg.Burst <= 0 {
		cfg.Burst = int(cfg.RatePerSecond*2) + 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	spec, err := Spec()
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	// Routes are matched on the path alone, whatever host the API is
	// reached by.
	routing := *spec
	routing.Servers = openapi3.Servers{{URL: BaseURL}}
	router, err := legacy.NewRouter(&routing)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, pool: pool, store: browse.New(pool, cfg.Schema), tokens: auth.NewStore(pool, cfg.Schema),
		events: events, log: log.Named("api"), spec: spec, specDoc: doc, router: router,
		limits: newLimiter(cfg.RatePerSecond, cfg.Burst), metrics: newMetrics(reg)}
	mux := http.NewServeMux()
	strict := NewStrictHandlerWithOptions(s, nil, StrictHTTPServerOptions{
		RequestErrorHandlerFunc:  s.requestError,
		ResponseErrorHandlerFunc: s.responseError,
	})
	HandlerWithOptions(strict, StdHTTPServerOptions{BaseURL: BaseURL, BaseRouter: mux, ErrorHandlerFunc: s.requestError})
	mux.HandleFunc("GET "+BaseURL+"/openapi.json", s.serveSpec)
	s.handler = s.guard(mux)
	return s, nil
}

// specYAML is the API's description, as written: the server code is
// generated from it, and it is served as it is.
//
//go:embed openapi.yaml
var specYAML []byte

// Spec is the API's OpenAPI document.
func Spec() (*openapi3.T, error) {
	spec, err := openapi3.NewLoader().LoadFromData(specYAML)
	if err != nil {
		return nil, fmt.Errorf("load the API's description: %w", err)
	}
	if err := spec.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the API's description: %w", err)
	}
	return spec, nil
}

// Handler serves the API under BaseURL.
func (s *Server) Handler() http.Handler { return s.handler }

// Tokens is the server's token store.
func (s *Server) Tokens() *auth.Store { return s.tokens }

// Store is the server's reader of the trail.
func (s *Server) Store() *browse.Store { return s.store }

// Record records an event of who (a read, say) in the trail.
func (s *Server) Record(ctx context.Context, e Event) error { return s.events.Log(ctx, e) }

func (s *Server) serveSpec(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.specDoc)
}

type callerKey struct{}

// session is who is calling: their token and where from.
type session struct {
	token  auth.Token
	caller Caller
}

func sessionOf(ctx context.Context) *session {
	s, _ := ctx.Value(callerKey{}).(*session)
	return s
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:/+=-]{1,200}$`)

// Who is the caller of r with token t, as events record them.
func Who(r *http.Request, t auth.Token) Caller {
	c := Caller{ActorID: t.ActorID, Actor: "token:" + t.Name + " (" + t.ID + ")", UserAgent: r.UserAgent(),
		Via: map[string]string{"via": "api", "token_id": t.ID, "role": t.Role.String()}}
	if len(c.UserAgent) > 1000 {
		c.UserAgent = strings.ToValidUTF8(c.UserAgent[:1000], "")
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		c.IP = host
	}
	if id := r.Header.Get("X-Request-Id"); requestIDPattern.MatchString(id) {
		c.RequestID = id
	} else {
		c.RequestID = newRequestID()
	}
	return c
}

// Authenticate is the token of r: its bearer token, or else its session
// cookie (then, for anything but GET, with the CSRF token in the
// X-CSRF-Token header).
func (s *Server) Authenticate(r *http.Request) (auth.Token, error) {
	text, cookie := "", false
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return auth.Token{}, auth.ErrUnauthenticated
		}
		text = strings.TrimSpace(rest)
	} else if c, err := r.Cookie(auth.CookieName); err == nil {
		text, cookie = c.Value, true
	}
	if text == "" {
		return auth.Token{}, auth.ErrUnauthenticated
	}
	if cookie && r.Method != http.MethodGet && r.Method != http.MethodHead && !auth.CheckCSRF(text, r.Header.Get("X-CSRF-Token")) {
		return auth.Token{}, auth.ErrUnauthenticated
	}
	return s.tokens.Verify(r.Context(), text, s.cfg.Now())
}

// guard is what every request passes before its handler: a route of the
// spec, no parameter the spec does not list, a valid token of the role
// the operation needs (x-role), the token's rate, and the request valid
// against the spec.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		op := "unknown"
		defer func() { s.metrics.observe(op, rec.status, time.Since(start)) }()
		w = rec
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == BaseURL+"/openapi.json" && r.Method == http.MethodGet {
			op = "openapi"
			next.ServeHTTP(w, r)
			return
		}
		route, params, err := s.router.FindRoute(r)
		if err != nil {
			status := http.StatusNotFound
			if errors.Is(err, routers.ErrMethodNotAllowed) {
				status = http.StatusMethodNotAllowed
			}
			writeProblem(w, r, newProblem(status, "no such operation: "+BaseURL+"/openapi.json lists them"))
			return
		}
		op = route.Operation.OperationID
		if p := unknownParameters(route, r); p != nil {
			writeProblem(w, r, p)
			return
		}
		token, err := s.Authenticate(r)
		if err != nil {
			if !errors.Is(err, auth.ErrUnauthenticated) {
				s.log.Error("check a token", zap.Error(err))
				writeProblem(w, r, newProblem(http.StatusServiceUnavailable, "tokens cannot be checked now; try again"))
				return
			}
			writeProblem(w, r, errUnauthenticated)
			return
		}
		need, _ := route.Operation.Extensions["x-role"].(string)
		role, err := auth.ParseRole(need)
		if err != nil {
			role = auth.Admin // an operation the spec forgot to give a role is for admins
		}
		if !token.Role.Allows(role) {
			writeProblem(w, r, forbidden(role.String()))
			return
		}
		release, ok := s.limits.acquire(token.ID)
		if !ok {
			w.Header().Set("Retry-After", "1")
			writeProblem(w, r, errTooMany)
			return
		}
		defer release()
		// Bodies are small: an event is at most 64 KiB of JSON.
		limit := int64(0)
		if route.Operation.RequestBody != nil {
			limit = maxBody
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: false}}
		if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
			writeProblem(w, r, newProblem(http.StatusBadRequest, validationDetail(err)))
			return
		}
		ctx := context.WithValue(r.Context(), callerKey{}, &session{token: token, caller: Who(r, token)})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// maxBody is the largest request body taken (an event).
const maxBody = 64 << 10

var errTooMany = newProblem(http.StatusTooManyRequests,
	"this token is sending requests faster, or more at once, than the server allows (api.rate_limit; at most 4 at a time); slow down")

// Acquire reports whether a request of token t may start now (its rate,
// and its requests in flight); the web UI asks before each page. When it
// may, release must be called once the request is answered.
func (s *Server) Acquire(t auth.Token) (release func(), ok bool) { return s.limits.acquire(t.ID) }

// unknownParameters is a problem when r has a query parameter the
// operation does not take (a misspelt filter must not silently select
// everything).
func unknownParameters(route *routers.Route, r *http.Request) *problem {
	var known []string
	for _, params := range []openapi3.Parameters{route.PathItem.Parameters, route.Operation.Parameters} {
		for _, p := range params {
			if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
				known = append(known, p.Value.Name)
			}
		}
	}
	var unknown []string
	for k := range r.URL.Query() {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	slices.Sort(known)
	return newProblem(http.StatusBadRequest, "unknown parameter "+quoteList(unknown)+"; this operation takes "+quoteList(known))
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	out := make([]string, len(names))
	for i, n := range names {
		b, _ := json.Marshal(n)
		out[i] = string(b)
	}
	return strings.Join(out, ", ")
}

// validationDetail is what a request that fails validation is told: which
// parameter or body field, and why, without echoing its schema.
func validationDetail(err error) string {
	var re *openapi3filter.RequestError
	if errors.As(err, &re) {
		var se *openapi3.SchemaError
		reason := re.Reason
		if errors.As(re.Err, &se) {
			reason = se.Reason
			if p := se.JSONPointer(); len(p) > 0 {
				reason = strings.Join(p, ".") + ": " + reason
			}
		} else if re.Err != nil && reason == "" {
			reason = re.Err.Error()
		}
		switch {
		case re.Parameter != nil:
			return "parameter " + re.Parameter.Name + ": " + reason
		case re.RequestBody != nil:
			return "request body: " + reason
		}
		return reason
	}
	return "the request does not match the API's description (" + BaseURL + "/openapi.json)"
}

func (s *Server) requestError(w http.ResponseWriter, r *http.Request, err error) {
	writeProblem(w, r, newProblem(http.StatusBadRequest, err.Error()))
}

func (s *Server) responseError(w http.ResponseWriter, r *http.Request, err error) {
	p, known := asProblem(err)
	if !known {
		s.log.Error("answer a request", zap.String("path", r.URL.Path), zap.Error(err))
	}
	writeProblem(w, r, p)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Restorer undoes entries on the source database.
type Restorer interface {
	// Plan is how entry id would be undone, changing nothing.
	Plan(ctx context.Context, id int64) (RestorePlan, error)
	// Apply undoes entry id as who, and records a restored event.
	Apply(ctx context.Context, id int64, who Caller) (RestorePlan, error)
}
