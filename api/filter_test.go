package api

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// oracle is the SQL a filter of the API stands for, written out here by
// hand: the ids it selects, newest first.
func (e *env) oracle(t *testing.T, q url.Values, now time.Time) []int64 {
	t.Helper()
	var conds []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	since, until := now.AddDate(0, 0, -7), now.Add(time.Second)
	if d := q.Get("days"); d != "" {
		n, _ := strconv.Atoi(d)
		since = now.Add(-time.Duration(n) * 24 * time.Hour)
	}
	if s := q.Get("since"); s != "" {
		since, _ = time.Parse(time.RFC3339Nano, s)
	}
	if u := q.Get("until"); u != "" {
		until, _ = time.Parse(time.RFC3339Nano, u)
	}
	conds = append(conds, "committed_at >= "+arg(since), "committed_at < "+arg(until))
	if ts := q["table"]; len(ts) > 0 {
		var or []string
		for _, tb := range ts {
			s, n, ok := strings.Cut(tb, ".")
			if !ok {
				s, n = "public", tb
			}
			or = append(or, "(schema_name = "+arg(s)+" AND table_name = "+arg(n)+")")
		}
		conds = append(conds, "("+strings.Join(or, " OR ")+")")
	}
	if as := q["action"]; len(as) > 0 {
		conds = append(conds, "action = ANY("+arg(as)+")")
	}
	for _, c := range []string{"actor_id", "actor", "request_id", "db_user"} {
		if v := q.Get(c); v != "" {
			conds = append(conds, c+" = "+arg(v))
		}
	}
	if v := q.Get("xid"); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		conds = append(conds, "xid = "+arg(n))
	}
	if v := q.Get("ip"); v != "" {
		conds = append(conds, "ip <<= "+arg(v)+"::inet")
	}
	if v := q.Get("pk"); v != "" {
		conds = append(conds, "pk = "+arg(v)+"::jsonb")
	}
	if v := q.Get("changed"); v != "" {
		conds = append(conds, arg(v)+" = ANY(changed)")
	}
	rows, err := e.admin.Query(context.Background(), `SELECT id FROM audit.entries WHERE `+strings.Join(conds, " AND ")+` ORDER BY id DESC`, args...)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// walk follows the pages of path?q with limit per page, and returns the
// ids in the order the API gave them.
func (e *env) walk(t *testing.T, q url.Values, limit int) []int64 {
	t.Helper()
	var ids []int64
	q.Set("limit", strconv.Itoa(limit))
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("more than 1000 pages")
		}
		res := e.get(t, BaseURL+"/entries?"+q.Encode(), "viewer")
		if res.status != http.StatusOK {
			t.Fatalf("%s: %d %s", q.Encode(), res.status, res.body)
		}
		var p EntryPage
		if err := json.Unmarshal(res.body, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Data) > limit || p.HasMore != (p.NextCursor != nil) || p.HasMore && len(p.Data) != limit {
			t.Fatalf("%s: a page of %d (limit %d), has_more %v, cursor %v", q.Encode(), len(p.Data), limit, p.HasMore, p.NextCursor)
		}
		for _, en := range p.Data {
			ids = append(ids, en.ID)
		}
		if !p.HasMore {
			return ids
		}
		q.Set("cursor", *p.NextCursor)
	}
}

// TestFilters: every combination of filters, drawn at random, walked page
// by page, gives every entry the equivalent SQL selects, once, newest
// first.
func TestFilters(t *testing.T) {
	e := newEnv(t, Config{RatePerSecond: 1e6})
	r := rand.New(rand.NewPCG(3, 4))
	now := time.Now().UTC()
	e.server.cfg.Now = func() time.Time { return now }
	pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
	nonEmpty, total := 0, 0
	for i := range 150 {
		q := url.Values{}
		switch r.IntN(3) {
		case 0:
			q.Set("days", strconv.Itoa(1+r.IntN(25)))
		case 1:
			since := now.Add(-time.Duration(r.IntN(500)) * time.Hour)
			q.Set("since", since.Format(time.RFC3339Nano))
			if r.IntN(2) == 0 {
				q.Set("until", since.Add(time.Duration(1+r.IntN(300))*time.Hour).Format(time.RFC3339Nano))
			}
		}
		if r.IntN(3) == 0 {
			q.Add("table", pick("public.orders", "users", "billing.invoices", `public.odd "name"/x`, "public.none"))
			if r.IntN(3) == 0 {
				q.Add("table", "billing.invoices")
			}
		}
		if r.IntN(3) == 0 {
			q.Add("action", pick("insert", "update", "delete", "exported", "login_failed"))
			if r.IntN(3) == 0 {
				q.Add("action", "delete")
			}
		}
		if r.IntN(4) == 0 {
			q.Set("actor_id", pick("1", "2", "42", "<script>alert(1)</script>", "7"))
		}
		if r.IntN(6) == 0 {
			q.Set("actor", pick("name of 1", "name of 42"))
		}
		if r.IntN(5) == 0 {
			q.Set("request_id", fmt.Sprintf("req-%d", r.IntN(10)))
		}
		if r.IntN(6) == 0 {
			q.Set("db_user", pick("app", "admin"))
		}
		if r.IntN(6) == 0 {
			q.Set("ip", pick("10.1.0.0/16", "10.0.0.4", "10.2.0.0/24", "192.168.0.0/16"))
		}
		if r.IntN(5) == 0 {
			q.Set("pk", fmt.Sprintf(`{"id": %d}`, r.IntN(7)))
		}
		if r.IntN(5) == 0 {
			q.Set("changed", pick("note", "total", "id"))
		}
		if r.IntN(8) == 0 {
			q.Set("xid", strconv.Itoa(1000+r.IntN(90)))
		}
		want := e.oracle(t, q, now)
		got := e.walk(t, q, 1+r.IntN(9))
		if !slices.Equal(got, want) {
			t.Fatalf("filter %d %s:\n  the API gives %v\n  SQL selects   %v", i, q.Encode(), got, want)
		}
		total += len(want)
		if len(want) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < 60 {
		t.Errorf("only %d of 150 filters selected anything", nonEmpty)
	}
	t.Logf("150 filters, %d of them selecting %d entries in all", nonEmpty, total)
}
