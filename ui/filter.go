package ui

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walscribe/walscribe/api"
	"github.com/walscribe/walscribe/browse"
	"github.com/walscribe/walscribe/query"
)

// params are the filter of a page as its URL gives it (a URL is a saved
// search), with the names of the API's parameters. Empty values, as a
// form sends for the fields left blank, are no filter.
type params struct {
	Tables                                                  []string
	Actions                                                 []string
	ActorID, Actor, RequestID, Xid, DBUser, IP, PK, Changed string
	Since, Until, Days, Limit, Cursor                       string
}

// single are the parameters that take one value, by name.
func (p *params) single() []struct {
	name string
	v    *string
	max  int
} {
	return []struct {
		name string
		v    *string
		max  int
	}{
		{"actor_id", &p.ActorID, 1000}, {"actor", &p.Actor, 1000}, {"request_id", &p.RequestID, 1000}, {"xid", &p.Xid, 20},
		{"db_user", &p.DBUser, 1000}, {"ip", &p.IP, 50}, {"pk", &p.PK, 4000}, {"changed", &p.Changed, 200},
		{"since", &p.Since, 100}, {"until", &p.Until, 100}, {"days", &p.Days, 10}, {"limit", &p.Limit, 10}, {"cursor", &p.Cursor, 100},
	}
}

// Parameter names, by what pages take them.
var (
	windowNames = []string{"since", "until", "days", "limit", "cursor"}
	allNames    = append([]string{"table", "action", "actor_id", "actor", "request_id", "xid", "db_user", "ip", "pk", "changed"}, windowNames...)
)

// only is an error when q has a parameter not among names (a misspelt
// filter must not silently select everything), saying which it takes.
func only(q url.Values, names ...string) error {
	var unknown []string
	for k := range q {
		if !slices.Contains(names, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return badRequest("Unknown parameter " + strings.Join(unknown, ", ") + " in the address: this page takes " + strings.Join(names, ", ") + ".")
}

// readParams are the filter parameters of q.
func readParams(q url.Values) params {
	var p params
	nonEmpty := func(vs []string) []string {
		var out []string
		for _, v := range vs {
			if v = strings.TrimSpace(v); v != "" && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
		return out
	}
	p.Tables, p.Actions = nonEmpty(q["table"]), nonEmpty(q["action"])
	for _, s := range p.single() {
		*s.v = strings.TrimSpace(q.Get(s.name))
	}
	return p
}

// values are the parameters that are set, as a URL's query.
func (p params) values() url.Values {
	q := url.Values{}
	for _, t := range p.Tables {
		q.Add("table", t)
	}
	for _, a := range p.Actions {
		q.Add("action", a)
	}
	for _, s := range p.single() {
		if *s.v != "" {
			q.Set(s.name, *s.v)
		}
	}
	return q
}

// timeLayouts are the forms since and until are read in: RFC 3339, or a
// date and time (UTC) as a browser's datetime-local input gives it, or a
// date (midnight UTC).
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"}

func parseTime(name, s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q: a time such as 2026-01-31T08:00:00Z, or a date such as 2026-01-31 (UTC)", name, s)
}

// filter is the query of p, bounded in time (the last def days when p
// gives no window), and the page size it asks for.
func (p params) filter(def int, now time.Time) (query.Filter, int, error) {
	for _, t := range p.Tables {
		if len(t) > 300 {
			return query.Filter{}, 0, fmt.Errorf("table: at most 300 characters")
		}
	}
	for _, a := range p.Actions {
		if len(a) > 200 {
			return query.Filter{}, 0, fmt.Errorf("action: at most 200 characters")
		}
	}
	for _, s := range p.single() {
		if len(*s.v) > s.max {
			return query.Filter{}, 0, fmt.Errorf("%s: at most %d characters", s.name, s.max)
		}
	}
	var since, until time.Time
	var err error
	if p.Since != "" {
		if since, err = parseTime("since", p.Since); err != nil {
			return query.Filter{}, 0, err
		}
	}
	if p.Until != "" {
		if until, err = parseTime("until", p.Until); err != nil {
			return query.Filter{}, 0, err
		}
	}
	days := 0
	if p.Days != "" {
		if p.Since != "" {
			return query.Filter{}, 0, fmt.Errorf("give days or since, not both")
		}
		if days, err = strconv.Atoi(p.Days); err != nil || days < 1 || days > 36500 {
			return query.Filter{}, 0, fmt.Errorf("days %q: a whole number of days from 1 to 36500", p.Days)
		}
	}
	limit := browse.DefaultLimit
	if p.Limit != "" {
		if limit, err = strconv.Atoi(p.Limit); err != nil || limit < 1 || limit > browse.MaxLimit {
			return query.Filter{}, 0, fmt.Errorf("limit %q: from 1 to %d entries a page", p.Limit, browse.MaxLimit)
		}
	}
	if since.IsZero() && !until.IsZero() {
		// The days before until, not before now.
		since = until.Add(-time.Duration(cmp.Or(days, def)) * 24 * time.Hour)
	}
	if p.PK != "" && !json.Valid([]byte(p.PK)) {
		return query.Filter{}, 0, fmt.Errorf(`pk %q: a JSON object of the key's columns, e.g. {"id": 42}`, p.PK)
	}
	f := browse.Window(since, until, days, def, now)
	f.Tables, f.Actions = p.Tables, p.Actions
	f.ActorID, f.Actor, f.RequestID, f.DBUser, f.IP, f.PK, f.Changed = p.ActorID, p.Actor, p.RequestID, p.DBUser, p.IP, p.PK, p.Changed
	if p.Xid != "" {
		if f.Xid, err = strconv.ParseInt(p.Xid, 10, 64); err != nil || f.Xid < 1 {
			return query.Filter{}, 0, fmt.Errorf("xid %q: a transaction id, a whole number from 1", p.Xid)
		}
	}
	if f.BeforeID, err = browse.ParseCursor(p.Cursor); err != nil {
		return query.Filter{}, 0, err
	}
	if err := f.Check(); err != nil {
		return query.Filter{}, 0, err
	}
	return f, limit, nil
}

// Has reports whether the filter selects action a (for the form).
func (p params) Has(a string) bool { return slices.Contains(p.Actions, a) }

// formActions are the actions the filter form offers as check boxes.
var formActions = []string{"insert", "update", "delete", "truncate", "alert"}

// FormActions are the check boxes of the filter form.
func (p params) FormActions() []string { return formActions }

// OtherActions are the actions of the filter that have no check box.
func (p params) OtherActions() []string {
	var out []string
	for _, a := range p.Actions {
		if !slices.Contains(formActions, a) {
			out = append(out, a)
		}
	}
	return out
}

// link is path with the query of p, the cursor replaced by cursor (none
// when "").
func (p params) link(path, cursor string) string {
	q := p.values()
	q.Del("cursor")
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// export is the API's download of the entries of p (all of them, not a
// page) in format, a link the session cookie opens. Its window is f's,
// the one the page shows, to the nanosecond.
func (p params) export(f query.Filter, format string) string {
	q := p.values()
	for _, k := range []string{"cursor", "limit", "days"} {
		q.Del(k)
	}
	q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	q.Set("format", format)
	return api.BaseURL + "/export?" + q.Encode()
}
