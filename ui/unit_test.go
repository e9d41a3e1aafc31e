package ui

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/walscribe/walscribe/query"
)

func TestLocalPath(t *testing.T) {
	for _, c := range []struct{ next, want string }{
		{"/", "/"},
		{"/summary?days=7", "/summary?days=7"},
		{"/entries/4", "/entries/4"},
		{"", "/"},
		{"summary", "/"},
		{"//evil.example", "/"},
		{"/\\evil.example", "/"},
		{"https://evil.example/", "/"},
		{"javascript:alert(1)", "/"},
		{"/signin?next=/", "/"},
		{"/x\r\nSet-Cookie: a=b", "/"},
	} {
		t.Run(c.next, func(t *testing.T) {
			if got := localPath(c.next); got != c.want {
				t.Errorf("%q: %q, want %q", c.next, got, c.want)
			}
		})
	}
}

func TestSameOrigin(t *testing.T) {
	for _, c := range []struct {
		name   string
		header map[string]string
		want   bool
	}{
		{"nothing said", nil, true},
		{"same origin", map[string]string{"Origin": "http://ui.example:8080"}, true},
		{"another port", map[string]string{"Origin": "http://ui.example:9090"}, false},
		{"another host", map[string]string{"Origin": "https://evil.example"}, false},
		{"null", map[string]string{"Origin": "null"}, false},
		{"fetch same origin, null origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "null"}, true},
		{"fetch none", map[string]string{"Sec-Fetch-Site": "none"}, true},
		{"fetch same site", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://ui.example:8080"}, false},
		{"fetch cross site", map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://ui.example:8080/signin", nil)
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			if got := sameOrigin(r); got != c.want {
				t.Errorf("%v", got)
			}
		})
	}
}

func TestActionClass(t *testing.T) {
	for a, want := range map[string]string{"insert": "act-insert", "update": "act-update", "delete": "act-delete", "truncate": "act-truncate",
		"alert": "act-alert", "gap": "act-system", "exported": "act-event", `x" onclick="y`: "act-event", "": "act-event"} {
		if got := actionClass(a); got != want {
			t.Errorf("%q: %q, want %q", a, got, want)
		}
	}
}

func TestParams(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, c := range []struct {
		name         string
		p            params
		since, until time.Time
		limit        int
		err          bool
	}{
		{"default", params{}, now.Add(-7 * day), now.Add(time.Second), 50, false},
		{"days", params{Days: "30", Limit: "500"}, now.Add(-30 * day), now.Add(time.Second), 500, false},
		{"since", params{Since: "2026-03-01"}, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), now.Add(time.Second), 50, false},
		{"datetime-local", params{Since: "2026-03-01T08:30", Until: "2026-03-02T08:30:00Z"}, time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC), time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC), 50, false},
		{"until: the days before it", params{Until: "2026-02-01", Days: "3"}, time.Date(2026, 1, 29, 0, 0, 0, 0, time.UTC), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), 50, false},
		{"days and since", params{Days: "3", Since: "2026-03-01"}, time.Time{}, time.Time{}, 0, true},
		{"days 0", params{Days: "0"}, time.Time{}, time.Time{}, 0, true},
		{"limit", params{Limit: "501"}, time.Time{}, time.Time{}, 0, true},
		{"xid", params{Xid: "-1"}, time.Time{}, time.Time{}, 0, true},
		{"pk", params{PK: "{x"}, time.Time{}, time.Time{}, 0, true},
		{"ip", params{IP: "10.0.0.0/33"}, time.Time{}, time.Time{}, 0, true},
		{"table", params{Tables: []string{"."}}, time.Time{}, time.Time{}, 0, true},
		{"cursor", params{Cursor: "abc"}, time.Time{}, time.Time{}, 0, true},
		{"backwards", params{Since: "2026-03-02", Until: "2026-03-01"}, time.Time{}, time.Time{}, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, limit, err := c.p.filter(7, now)
			if (err != nil) != c.err {
				t.Fatalf("error %v", err)
			}
			if err == nil && (!f.Since.Equal(c.since) || !f.Until.Equal(c.until) || limit != c.limit) {
				t.Errorf("%s..%s, %d; want %s..%s, %d", f.Since, f.Until, limit, c.since, c.until, c.limit)
			}
		})
	}
}

func TestDayChart(t *testing.T) {
	since := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	sum := &query.Summary{ByDay: []query.DayCount{{Day: "2026-03-02", Entries: 10, Deletes: 5}, {Day: "2026-03-04", Entries: 20}}}
	c := dayChart(sum, since, since.Add(5*24*time.Hour), []query.Spike{{Day: "2026-03-02"}})
	if len(c.Bars) != 5 || c.Max != 20 {
		t.Fatalf("%d bars, max %d", len(c.Bars), c.Max)
	}
	b := c.Bars[1]
	if b.H != 75 || b.DH != 37.5 || b.Y+b.H != float64(c.Base) || !b.Spike || b.URL != "/?since=2026-03-02&until=2026-03-03" {
		t.Errorf("bar %+v", b)
	}
	if c.Bars[3].H != 150 || c.Bars[0].H != 0 || c.Bars[0].Spike {
		t.Errorf("bars %+v", c.Bars)
	}
}
