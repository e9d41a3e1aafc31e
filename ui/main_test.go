package ui

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/api"
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
	os.Exit(pgtest.Main(m, &srv, pgtest.Options{}))
}

// hostile is stored as an actor, a user agent and values: pages must
// show it as text.
const hostile = `<script>alert(1)</script>`

// env is a database set up by walscribe setup, with a seeded trail, the
// API and the UI served over HTTP as a reader role (the API at /api/v1,
// the UI at /, as cmd serves them), and a token of each role.
type env struct {
	dsn     string
	admin   *pgx.Conn
	reader  *pgxpool.Pool
	api     *api.Server
	http    *httptest.Server
	tokens  map[string]string // role -> token text
	store   *auth.Store
	events  string // the test_decoding slot that sees log_event's messages
	role    string // the role that records events
	entries int
	restore *fakeRestorer
}

// newEnv is an env whose UI has cfg (Schema and Restore filled in: a
// fake restorer unless noRestore).
func newEnv(t *testing.T, cfg Config, noRestore bool) *env {
	t.Helper()
	ctx := context.Background()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY, note text)`)
	if err := setup.Run(ctx, setup.Config{SourceDSN: dsn, SinkSchema: "audit", Slot: "ws_" + strings.ReplaceAll(apitest.DBName(dsn), "-", "_"),
		Publication: "walscribe", ContextPrefix: "audit", Tables: []cdc.Table{{Schema: "public", Name: "orders", Key: "tables[0].name"}}},
		func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	e := &env{dsn: dsn, admin: pgtest.Connect(t, dsn), tokens: map[string]string{}, restore: &fakeRestorer{}}
	e.entries = seed(t, dsn)
	// The API and the UI read as a member of the reader role, and record
	// as a member of the application group: nothing more.
	role := "ui_" + strconv.Itoa(rand.IntN(1e9))
	pgtest.Exec(t, dsn, `CREATE ROLE `+role+`_r LOGIN IN ROLE walscribe_reader`, `CREATE ROLE `+role+`_e LOGIN IN ROLE walscribe_app`)
	t.Cleanup(func() { pgtest.Exec(t, srv.DSN("postgres"), `DROP OWNED BY `+role+`_r, `+role+`_e CASCADE`) })
	e.role = role + "_e"
	e.reader = apitest.Pool(t, apitest.AsUser(dsn, role+"_r"))
	events := apitest.Pool(t, apitest.AsUser(dsn, role+"_e"))
	e.events = "ev_" + role
	pgtest.Exec(t, dsn, `SELECT pg_create_logical_replication_slot('`+e.events+`', 'test_decoding')`)
	t.Cleanup(func() {
		pgtest.Exec(t, srv.DSN("postgres"), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '`+e.events+`'`)
	})
	acfg := api.Config{Schema: "audit", RatePerSecond: 1e6}
	if !noRestore {
		acfg.Restore = e.restore
	}
	s, err := api.New(acfg, e.reader, api.NewSourceEvents(events, "audit", "audit"), zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e.api = s
	e.http = httptest.NewServer(e.handler(t, cfg, noRestore))
	t.Cleanup(e.http.Close)
	e.store = auth.NewStore(e.admin, "audit")
	for _, r := range []auth.Role{auth.Viewer, auth.Auditor, auth.Admin} {
		_, text, err := e.store.Create(ctx, "test "+r.String(), r, "42", time.Time{}, "test")
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[r.String()] = text
	}
	return e
}

