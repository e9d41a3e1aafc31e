package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/walscribe/walscribe/auth"
)

func sessionCookie(res response) *http.Cookie {
	for _, c := range (&http.Response{Header: res.header}).Cookies() {
		if c.Name == auth.CookieName {
			return c
		}
	}
	return nil
}

// TestSignIn: pages send the browser to sign in; a bad token is refused
// with no cookie; a good one gets the session cookie (HttpOnly,
// SameSite=Strict, Secure over TLS) and goes back where it was, never to
// another site; a sign-in posted from another site is refused; signing
// out needs the CSRF token and clears the cookie.
func TestSignIn(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{SessionMaxAge: time.Hour}, false)
	c := e.client(t)
	for path, next := range map[string]string{"/": "/", "/summary?days=7": "/summary?days=7", "/entries/1": "/entries/1"} {
		res := c.get(t, path)
		if loc := res.header.Get("Location"); res.status != http.StatusSeeOther || loc != "/signin?"+(url.Values{"next": {next}}).Encode() {
			t.Errorf("%s signed out: %d to %q", path, res.status, loc)
		}
	}
	res := c.get(t, "/signin?next=%2Fsummary")
	if res.status != http.StatusOK || !strings.Contains(res.body, `<form id="signin" class="signin" method="post" action="/signin"`) ||
		!strings.Contains(res.body, `<input type="hidden" name="next" value="/summary">`) {
		t.Fatalf("sign-in page: %d\n%s", res.status, res.body)
	}
	checkHeaders(t, res)

	revoked, rtext, err := e.store.Create(ctx, "revoked", auth.Admin, "", time.Time{}, "test")
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
	viewer := e.tokens["viewer"]
	for name, token := range map[string]string{"empty": "", "malformed": "hello", "wrong secret": viewer[:len(viewer)-3] + "aaa",
		"revoked": rtext, "expired": expired, "hostile": hostile} {
		res := c.post(t, "/signin", url.Values{"token": {token}})
		if res.status != http.StatusUnauthorized || !strings.Contains(res.body, "That token is not valid") || sessionCookie(res) != nil {
			t.Errorf("%s token: %d %v", name, res.status, res.header)
		}
		checkEscaped(t, res.body)
	}

	res = c.post(t, "/signin", url.Values{"token": {" " + viewer + "\n"}, "next": {"/summary?days=7"}})
	cookie := sessionCookie(res)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/summary?days=7" || cookie == nil {
		t.Fatalf("sign in: %d %v", res.status, res.header)
	}
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure || cookie.Path != "/" || cookie.Value != viewer ||
		cookie.MaxAge != 3600 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure (no TLS), Path=/, an hour", cookie)
	}
	if res := c.get(t, "/summary?days=7"); res.status != http.StatusOK || !strings.Contains(res.body, "test viewer · viewer") {
		t.Errorf("signed in: %d", res.status)
	}

	// Never to another site.
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/signin", ""} {
		res := e.client(t).post(t, "/signin", url.Values{"token": {viewer}, "next": {next}})
		if res.header.Get("Location") != "/" {
			t.Errorf("next %q: to %q", next, res.header.Get("Location"))
		}
	}
	// A sign-in posted from another site.
	for name, h := range map[string][2]string{
		"origin":         {"Origin", "http://evil.example"},
		"null origin":    {"Origin", "null"},
		"sec-fetch-site": {"Sec-Fetch-Site", "cross-site"},
		"same site":      {"Sec-Fetch-Site", "same-site"},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/signin", strings.NewReader(url.Values{"token": {viewer}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(h[0], h[1])
		res := e.client(t).do(t, req)
		if res.status != http.StatusForbidden || sessionCookie(res) != nil {
			t.Errorf("%s: %d %v", name, res.status, res.header)
		}
	}
	for name, h := range map[string]map[string]string{
		"same origin":            {"Origin": e.http.URL},
		"same origin, fetch":     {"Origin": e.http.URL, "Sec-Fetch-Site": "same-origin"},
		"null origin, same site": {"Origin": "null", "Sec-Fetch-Site": "same-origin"}, // Chromium, with no-referrer
	} {
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/signin", strings.NewReader(url.Values{"token": {viewer}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		if res := e.client(t).do(t, req); res.status != http.StatusSeeOther || sessionCookie(res) == nil {
			t.Errorf("%s: %d", name, res.status)
		}
	}

	// Over TLS the cookie is Secure; it never outlives its token.
	soon, stext, err := e.store.Create(ctx, "soon", auth.Viewer, "", time.Now().Add(10*time.Minute), "test")
	if err != nil {
		t.Fatal(err)
	}
	tls := e.handler(t, Config{Secure: true}, false)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/signin", strings.NewReader(url.Values{"token": {stext}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	tls.ServeHTTP(rec, r)
	cookie = sessionCookie(response{header: rec.Header()})
	if rec.Code != http.StatusSeeOther || cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.MaxAge > 600 || cookie.MaxAge < 590 {
		t.Errorf("TLS sign-in of %s: %d %+v", soon.ID, rec.Code, cookie)
	}

	// Signing out needs the CSRF token.
	c.csrf = auth.CSRF(viewer)
	for name, form := range map[string]url.Values{"no csrf": {}, "wrong csrf": {"csrf": {auth.CSRF(e.tokens["admin"])}}, "empty csrf": {"csrf": {""}}} {
		if res := c.post(t, "/signout", form); res.status != http.StatusForbidden || sessionCookie(res) != nil {
			t.Errorf("sign out, %s: %d", name, res.status)
		}
	}
	res = c.post(t, "/signout", url.Values{"csrf": {c.csrf}})
	if cookie := sessionCookie(res); res.status != http.StatusSeeOther || cookie == nil || cookie.MaxAge >= 0 || cookie.Value != "" {
		t.Errorf("sign out: %d %+v", res.status, cookie)
	}
	if res := c.get(t, "/"); res.status != http.StatusSeeOther {
		t.Errorf("after signing out: %d", res.status)
	}

	// A token revoked while signed in ends the session.
	a := e.signIn(t, "auditor")
	id := strings.Split(e.tokens["auditor"], "_")[1]
	if _, err := e.store.Revoke(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	if res := a.get(t, "/"); res.status != http.StatusSeeOther {
		t.Errorf("revoked while signed in: %d", res.status)
	}
}

