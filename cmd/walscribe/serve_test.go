package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestServeEndToEnd: walscribe run with api.listen and walscribe serve
// answer with a token made by walscribe token create, not without one nor
// once it is revoked; each read reaches the trail as a read event of the
// token's holder; creating and revoking the token are in the trail too.
func TestServeEndToEnd(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY, note text)`)
	runPort, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, configFor(dsn, "public.orders")+fmt.Sprintf("api:\n  listen: 127.0.0.1:%d\n", runPort))
	setUp(t, cfg)
	startRun(t, cfg, nil)
	conn := pgtest.Connect(t, dsn)
	pgtest.Exec(t, dsn, `BEGIN; SET LOCAL audit.actor_id = '7'; INSERT INTO public.orders VALUES (1, '<script>x</script>'), (2, 'b'); COMMIT`)
	eventually(t, "the inserts in the trail", 30*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'orders'`) == 2
	})

	out, code := walscribe(t, "token", "create", "--config", cfg, "--name", "alice", "--role", "viewer", "--actor-id", "7")
	if code != 0 {
		t.Fatalf("token create (%d): %s", code, out)
	}
	var token string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "wst_") {
			token = strings.TrimSpace(l)
		}
	}
	if token == "" {
		t.Fatalf("no token printed: %s", out)
	}
	get := func(base, path, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, body
	}
	runURL := fmt.Sprintf("http://127.0.0.1:%d", runPort)
	eventually(t, "the API of walscribe run", 20*time.Second, func() bool {
		code, _ := get(runURL, "/api/v1/openapi.json", "")
		return code == http.StatusOK
	})
	code, body := get(runURL, "/api/v1/me/activity?table=public.orders", token)
	var page struct {
		Data []struct {
			Table string          `json:"table"`
			New   json.RawMessage `json:"new"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &page); code != http.StatusOK || err != nil || len(page.Data) != 2 {
		t.Fatalf("me/activity: %d %v %s", code, err, body)
	}
	if code, _ := get(runURL, "/api/v1/entries", ""); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d", code)
	}
	eventually(t, "the read event in the trail", 30*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE action = 'read' AND actor_id = '7' AND actor LIKE 'token:alice (%'
			AND new->>'operation' = 'myActivity' AND (new->>'rows')::int = 2 AND ip = '127.0.0.1'`) == 1
	})

	// walscribe serve: the same API on its own.
	servePort, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	serve := command(t, "serve", "--config", cfg, "--listen", fmt.Sprintf("127.0.0.1:%d", servePort))
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Signal(syscall.SIGTERM); serve.Wait() })
	serveURL := fmt.Sprintf("http://127.0.0.1:%d", servePort)
	eventually(t, "walscribe serve", 20*time.Second, func() bool {
		code, _ := get(serveURL, "/healthz", "")
		return code == http.StatusOK
	})
	if code, body := get(serveURL, "/api/v1/entries?days=1&action=insert", token); code != http.StatusOK || !strings.Contains(string(body), `"orders"`) {
		t.Errorf("serve: %d %s", code, body)
	}
	if code, body := get(serveURL, "/metrics", ""); code != http.StatusOK || !strings.Contains(string(body), `walscribe_api_requests_total{code="200",operation="listEntries"} 1`) {
		t.Errorf("serve's metrics: %d %s", code, body)
	}

	id := strings.Split(token, "_")[1]
	if out, code := walscribe(t, "token", "revoke", "--config", cfg, id); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke (%d): %s", code, out)
	}
	if code, _ := get(runURL, "/api/v1/entries", token); code != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d", code)
	}
	if out, code := walscribe(t, "token", "list", "--config", cfg); code != 0 || !strings.Contains(out, "revoked") || strings.Contains(out, token) {
		t.Errorf("token list (%d): %s", code, out)
	}
	if n := count(t, conn, `SELECT count(*) FROM audit.entries WHERE schema_name = 'walscribe' AND table_name = 'token'
		AND action IN ('token_created', 'token_revoked') AND new->>'token_id' = $1`, id); n != 2 {
		t.Errorf("%d token entries in the trail, want 2", n)
	}
	_ = ctx
}

// TestAPIProblemKeepsCapture: an API that cannot start (its database
// unreachable) is logged and retried; walscribe run captures anyway.
func TestAPIProblemKeepsCapture(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY)`)
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, configFor(dsn, "public.orders")+fmt.Sprintf("api:\n  listen: 127.0.0.1:%d\n  dsn: postgres://nobody@127.0.0.1:1/none?connect_timeout=1\n", port))
	setUp(t, cfg)
	startRun(t, cfg, nil)
	conn := pgtest.Connect(t, dsn)
	pgtest.Exec(t, dsn, `INSERT INTO public.orders VALUES (1), (2)`)
	eventually(t, "the inserts in the trail", 30*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'orders'`) == 2
	})
}
