package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestWatchFiresOncePerBreach: walscribe run with a threshold watch
// records one alert (in the trail, and to the webhook) when an actor
// deletes more rows than the watch allows, none more while the breach
// lasts, and none for another actor under the limit.
func TestWatchFiresOncePerBreach(t *testing.T) {
	var mu sync.Mutex
	var posts []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		mu.Lock()
		posts = append(posts, m)
		mu.Unlock()
	}))
	defer hook.Close()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY)`, `INSERT INTO public.orders SELECT generate_series(1, 100)`)
	cfg := writeConfig(t, configFor(dsn, "public.orders")+`watches:
  - name: bulk_deletes
    kind: threshold
    tables: [public.orders]
    actions: [delete]
    by: actor_id
    count: 5
    window: 10m
    webhook: `+hook.URL+`
`)
	setUp(t, cfg)
	startRun(t, cfg, nil)
	conn := pgtest.Connect(t, dsn)
	del := func(actor string, from, to int) {
		pgtest.Exec(t, dsn, `BEGIN; SET LOCAL audit.actor_id = '`+actor+`'; DELETE FROM public.orders WHERE id BETWEEN `+strconv.Itoa(from)+` AND `+strconv.Itoa(to)+`; COMMIT`)
	}
	del("9", 1, 4)    // 4: under the limit
	del("9", 5, 7)    // 7: over it, once
	del("9", 8, 20)   // still in breach
	del("10", 21, 24) // another actor, under it
	eventually(t, "the deletes in the trail", 30*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE action = 'delete'`) == 24
	})
	eventually(t, "the alert", 30*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE schema_name = 'walscribe' AND table_name = 'watch' AND action = 'alert'`) >= 1
	})
	time.Sleep(time.Second) // time for a second alert, if one were coming
	if n := count(t, conn, `SELECT count(*) FROM audit.entries WHERE schema_name = 'walscribe' AND table_name = 'watch' AND action = 'alert'
		AND new->>'watch' = 'bulk_deletes' AND new->>'group' = '9'`); n != 1 {
		t.Errorf("%d alerts for actor 9, want 1", n)
	}
	if n := count(t, conn, `SELECT count(*) FROM audit.entries WHERE action = 'alert'`); n != 1 {
		t.Errorf("%d alerts in all, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || posts[0]["watch"] != "bulk_deletes" || posts[0]["group"] != "9" {
		t.Errorf("webhook got %v", posts)
	}
}