// TestCSRF: a form posted without this session's CSRF token (none, one
// of another session, one in the URL rather than the form) is refused
// and does nothing.
func TestCSRF(t *testing.T) {
	e := newEnv(t, Config{}, false)
	c := e.signIn(t, "admin")
	id := e.id(t, `action = 'delete'`)
	path := fmt.Sprintf("/entries/%d/restore", id)
	for name, form := range map[string]url.Values{
		"none":          {},
		"empty":         {"csrf": {""}},
		"other session": {"csrf": {auth.CSRF(e.tokens["viewer"])}},
		"the token":     {"csrf": {e.tokens["admin"]}},
	} {
		res := c.post(t, path, form)
		if res.status != http.StatusForbidden || !strings.Contains(res.body, "CSRF") {
			t.Errorf("%s: %d", name, res.status)
		}
	}
	res := c.post(t, path+"?csrf="+url.QueryEscape(c.csrf), url.Values{})
	if res.status != http.StatusForbidden {
		t.Errorf("csrf in the URL: %d", res.status)
	}
	if n := len(e.restore.calls()); n != 0 {
		t.Fatalf("%d restores applied by refused forms", n)
	}
	res = c.post(t, path, url.Values{"csrf": {c.csrf}})
	if res.status != http.StatusOK || !strings.Contains(res.body, `id="restore-result"`) {
		t.Errorf("with the CSRF token: %d\n%s", res.status, res.body)
	}
	calls := e.restore.calls()
	if len(calls) != 1 || calls[0].ActorID != "42" || !strings.HasPrefix(calls[0].Actor, "token:test admin ") || calls[0].IP != "127.0.0.1" {
		t.Errorf("applied as %+v", calls)
	}
}

