package ui

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFilters: each filter in the URL selects what it should, as a form
// without JavaScript sends it (the fields left blank included), and the
// pages of a list, followed by their "older" links, are the whole list.
func TestFilters(t *testing.T) {
	e := newEnv(t, Config{}, false)
	c := e.signIn(t, "viewer")
	ctx := context.Background()
	var xid int64
	var since time.Time
	if err := e.admin.QueryRow(ctx, `SELECT xid FROM audit.entries WHERE action = 'delete' ORDER BY id LIMIT 1`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.QueryRow(ctx, `SELECT date_trunc('day', min(committed_at) + interval '5 days') FROM audit.entries`).Scan(&since); err != nil {
		t.Fatal(err)
	}
	since = since.UTC()
	until := since.Add(4 * 24 * time.Hour)
	month := `committed_at > now() - interval '30 days'`
	for _, tc := range []struct {
		name, query, where string
		args               []any
	}{
		{"default: the last 7 days", "", `committed_at > now() - interval '7 days'`, nil},
		{"days", "days=30", month, nil},
		{"action", "days=30&action=delete", month + ` AND action = 'delete'`, nil},
		{"actions", "days=30&action=insert&action=exported", month + ` AND action IN ('insert', 'exported')`, nil},
		{"table", "days=30&table=billing.invoices", month + ` AND schema_name = 'billing' AND table_name = 'invoices'`, nil},
		{"odd table", "days=30&table=" + url.QueryEscape(`public.odd "name"/x`), month + ` AND table_name = 'odd "name"/x'`, nil},
		{"tables", "days=30&table=billing.invoices&table=public.users", month + ` AND table_name IN ('invoices', 'users')`, nil},
		{"actor id", "days=30&actor_id=" + url.QueryEscape(hostile), month + ` AND actor_id = $1`, []any{hostile}},
		{"actor", "days=30&actor=" + url.QueryEscape("name of 42"), month + ` AND actor = 'name of 42'`, nil},
		{"request", "days=30&request_id=req-3", month + ` AND request_id = 'req-3'`, nil},
		{"xid", "days=30&xid=" + strconv.FormatInt(xid, 10), month + ` AND xid = $1`, []any{xid}},
		{"db user", "days=30&db_user=admin", month + ` AND db_user = 'admin'`, nil},
		{"ip", "days=30&ip=10.1.0.0%2F16", month + ` AND ip << '10.1.0.0/16'`, nil},
		{"pk", "days=30&table=public.orders&pk=" + url.QueryEscape(`{"id": 3}`), month + ` AND table_name = 'orders' AND pk = '{"id":3}'`, nil},
		{"changed", "days=30&changed=total", month + ` AND 'total' = ANY (changed)`, nil},
		{"until", "until=" + until.Format(time.DateOnly) + "&days=3", `committed_at >= $1 AND committed_at < $2`, []any{until.Add(-3 * 24 * time.Hour), until}},
		{"since until", "since=" + since.Format(time.DateOnly) + "&until=" + url.QueryEscape(until.Format(time.RFC3339)),
			`committed_at >= $1 AND committed_at < $2`, []any{since, until}},
		{"alerts", "days=30&action=alert", month + ` AND action = 'alert' AND schema_name = 'walscribe' AND table_name = 'watch'`, nil},
		{"a form's blank fields", "action=update&action=&table=&pk=&changed=&xid=&actor_id=&actor=&request_id=&db_user=&ip=&days=30&since=&until=&limit=",
			month + ` AND action = 'update'`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := e.ids(t, tc.where+` ORDER BY id DESC`, tc.args...)
			if len(want) == 0 {
				t.Fatalf("the seed has no entries where %s", tc.where)
			}
			var got []int64
			path := "/?limit=500&" + tc.query
			res := c.get(t, path)
			if res.status != http.StatusOK {
				t.Fatalf("%s: %d\n%s", path, res.status, res.body)
			}
			got = res.ids()
			if !slices.Equal(got, want) {
				t.Errorf("%s: %v\nwant %v", path, got, want)
			}
		})
	}
}

var olderLink = regexp.MustCompile(`<a id="older" rel="next" href="([^"]+)">older →</a>`)

