package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/auth"
)

// TestAuth: no token, a malformed, unknown, wrong, revoked or expired one
// is a 401 problem; a token of a role below the operation's a 403; each
// role may do what it should.
func TestAuth(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{RatePerSecond: 1e6})
	viewer := e.tokens["viewer"]
	id := strings.Split(viewer, "_")[1]
	revoked, rtext, err := e.store.Create(ctx, "soon revoked", auth.Admin, "", time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Revoke(ctx, revoked.ID, "test"); err != nil {
		t.Fatal(err)
	}
	_, expired, err := e.store.Create(ctx, "expired", auth.Admin, "", time.Now().Add(-time.Minute), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, token string
	}{
		{"none", ""},
		{"malformed", "hello"},
		{"unknown id", "wst_aaaaaaaaaaaa_" + strings.Repeat("a", 52)},
		{"wrong secret", "wst_" + id + "_" + strings.Repeat("b", 52)},
		{"revoked", rtext},
		{"expired", expired},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := e.do(t, http.MethodGet, BaseURL+"/entries", c.token, nil)
			if res.status != http.StatusUnauthorized || !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("%d %v: %s", res.status, res.header, res.body)
			}
			res.problem(t)
		})
	}
	// Basic and other schemes are not bearer tokens.
	req, _ := http.NewRequest(http.MethodGet, e.http.URL+BaseURL+"/entries", nil)
	req.SetBasicAuth("u", viewer)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("basic auth: %v %v", res.StatusCode, err)
	}

	for _, c := range []struct {
		path   string
		method string
		roles  map[string]int
	}{
		{BaseURL + "/entries", http.MethodGet, map[string]int{"viewer": 200, "auditor": 200, "admin": 200}},
		{BaseURL + "/summary", http.MethodGet, map[string]int{"viewer": 200, "auditor": 200, "admin": 200}},
		{BaseURL + "/export?days=1", http.MethodGet, map[string]int{"viewer": 403, "auditor": 200, "admin": 200}},
		{BaseURL + "/exports", http.MethodGet, map[string]int{"viewer": 403, "auditor": 200, "admin": 200}},
		{BaseURL + "/tokens", http.MethodGet, map[string]int{"viewer": 403, "auditor": 403, "admin": 200}},
		{BaseURL + "/entries/1/restore", http.MethodGet, map[string]int{"viewer": 403, "auditor": 403, "admin": 501}},
		{BaseURL + "/entries/1/restore", http.MethodPost, map[string]int{"viewer": 403, "auditor": 403, "admin": 501}},
	} {
		for role, want := range c.roles {
			res := e.do(t, c.method, c.path, e.tokens[role], nil)
			if res.status != want {
				t.Errorf("%s %s as %s: %d, want %d: %s", c.method, c.path, role, res.status, want, res.body)
			}
			if want >= 400 {
				res.problem(t)
			}
		}
	}

	res := e.get(t, BaseURL+"/tokens", "admin")
	if strings.Contains(string(res.body), "secret") || strings.Contains(string(res.body), strings.Split(viewer, "_")[2]) {
		t.Errorf("the token list shows a secret: %s", res.body)
	}
	var list struct{ Data []Token }
	json.Unmarshal(res.body, &list)
	if len(list.Data) != 5 {
		t.Errorf("%d tokens listed, want 5", len(list.Data))
	}
	var secrets [][]byte
	rows, _ := e.admin.Query(ctx, `SELECT secret_sha256 FROM audit.api_tokens`)
	secrets, _ = pgx.CollectRows(rows, pgx.RowTo[[]byte])
	for _, s := range secrets {
		if strings.Contains(viewer, string(s)) || len(s) != 32 {
			t.Errorf("a stored secret is not a SHA-256: %x", s)
		}
	}
}

// TestRateLimit: a token sending faster than its rate gets 429s, and
// another token is not held back by it.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, Config{RatePerSecond: 0.001, Burst: 3})
	for i := range 3 {
		if res := e.get(t, BaseURL+"/whoami", "viewer"); res.status != http.StatusOK {
			t.Fatalf("request %d: %d", i, res.status)
		}
	}
	res := e.get(t, BaseURL+"/whoami", "viewer")
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" {
		t.Fatalf("the 4th request: %d %v", res.status, res.header)
	}
	res.problem(t)
	if res := e.get(t, BaseURL+"/whoami", "admin"); res.status != http.StatusOK {
		t.Errorf("another token: %d", res.status)
	}
}

// TestSessionCSRF: the session cookie stands for the token for reads;
// anything else needs the session's CSRF token too.
func TestSessionCSRF(t *testing.T) {
	e := newEnv(t, Config{RatePerSecond: 1e6})
	text := e.tokens["viewer"]
	send := func(method, path, csrf string, body string) int {
		req, _ := http.NewRequest(method, e.http.URL+path, strings.NewReader(body))
		req.AddCookie(auth.SessionCookie(text, time.Hour, false))
		req.Header.Set("Content-Type", "application/json")
		if csrf != "" {
			req.Header.Set("X-CSRF-Token", csrf)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := send(http.MethodGet, BaseURL+"/whoami", "", ""); got != http.StatusOK {
		t.Errorf("GET with the cookie: %d", got)
	}
	event := `{"action": "viewed", "target": "public.orders", "object_id": "1"}`
	if got := send(http.MethodPost, BaseURL+"/events", "", event); got != http.StatusUnauthorized {
		t.Errorf("POST with the cookie, without CSRF: %d", got)
	}
	if got := send(http.MethodPost, BaseURL+"/events", auth.CSRF(e.tokens["admin"]), event); got != http.StatusUnauthorized {
		t.Errorf("POST with another session's CSRF token: %d", got)
	}
	if got := send(http.MethodPost, BaseURL+"/events", auth.CSRF(text), event); got != http.StatusAccepted {
		t.Errorf("POST with the cookie and its CSRF token: %d", got)
	}
}
