package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/auth"
	"github.com/walscribe/walscribe/cdc"
	"github.com/walscribe/walscribe/internal/apitest"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/setup"
	"github.com/walscribe/walscribe/sink"
)

var srv *pgtest.Server

func TestMain(m *testing.M) {
	// JSON lines are text to the spec: checked as such.
	openapi3filter.RegisterBodyDecoder("application/jsonl", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(body)
		return string(b), err
	})
	os.Exit(pgtest.Main(m, &srv, pgtest.Options{}))
}

// env is a database set up by walscribe setup, with a seeded trail, the
// API served over HTTP as a reader role, and a token of each role.
type env struct {
	dsn     string
	admin   *pgx.Conn
	http    *httptest.Server
	server  *Server
	tokens  map[string]string // role -> token text
	store   *auth.Store
	spec    *openapi3.T
	router  routers.Router
	events  string // the test_decoding slot that sees log_event's messages
	reader  string // the role the API reads as
	entries int
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	ctx := context.Background()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY, note text)`)
	if err := setup.Run(ctx, setup.Config{SourceDSN: dsn, SinkSchema: "audit", Slot: "ws_" + strings.ReplaceAll(apitest.DBName(dsn), "-", "_"),
		Publication: "walscribe", ContextPrefix: "audit", Tables: []cdc.Table{{Schema: "public", Name: "orders", Key: "tables[0].name"}}},
		func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	e := &env{dsn: dsn, admin: pgtest.Connect(t, dsn), tokens: map[string]string{}}
	e.entries = seed(t, dsn)
	// The API reads as a member of the reader role, and records as a
	// member of the application group: nothing more.
	role := "api_" + strconv.Itoa(rand.IntN(1e9))
	pgtest.Exec(t, dsn, `CREATE ROLE `+role+`_r LOGIN IN ROLE walscribe_reader`, `CREATE ROLE `+role+`_e LOGIN IN ROLE walscribe_app`)
	t.Cleanup(func() { pgtest.Exec(t, srv.DSN("postgres"), `DROP OWNED BY `+role+`_r, `+role+`_e CASCADE`) })
	e.reader = role + "_r"
	reader := apitest.Pool(t, apitest.AsUser(dsn, role+"_r"))
	events := apitest.Pool(t, apitest.AsUser(dsn, role+"_e"))
	e.events = "ev_" + role
	pgtest.Exec(t, dsn, `SELECT pg_create_logical_replication_slot('`+e.events+`', 'test_decoding')`)
	t.Cleanup(func() {
		pgtest.Exec(t, srv.DSN("postgres"), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '`+e.events+`'`)
	})
	cfg.Schema = "audit"
	s, err := New(cfg, reader, NewSourceEvents(events, "audit", "audit"), zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e.server = s
	e.http = httptest.NewServer(s.Handler())
	t.Cleanup(e.http.Close)
	e.store = auth.NewStore(e.admin, "audit")
	for _, r := range []auth.Role{auth.Viewer, auth.Auditor, auth.Admin} {
		_, text, err := e.store.Create(ctx, "test "+r.String(), r, "42", time.Time{}, "test")
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[r.String()] = text
	}
	e.spec, _ = Spec()
	routing := *e.spec
	routing.Servers = openapi3.Servers{{URL: e.http.URL + BaseURL}}
	if e.router, err = legacy.NewRouter(&routing); err != nil {
		t.Fatal(err)
	}
	return e
}

// seed writes a varied trail over the last 20 days, hostile values
// among it, and returns how many entries it wrote.
func seed(t *testing.T, dsn string) int {
	t.Helper()
	ctx := context.Background()
	s := sink.NewPostgres(sink.Config{DSN: dsn, Schema: "audit", Slot: "seed", BatchMaxEntries: 1000, BatchMaxWait: time.Second}, zap.NewNop())
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UTC()
	tables := [][2]string{{"public", "orders"}, {"public", "users"}, {"billing", "invoices"}, {"public", `odd "name"/x`}}
	actions := []audit.Action{audit.Insert, audit.Update, audit.Update, audit.Delete, "exported", "login_failed"}
	actors := []string{"", "1", "2", "42", "<script>alert(1)</script>"}
	lsn, n := pglogrepl.LSN(0x1000000), 0
	for i := range 90 {
		at := now.Add(-time.Duration(r.IntN(20*24)) * time.Hour).Add(-time.Duration(i) * time.Second)
		tx := &audit.Transaction{Xid: uint32(1000 + i), CommitLSN: lsn, EndLSN: lsn + 0x100, CommittedAt: at}
		lsn += 0x1000
		actor := actors[r.IntN(len(actors))]
		c := &audit.Context{ActorID: actor, Actor: "name of " + actor, RequestID: fmt.Sprintf("req-%d", i%9), DBUser: []string{"app", "admin"}[i%2],
			UserAgent: "Mozilla/5.0 \"quoted\" <b>", IP: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i % 3), 0, byte(i)}), 32)}
		if actor == "" {
			c = nil
		}
		for j := range 1 + r.IntN(5) {
			tb, a, id := tables[r.IntN(len(tables))], actions[r.IntN(len(actions))], r.IntN(6)
			e := audit.Entry{Seq: int32(j + 1), Schema: tb[0], Table: tb[1], Action: a, PK: fmt.Appendf(nil, `{"id":%d}`, id),
				New: fmt.Appendf(nil, `{"id":%d,"note":"<img src=x onerror=alert(%d)>"}`, id, j), Ctx: c}
			if a == audit.Update || a == audit.Delete {
				e.Old = fmt.Appendf(nil, `{"id":%d,"note":"o"}`, id)
			}
			if a == audit.Update {
				e.Changed = [][]string{{"note"}, {"note", "total"}, {"total"}}[r.IntN(3)]
			}
			if a == audit.Delete {
				e.New = nil
			}
			tx.Entries = append(tx.Entries, e)
			n++
		}
		if err := s.Write(ctx, []*audit.Transaction{tx}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// response is an answer of the API, checked against the spec.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) problem(t *testing.T) Problem {
	t.Helper()
	var p Problem
	if err := json.Unmarshal(r.body, &p); err != nil || r.header.Get("Content-Type") != "application/problem+json" || p.Status != r.status {
		t.Fatalf("not a problem (%d %s): %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	return p
}

// do sends a request with token text (none when "") and checks the
// answer against the spec (when the route is the spec's).
func (e *env) do(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.http.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := response{status: res.StatusCode, header: res.Header}
	if out.body, err = io.ReadAll(res.Body); err != nil {
		t.Fatal(err)
	}
	if route, params, err := e.router.FindRoute(req); err == nil {
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: out.status, Header: out.header, Body: io.NopCloser(bytes.NewReader(out.body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true}}); err != nil {
			t.Errorf("%s %s: the answer (%d) does not match the spec: %v\n%s", method, path, out.status, err, out.body)
		}
	}
	return out
}

func (e *env) get(t *testing.T, path, role string) response {
	t.Helper()
	return e.do(t, http.MethodGet, path, e.tokens[role], nil)
}
