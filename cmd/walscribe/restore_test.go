package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestRestoreCommandAndAPI: a deleted row and an updated one are shown
// as the SQL that undoes them (walscribe restore, and the API for an
// admin), changed by nothing but --apply, and brought back by it, with a
// restored event in the trail; a row changed since is refused.
func TestRestoreCommandAndAPI(t *testing.T) {
	ctx := context.Background()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY, note text, total numeric(12,2))`,
		`INSERT INTO public.orders VALUES (1, 'it''s <b>', 10.50), (2, 'two', 2), (3, 'three', 3)`)
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, configFor(dsn, "public.orders")+fmt.Sprintf("api:\n  listen: 127.0.0.1:%d\n", port))
	setUp(t, cfg)
	startRun(t, cfg, nil)
	conn := pgtest.Connect(t, dsn)
	var before string
	if err := conn.QueryRow(ctx, `SELECT ROW(o.*)::text FROM public.orders o WHERE id = 1`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dsn, `DELETE FROM public.orders WHERE id = 1`, `UPDATE public.orders SET note = 'TWO', total = 22 WHERE id = 2`,
		`UPDATE public.orders SET note = 'THREE' WHERE id = 3`, `UPDATE public.orders SET note = 'changed again' WHERE id = 3`)
	entry := func(action string, id int) int64 {
		t.Helper()
		var e int64
		eventually(t, action+" of row "+fmt.Sprint(id), 30*time.Second, func() bool {
			return conn.QueryRow(ctx, `SELECT min(id) FROM audit.entries WHERE table_name = 'orders' AND action = $1 AND pk = jsonb_build_object('id', $2::int)`,
				action, id).Scan(&e) == nil && e > 0
		})
		return e
	}
	deleted, updated, stale := entry("delete", 1), entry("update", 2), entry("update", 3)

	out, code := walscribe(t, "restore", "--config", cfg, "--entry", fmt.Sprint(deleted))
	if code != 0 || !strings.Contains(out, "restore-delete") || !strings.Contains(out, `INSERT INTO "public"."orders"`) || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run (%d): %s", code, out)
	}
	if n := count(t, conn, `SELECT count(*) FROM public.orders WHERE id = 1`); n != 0 {
		t.Fatal("the dry run restored the row")
	}
	out, code = walscribe(t, "restore", "--config", cfg, "--entry", fmt.Sprint(stale))
	if code != 1 || !strings.Contains(out, "changed_since") {
		t.Errorf("a row changed since (%d): %s", code, out)
	}

	// The API, for an admin: a plan, and no apply without api.restore_dsn.
	tok, code := walscribe(t, "token", "create", "--config", cfg, "--name", "root", "--role", "admin")
	if code != 0 {
		t.Fatal(tok)
	}
	token := strings.TrimSpace(strings.Split(tok, "\n")[0])
	call := func(method string, id int64) (int, map[string]any) {
		req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d/api/v1/entries/%d/restore", port, id), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		return res.StatusCode, m
	}
	eventually(t, "the API", 20*time.Second, func() bool { c, _ := call(http.MethodGet, updated); return c != 0 })
	if c, plan := call(http.MethodGet, updated); c != http.StatusOK || plan["possible"] != true || plan["kind"] != "revert-update" ||
		!strings.Contains(fmt.Sprint(plan["sql"]), `UPDATE "public"."orders"`) {
		t.Errorf("plan: %d %v", c, plan)
	}
	if c, p := call(http.MethodPost, updated); c != http.StatusConflict || !strings.Contains(fmt.Sprint(p["detail"]), "api.restore_dsn") {
		t.Errorf("apply without api.restore_dsn: %d %v", c, p)
	}

	for _, id := range []int64{deleted, updated} {
		if out, code := walscribe(t, "restore", "--config", cfg, "--entry", fmt.Sprint(id), "--apply", "--actor", "ops"); code != 0 || !strings.Contains(out, "applied") {
			t.Fatalf("apply %d (%d): %s", id, code, out)
		}
	}
	var after, two string
	if err := conn.QueryRow(ctx, `SELECT ROW(o.*)::text FROM public.orders o WHERE id = 1`).Scan(&after); err != nil || after != before {
		t.Errorf("restored row %s, want %s (%v)", after, before, err)
	}
	if err := conn.QueryRow(ctx, `SELECT ROW(o.*)::text FROM public.orders o WHERE id = 2`).Scan(&two); err != nil || two != "(2,two,2.00)" {
		t.Errorf("reverted row %s (%v)", two, err)
	}
	eventually(t, "the restored events and the changes they made", 30*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE action = 'restored' AND actor = 'ops' AND table_name = 'orders'`) == 2 &&
			count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'orders' AND actor = 'ops' AND action IN ('insert', 'update')`) == 2
	})
}