// TestPagination: newest first, a page at a time, each page's "older"
// link (keyset: a cursor, no page numbers, no counts) the next, the
// filter kept; the last page has none.
func TestPagination(t *testing.T) {
	e := newEnv(t, Config{}, false)
	c := e.signIn(t, "auditor")
	want := e.ids(t, `committed_at > now() - interval '30 days' AND action IN ('update', 'delete') ORDER BY id DESC`)
	path := "/?days=30&action=update&action=delete&limit=7"
	var got []int64
	pages := 0
	for path != "" {
		res := c.get(t, path)
		if res.status != http.StatusOK {
			t.Fatalf("%s: %d", path, res.status)
		}
		ids := res.ids()
		if len(ids) > 7 || len(ids) == 0 {
			t.Fatalf("%s: %d entries", path, len(ids))
		}
		got = append(got, ids...)
		pages++
		if pages > 1 && !strings.Contains(res.body, "← newest</a>") {
			t.Errorf("page %d has no link to the newest", pages)
		}
		path = ""
		if m := olderLink.FindStringSubmatch(res.body); m != nil {
			path = html.UnescapeString(m[1])
			q, _ := url.ParseQuery(strings.TrimPrefix(path, "/?"))
			if q.Get("cursor") == "" || q.Get("days") != "30" || len(q["action"]) != 2 || q.Get("limit") != "7" {
				t.Errorf("older link %s does not keep the filter", path)
			}
		}
	}
	if !slices.Equal(got, want) || pages != (len(want)+6)/7 {
		t.Errorf("%d pages: %v\nwant %v", pages, got, want)
	}

	// The download link: the same filter, from the API, with the cookie.
	res := c.get(t, "/?days=30&action=delete&since=&limit=7")
	m := regexp.MustCompile(`<a href="(/api/v1/export\?[^"]+)" hx-boost="false" download>CSV</a>`).FindStringSubmatch(res.body)
	if m == nil {
		t.Fatalf("no download link for an auditor:\n%s", res.body)
	}
	link := html.UnescapeString(m[1])
	q, _ := url.ParseQuery(strings.SplitN(link, "?", 2)[1])
	since, _ := time.Parse(time.RFC3339Nano, q.Get("since"))
	until, _ := time.Parse(time.RFC3339Nano, q.Get("until"))
	if q.Get("action") != "delete" || q.Get("format") != "csv" || q.Has("limit") || q.Has("days") || q.Has("cursor") ||
		until.Sub(since) != 30*24*time.Hour+time.Second || time.Since(until) > time.Minute {
		t.Errorf("download link %s: want the page's window, the last 30 days", link)
	}
	dl := c.get(t, link)
	if rows := strings.Count(dl.body, "\n") - 1; dl.status != http.StatusOK || rows != len(e.ids(t, `committed_at > now() - interval '30 days' AND action = 'delete'`)) {
		t.Errorf("download: %d, %d rows\n%s", dl.status, rows, dl.body)
	}
	// Viewers may not download: no link.
	if res := e.signIn(t, "viewer").get(t, "/?days=30"); strings.Contains(res.body, "/api/v1/export") {
		t.Error("a viewer is offered a download")
	}
}

// TestNoJS: everything is a plain link or form: the filter form is a GET
// of /, the other forms POSTs with the CSRF token in a field; htmx only
// boosts them.
func TestNoJS(t *testing.T) {
	e := newEnv(t, Config{}, false)
	c := e.signIn(t, "admin")
	res := c.get(t, "/")
	for _, want := range []string{
		`<body hx-boost="true">`,
		`<form id="filter" class="filter" method="get" action="/">`,
		`<input type="checkbox" name="action" value="delete">`,
		`<input type="text" id="f-actor_id" name="actor_id" value="">`,
		`<button type="submit" id="apply-filter">Filter</button>`,
		`<form class="signout" method="post" action="/signout" hx-boost="false">`,
		`<input type="hidden" name="csrf" value="` + c.csrf + `">`,
	} {
		if !strings.Contains(res.body, want) {
			t.Errorf("list: no %s", want)
		}
	}
	for _, attr := range []string{"hx-get", "hx-post", "onclick", "onsubmit", "javascript:"} {
		if strings.Contains(res.body, attr) {
			t.Errorf("the list uses %s", attr)
		}
	}
	// A boosted request (htmx) gets the same page.
	req, _ := http.NewRequest(http.MethodGet, e.http.URL+"/?days=30", nil)
	req.Header.Set("HX-Request", "true")
	req.Header.Set("HX-Boosted", "true")
	if res := c.do(t, req); res.status != http.StatusOK || len(res.ids()) == 0 {
		t.Errorf("boosted: %d", res.status)
	}
}
