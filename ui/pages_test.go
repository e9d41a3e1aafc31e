package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walscribe/walscribe/auth"
)

// pages are a path of every page, for the seeded trail of e.
func (e *env) pages(t *testing.T) map[string]string {
	t.Helper()
	var lsn, req string
	update := e.id(t, `action = 'update' AND actor_id = $1`, hostile)
	if err := e.admin.QueryRow(context.Background(), `SELECT commit_lsn::text, request_id FROM audit.entries WHERE id = $1`, update).Scan(&lsn, &req); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"list":        "/",
		"list 30 d":   "/?days=30&action=update&action=delete",
		"alerts":      "/?action=alert&days=30",
		"entry":       fmt.Sprintf("/entries/%d", update),
		"alert entry": fmt.Sprintf("/entries/%d", e.id(t, `action = 'alert'`)),
		"history":     "/history?" + url.Values{"table": {"public.orders"}, "pk": {`{"id": 100}`}}.Encode(),
		"transaction": "/transaction?lsn=" + url.QueryEscape(lsn),
		"request":     "/request?request_id=" + url.QueryEscape(req),
		"actor":       "/actor?actor_id=" + url.QueryEscape(hostile),
		"me":          "/me",
		"summary":     "/summary",
		"summary 7 d": "/summary?days=7",
		"restore":     fmt.Sprintf("/entries/%d/restore", update),
	}
}

// TestPages: every page answers 200 for the seeded trail, as an admin,
// with the security headers, and shows every captured value as text.
func TestPages(t *testing.T) {
	e := newEnv(t, Config{}, false)
	c := e.signIn(t, "admin")
	for name, path := range e.pages(t) {
		t.Run(name, func(t *testing.T) {
			res := c.get(t, path)
			if res.status != http.StatusOK {
				t.Fatalf("%s: %d\n%s", path, res.status, res.body)
			}
			checkHeaders(t, res)
			checkEscaped(t, res.body)
			if !strings.Contains(res.body, `<script src="/static/htmx.min.js" defer></script>`) {
				t.Errorf("%s does not load htmx", path)
			}
		})
	}
	// What each page shows.
	for _, c2 := range []struct{ path, want string }{
		{"/summary", `<svg id="chart"`},
		{"/summary", `<rect class="deletes"`},
		{"/?action=alert&days=30", `mass-delete: &lt;script&gt;alert(1)&lt;/script&gt; deleted 50 rows`},
		{"/?action=alert&days=30", `<span class="action act-alert">alert</span>`},
		{"/history?table=public.orders&pk=%7B%22id%22%3A100%7D", `<span class="action act-delete">delete</span>`},
		{"/me", `My activity (actor 42)`},
	} {
		if res := c.get(t, c2.path); !strings.Contains(res.body, c2.want) {
			t.Errorf("%s: no %s in\n%s", c2.path, c2.want, res.body)
		}
	}
	// The history is the row's whole life, newest first.
	res := c.get(t, "/history?table=public.orders&pk=%7B%22id%22%3A100%7D")
	if got, want := res.ids(), e.ids(t, `table_name = 'orders' AND pk = '{"id":100}' ORDER BY id DESC`); !slices.Equal(got, want) || len(want) < 3 {
		t.Errorf("history: %v, want %v", got, want)
	}
	// The entry: every column, the images side by side, changes marked,
	// links to the row, the transaction, the request and the actor.
	id := e.id(t, `action = 'update' AND actor_id = '7'`)
	res = c.get(t, fmt.Sprintf("/entries/%d", id))
	for _, want := range []string{
		`<tr class="field changed" data-column="note">`, `<tr class="field changed" data-column="total">`, `<tr class="field" data-column="id">`,
		`<dd id="meta-user_agent">&lt;script&gt;alert(1)&lt;/script&gt;</dd>`, `<dd id="meta-actor">Seven</dd>`,
		`href="/history?pk=%7B%22id%22%3A&#43;100%7D&amp;table=public.orders"`, `href="/transaction?lsn=`, `href="/request?request_id=life-1"`, `href="/actor?actor_id=7"`,
		`<td class="new"><code>&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;</code></td>`,
	} {
		if !strings.Contains(res.body, want) {
			t.Errorf("entry %d: no %s in\n%s", id, want, res.body)
		}
	}

	for _, c2 := range []struct {
		path   string
		status int
		says   string
	}{
		{"/nothing", http.StatusNotFound, "no such page"},
		{"/entries/99999999", http.StatusNotFound, "no such page or entry"},
		{"/entries/abc", http.StatusNotFound, "no such page"},
		{"/history?table=public.orders", http.StatusBadRequest, "key"},
		{"/transaction?lsn=xyz", http.StatusBadRequest, "commit LSN"},
		{"/transaction?lsn=0/1", http.StatusNotFound, "No entry has that commit LSN"},
		{"/request", http.StatusBadRequest, "request_id"},
		{"/actor", http.StatusBadRequest, "actor_id"},
		{"/?ip=nope", http.StatusBadRequest, "ip &#34;nope&#34;"},
		{"/?days=7&since=2026-01-01", http.StatusBadRequest, "days or since"},
		{"/?cursor=abc", http.StatusBadRequest, "cursor"},
		{"/?limit=501", http.StatusBadRequest, "limit"},
		{"/?since=yesterday", http.StatusBadRequest, "since"},
		{"/?pk=42", http.StatusBadRequest, "pk"},
		{"/?pk=%7Bx", http.StatusBadRequest, "pk"},
		{"/summary?days=0", http.StatusBadRequest, "days"},
		{"/?tabel=public.orders", http.StatusBadRequest, `Unknown parameter &#34;tabel&#34;`},
		{"/history?table=public.orders&pk=%7B%7D&actor_id=1", http.StatusBadRequest, `Unknown parameter &#34;actor_id&#34;`},
		{"/summary?limit=5", http.StatusBadRequest, `Unknown parameter &#34;limit&#34;`},
	} {
		res := c.get(t, c2.path)
		if res.status != c2.status || !strings.Contains(res.body, c2.says) {
			t.Errorf("%s: %d, want %d that says %q:\n%s", c2.path, res.status, c2.status, c2.says, res.body)
		}
		checkHeaders(t, res)
	}
	// A token without an actor id has no activity of its own.
	_, text, err := e.store.Create(context.Background(), "no actor", auth.Viewer, "", time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["noactor"] = text
	if res := e.signIn(t, "noactor").get(t, "/me"); res.status != http.StatusNotFound || !strings.Contains(res.body, "--actor-id") {
		t.Errorf("/me without an actor id: %d %s", res.status, res.body)
	}
}

// checkHeaders: the answer forbids scripts and styles of anywhere but the
// UI, framing and referrers.
func checkHeaders(t *testing.T, res response) {
	t.Helper()
	for k, v := range map[string]string{
		"Content-Security-Policy": contentSecurityPolicy,
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
	} {
		if got := res.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	csp := res.header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, want) || strings.Contains(csp, "unsafe") {
			t.Errorf("CSP %q: want %s and nothing unsafe", csp, want)
		}
	}
}