// TestRestoreRoles: only admins see and may use restore, the server
// refusing the others (403) whatever they send; a refused plan shows
// why and no Apply; a server without restore says so.
func TestRestoreRoles(t *testing.T) {
	e := newEnv(t, Config{}, false)
	del, upd, ins := e.id(t, `action = 'delete'`), e.id(t, `action = 'update'`), e.id(t, `action = 'insert'`)
	e.restore.refuse = map[int64]string{upd: "the row changed since: " + hostile}
	for _, role := range []string{"viewer", "auditor"} {
		c := e.signIn(t, role)
		res := c.get(t, fmt.Sprintf("/entries/%d", del))
		if res.status != http.StatusOK || strings.Contains(res.body, "Restore") || strings.Contains(res.body, "/restore") {
			t.Errorf("%s sees restore: %d", role, res.status)
		}
		path := fmt.Sprintf("/entries/%d/restore", del)
		if res := c.get(t, path); res.status != http.StatusForbidden || !strings.Contains(res.body, "role admin") {
			t.Errorf("%s dry run: %d", role, res.status)
		}
		if res := c.post(t, path, url.Values{"csrf": {c.csrf}}); res.status != http.StatusForbidden {
			t.Errorf("%s apply: %d", role, res.status)
		}
	}
	if n := len(e.restore.calls()); n != 0 {
		t.Fatalf("%d restores applied by non-admins", n)
	}

	c := e.signIn(t, "admin")
	for id, want := range map[int64]bool{del: true, upd: true, ins: false} {
		res := c.get(t, fmt.Sprintf("/entries/%d", id))
		if strings.Contains(res.body, ">Restore (dry run)</a>") != want {
			t.Errorf("entry %d: restore link %v, want %v", id, !want, want)
		}
	}
	res := c.get(t, fmt.Sprintf("/entries/%d/restore", del))
	if res.status != http.StatusOK || !strings.Contains(res.body, `<pre class="sql" id="restore-sql">INSERT INTO public.orders (id, note) VALUES (100, &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;)</pre>`) ||
		!strings.Contains(res.body, `<form id="restore-apply" method="post" action="/entries/`) || !strings.Contains(res.body, `name="csrf" value="`+c.csrf+`"`) {
		t.Errorf("dry run: %d\n%s", res.status, res.body)
	}
	checkEscaped(t, res.body)
	res = c.get(t, fmt.Sprintf("/entries/%d/restore", upd))
	if res.status != http.StatusOK || !strings.Contains(res.body, "the row changed since: &lt;script&gt;") || strings.Contains(res.body, "restore-apply") {
		t.Errorf("refused dry run: %d\n%s", res.status, res.body)
	}
	if res := c.post(t, fmt.Sprintf("/entries/%d/restore", upd), url.Values{"csrf": {c.csrf}}); res.status != http.StatusConflict || !strings.Contains(res.body, "the row changed since") {
		t.Errorf("refused apply: %d", res.status)
	}
	if n := len(e.restore.calls()); n != 0 {
		t.Fatalf("%d restores applied", n)
	}

	// Without restore.
	off := httptest.NewServer(e.handler(t, Config{}, true))
	defer off.Close()
	e2 := *e
	e2.http = off
	c = e2.signIn(t, "admin")
	if res := c.get(t, fmt.Sprintf("/entries/%d", del)); !strings.Contains(res.body, "Restore is not configured") || strings.Contains(res.body, "/restore") {
		t.Errorf("entry without restore:\n%s", res.body)
	}
	if res := c.get(t, fmt.Sprintf("/entries/%d/restore", del)); res.status != http.StatusNotImplemented || !strings.Contains(res.body, "api.restore_dsn") {
		t.Errorf("dry run without restore: %d", res.status)
	}
}
