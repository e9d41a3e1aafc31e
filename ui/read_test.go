package ui

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestReadsRecorded: each page that shows entries first puts a read
// event into the trail's stream — who (the token's actor id and name,
// address, user agent), what (the page, the filter or the entry) and how
// many rows — as the API does; the sign-in page and static files read
// nothing. A read that cannot be recorded shows nothing.
func TestReadsRecorded(t *testing.T) {
	e := newEnv(t, Config{}, false)
	c := e.signIn(t, "admin")
	e.sent(t)
	pages := e.pages(t)
	ops := map[string]string{"list": "ui.listEntries", "list 30 d": "ui.listEntries", "alerts": "ui.listEntries", "entry": "ui.getEntry",
		"alert entry": "ui.getEntry", "history": "ui.rowHistory", "transaction": "ui.getTransaction", "request": "ui.getRequest",
		"actor": "ui.actorActivity", "me": "ui.myActivity", "summary": "ui.getSummary", "summary 7 d": "ui.getSummary", "restore": "ui.planRestore"}
	for name, path := range pages {
		if res := c.get(t, path); res.status != http.StatusOK {
			t.Fatalf("%s: %d", path, res.status)
		}
		ev := e.sent(t)
		if len(ev) != 1 {
			t.Errorf("%s: %d events, want 1: %v", name, len(ev), ev)
			continue
		}
		m := ev[0]
		ctx, _ := m["context"].(map[string]any)
		data, _ := m["data"].(map[string]any)
		if m["action"] != "read" || m["target"] != "audit.entries" || ctx["actor_id"] != "42" || ctx["ip"] != "127.0.0.1" ||
			!strings.HasPrefix(fmt.Sprint(ctx["actor"]), "token:test admin ") || ctx["user_agent"] != "Go-http-client/1.1" ||
			data["operation"] != ops[name] || data["role"] != "admin" || data["token_id"] != strings.Split(e.tokens["admin"], "_")[1] {
			t.Errorf("%s: event %v", name, m)
		}
	}
	// What was read.
	res := c.get(t, "/?days=30&action=delete&limit=3")
	ev := e.sent(t)
	if len(ev) != 1 || len(res.ids()) != 3 {
		t.Fatalf("%d events, %d rows", len(ev), len(res.ids()))
	}
	data, _ := ev[0]["data"].(map[string]any)
	if f, _ := data["filter"].(map[string]any); data["rows"] != 3.0 || fmt.Sprint(f["actions"]) != "[delete]" || data["before_id"] != nil {
		t.Errorf("list event: %v", ev[0])
	}
	if m := olderLink.FindStringSubmatch(res.body); m == nil {
		t.Error("no older link")
	} else {
		c.get(t, strings.ReplaceAll(m[1], "&amp;", "&"))
		if ev := e.sent(t); len(ev) != 1 || ev[0]["data"].(map[string]any)["before_id"] != float64(res.ids()[2]) {
			t.Errorf("older page event: %v", ev)
		}
	}
	id := res.ids()[0]
	c.get(t, fmt.Sprintf("/entries/%d", id))
	if ev := e.sent(t); len(ev) != 1 || ev[0]["object_id"] != fmt.Sprint(id) || ev[0]["data"].(map[string]any)["rows"] != 1.0 {
		t.Errorf("entry event: %v", ev)
	}
	for _, path := range []string{"/signin", "/static/htmx.min.js", "/static/style.css", "/nothing", "/?ip=bad"} {
		c.get(t, path)
	}
	if ev := e.sent(t); len(ev) != 0 {
		t.Errorf("pages that show no entry recorded %v", ev)
	}

	// A read that cannot be recorded shows nothing.
	e.admin.Exec(context.Background(), `REVOKE walscribe_app FROM `+e.role)
	for name, path := range pages {
		res := c.get(t, path)
		if res.status != http.StatusServiceUnavailable || len(res.ids()) != 0 || strings.Contains(res.body, "alert(1)") ||
			!strings.Contains(res.body, "could not be recorded") || strings.Contains(res.body, "permission denied") {
			t.Errorf("%s unrecorded: %d\n%s", name, res.status, res.body)
		}
	}
}