// handler serves the API and a UI of cfg, as cmd does.
func (e *env) handler(t *testing.T, cfg Config, noRestore bool) http.Handler {
	t.Helper()
	cfg.Schema = "audit"
	if !noRestore {
		cfg.Restore = e.restore
	}
	u, err := New(cfg, e.api, e.reader, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(api.BaseURL+"/", e.api.Handler())
	mux.Handle("/", u.Handler())
	return mux
}

// seed writes a varied trail over the last 20 days, hostile values among
// it, a row's whole life (public.orders id 100: insert, update, delete),
// an event and two alerts of a watch; it returns how many entries it
// wrote.
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
	actors := []string{"", "1", "2", "42", hostile}
	lsn, n := pglogrepl.LSN(0x1000000), 0
	var txs []*audit.Transaction
	for i := range 90 {
		at := now.Add(-time.Duration(r.IntN(20*24)) * time.Hour).Add(-time.Duration(i) * time.Second)
		tx := &audit.Transaction{Xid: uint32(1000 + i), CommitLSN: lsn, EndLSN: lsn + 0x100, CommittedAt: at}
		lsn += 0x1000
		actor := actors[r.IntN(len(actors))]
		c := &audit.Context{ActorID: actor, Actor: "name of " + actor, RequestID: fmt.Sprintf("req-%d", i%9), DBUser: []string{"app", "admin"}[i%2],
			UserAgent: "Mozilla/5.0 " + hostile + " <b>", IP: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i % 3), 0, byte(i)}), 32)}
		if actor == "" {
			c = nil
		}
		for j := range 1 + r.IntN(5) {
			tb, a, id := tables[r.IntN(len(tables))], actions[r.IntN(len(actions))], r.IntN(6)
			e := audit.Entry{Seq: int32(j + 1), Schema: tb[0], Table: tb[1], Action: a, PK: fmt.Appendf(nil, `{"id":%d}`, id),
				New: fmt.Appendf(nil, `{"id":%d,"note":"<img src=x onerror=alert(%d)>","total":%d}`, id, j, i), Ctx: c}
			if a == audit.Update || a == audit.Delete {
				e.Old = fmt.Appendf(nil, `{"id":%d,"note":%q,"total":1}`, id, hostile)
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
		txs = append(txs, tx)
	}
	// A row's life, by actor 7, an hour apart.
	life := []audit.Entry{
		{Action: audit.Insert, New: []byte(`{"id":100,"note":"new","total":5}`)},
		{Action: audit.Update, Old: []byte(`{"id":100,"note":"new","total":5}`), New: []byte(`{"id":100,"note":"` + strings.ReplaceAll(hostile, `"`, `\"`) + `","total":6}`), Changed: []string{"note", "total"}},
		{Action: audit.Delete, Old: []byte(`{"id":100,"note":"x","total":6}`)},
	}
	for i, e := range life {
		e.Seq, e.Schema, e.Table, e.PK = 1, "public", "orders", []byte(`{"id":100}`)
		e.Ctx = &audit.Context{ActorID: "7", Actor: "Seven", RequestID: "life-" + strconv.Itoa(i), UserAgent: hostile}
		txs = append(txs, &audit.Transaction{Xid: uint32(5000 + i), CommitLSN: lsn, EndLSN: lsn + 0x100, CommittedAt: now.Add(time.Duration(i-3) * time.Hour), Entries: []audit.Entry{e}})
		lsn += 0x1000
		n++
	}
	// Two alerts of a watch, as watch writes them.
	for i := range 2 {
		alert := fmt.Appendf(nil, `{"id":"mass-delete:%d","watch":"mass-delete","kind":"threshold","description":%q,"count":50}`, i, hostile+" deleted 50 rows")
		txs = append(txs, &audit.Transaction{Xid: uint32(6000 + i), CommitLSN: lsn, EndLSN: lsn + 0x100, CommittedAt: now.Add(-time.Duration(i+1) * time.Minute),
			Entries: []audit.Entry{{Seq: 1, Schema: "walscribe", Table: "watch", Action: "alert", New: alert}}})
		lsn += 0x1000
		n++
	}
	// The sink stores in commit order.
	for _, tx := range txs {
		if err := s.Write(ctx, []*audit.Transaction{tx}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// fakeRestorer plans and applies restores with a fixed SQL, a hostile
// value in it; it refuses the entries of refuse. It stands for package
// restore, which is not PostgreSQL.
type fakeRestorer struct {
	mu      sync.Mutex
	refuse  map[int64]string
	applied []api.Caller
}

var _ api.Restorer = (*fakeRestorer)(nil)

func (f *fakeRestorer) plan(id int64) api.RestorePlan {
	f.mu.Lock()
	defer f.mu.Unlock()
	if reason, ok := f.refuse[id]; ok {
		return api.RestorePlan{EntryId: id, Kind: "restore-delete", Reason: &reason}
	}
	return api.RestorePlan{EntryId: id, Kind: "restore-delete", Possible: true,
		Sql: `INSERT INTO public.orders (id, note) VALUES (100, '` + hostile + `')`}
}

func (f *fakeRestorer) Plan(ctx context.Context, id int64) (api.RestorePlan, error) {
	return f.plan(id), nil
}

func (f *fakeRestorer) Apply(ctx context.Context, id int64, who api.Caller) (api.RestorePlan, error) {
	p := f.plan(id)
	if p.Possible {
		f.mu.Lock()
		f.applied = append(f.applied, who)
		f.mu.Unlock()
		p.Applied = new(true)
	}
	return p, nil
}

func (f *fakeRestorer) calls() []api.Caller {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Caller(nil), f.applied...)
}

// client is a browser without JavaScript: a cookie jar, no redirects
// followed.
type client struct {
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) client(t *testing.T) *client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &client{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// signIn is a client signed in with the token of role.
func (e *env) signIn(t *testing.T, role string) *client {
	t.Helper()
	c := e.client(t)
	res := c.post(t, "/signin", url.Values{"token": {e.tokens[role]}, "next": {"/"}})
	if res.status != http.StatusSeeOther {
		t.Fatalf("sign in as %s: %d %s", role, res.status, res.body)
	}
	c.csrf = auth.CSRF(e.tokens[role])
	return c
}

// response is an answer of the UI.
type response struct {
	status int
	header http.Header
	body   string
}

func (c *client) do(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

func (c *client) get(t *testing.T, path string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.e.http.URL+path, nil)
	return c.do(t, req)
}

func (c *client) post(t *testing.T, path string, form url.Values) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.e.http.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(t, req)
}

var idPattern = regexp.MustCompile(`<tr class="entry [a-z-]+" data-id="(\d+)">`)

// ids are the entries a page lists, in its order.
func (r response) ids() []int64 {
	var out []int64
	for _, m := range idPattern.FindAllStringSubmatch(r.body, -1) {
		id, _ := strconv.ParseInt(m[1], 10, 64)
		out = append(out, id)
	}
	return out
}

// ids are the ids of the entries where selects, in its order.
func (e *env) ids(t *testing.T, where string, args ...any) []int64 {
	t.Helper()
	rows, err := e.admin.Query(context.Background(), `SELECT id FROM audit.entries WHERE `+where, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) id(t *testing.T, where string, args ...any) int64 {
	t.Helper()
	ids := e.ids(t, where+` ORDER BY id DESC LIMIT 1`, args...)
	if len(ids) == 0 {
		t.Fatalf("no entry where %s", where)
	}
	return ids[0]
}

// sent are the events log_event has put into the stream since the last
// call: what walscribe will store in the trail.
func (e *env) sent(t *testing.T) []map[string]any {
	t.Helper()
	return apitest.Sent(t, e.admin, e.events)
}