var scriptTag = regexp.MustCompile(`(?i)<script`)

// checkEscaped: the page has no script but htmx, and no captured markup
// as markup.
func checkEscaped(t *testing.T, body string) {
	t.Helper()
	for _, raw := range []string{hostile, "<img src=x", "<b>", "onerror=alert"} {
		if strings.Contains(body, raw) && raw != "onerror=alert" {
			t.Errorf("%q appears raw", raw)
		}
	}
	if strings.Contains(body, "<img") {
		t.Errorf("an <img> tag appears")
	}
	if n := len(scriptTag.FindAllString(body, -1)); n != 1 {
		t.Errorf("%d script tags, want 1 (htmx)", n)
	}
	if strings.Contains(body, "alert(1)") && !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("alert(1) appears, but not escaped")
	}
}

// TestEscaped: a stored <script> (actor, user agent, values) is shown
// escaped wherever it appears, and never raw.
func TestEscaped(t *testing.T) {
	e := newEnv(t, Config{}, false)
	c := e.signIn(t, "admin")
	for name, path := range e.pages(t) {
		res := c.get(t, path)
		checkEscaped(t, res.body)
		switch name {
		case "me", "summary 7 d", "list", "history": // they need not show a hostile value
		default:
			if !strings.Contains(res.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
				t.Errorf("%s (%s): the hostile value is not shown (escaped)", name, path)
			}
		}
	}
	// In attributes too: the filter form shows the filter's values.
	res := c.get(t, "/?actor_id="+url.QueryEscape(hostile)+"&table="+url.QueryEscape(`x" onmouseover="alert(1)`))
	if !strings.Contains(res.body, `value="&lt;script&gt;alert(1)&lt;/script&gt;"`) || strings.Contains(res.body, `" onmouseover="`) {
		t.Errorf("form values not escaped:\n%s", res.body)
	}
}

// TestStatic: the style sheet and htmx are served from the binary, htmx
// as vendored.
func TestStatic(t *testing.T) {
	e := newEnv(t, Config{}, false)
	c := e.client(t)
	res := c.get(t, "/static/htmx.min.js")
	sum := sha256.Sum256([]byte(res.body))
	if res.status != http.StatusOK || hex.EncodeToString(sum[:]) != HTMXSHA256 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/javascript") {
		t.Errorf("htmx: %d %s, sha256 %x", res.status, res.header.Get("Content-Type"), sum)
	}
	if !strings.Contains(res.body, `version:"2.0.11"`) {
		t.Error("htmx is not 2.0.11")
	}
	if res := c.get(t, "/static/style.css"); res.status != http.StatusOK || !strings.HasPrefix(res.header.Get("Content-Type"), "text/css") {
		t.Errorf("style: %d %s", res.status, res.header.Get("Content-Type"))
	}
	if res := c.get(t, "/static/htmx.LICENSE"); res.status != http.StatusOK || !strings.Contains(res.body, "Zero-Clause BSD") {
		t.Errorf("licence: %d", res.status)
	}
	for _, p := range []string{"/static/", "/static/nothing.js", "/static/../ui.go"} {
		if res := c.get(t, p); res.status == http.StatusOK || strings.Contains(res.body, "package ui") {
			t.Errorf("%s: %d", p, res.status)
		}
	}
}
