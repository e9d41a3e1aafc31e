package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/browse"
	"github.com/walscribe/walscribe/internal/apitest"
)

// sent are the events log_event has put into the stream since the last
// call: what walscribe will store in the trail.
func (e *env) sent(t *testing.T) []map[string]any {
	t.Helper()
	return apitest.Sent(t, e.admin, e.events)
}

// TestReadsRecorded: each read puts a read event into the trail's
// stream, with who read (the token's actor id and name, address, user
// agent, request id), what (the filter or the entry) and how many rows.
func TestReadsRecorded(t *testing.T) {
	e := newEnv(t, Config{RatePerSecond: 1e6})
	e.sent(t)
	res := e.get(t, BaseURL+"/entries?days=30&action=delete&limit=3", "viewer")
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	var page EntryPage
	json.Unmarshal(res.body, &page)
	res = e.get(t, BaseURL+fmt.Sprintf("/entries/%d", page.Data[0].ID), "auditor")
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	if res := e.get(t, BaseURL+"/export?days=30&format=jsonl", "auditor"); res.status != http.StatusOK || strings.Count(string(res.body), "\n") != e.entries {
		t.Fatalf("download: %d, %d lines, want %d", res.status, strings.Count(string(res.body), "\n"), e.entries)
	}
	ev := e.sent(t)
	if len(ev) != 4 {
		t.Fatalf("%d events, want 4 (list, entry, download before and after): %v", len(ev), ev)
	}
	for _, m := range ev {
		ctx, _ := m["context"].(map[string]any)
		if m["action"] != "read" || m["target"] != "audit.entries" || ctx["actor_id"] != "42" || ctx["ip"] != "127.0.0.1" ||
			!strings.HasPrefix(fmt.Sprint(ctx["actor"]), "token:test ") || !strings.HasPrefix(fmt.Sprint(ctx["request_id"]), "api-") ||
			ctx["user_agent"] != "Go-http-client/1.1" || !strings.HasPrefix(fmt.Sprint(ctx["db_user"]), "api_") ||
			!strings.Contains(fmt.Sprint(ctx["context"]), `"via":"api"`) {
			t.Errorf("event %v", m)
		}
	}
	data := func(i int) map[string]any { d, _ := ev[i]["data"].(map[string]any); return d }
	if f, _ := data(0)["filter"].(map[string]any); data(0)["operation"] != "listEntries" || data(0)["rows"] != 3.0 || fmt.Sprint(f["actions"]) != "[delete]" {
		t.Errorf("list event: %v", ev[0])
	}
	if data(1)["operation"] != "getEntry" || ev[1]["object_id"] != fmt.Sprint(page.Data[0].ID) || data(1)["role"] != "auditor" {
		t.Errorf("entry event: %v", ev[1])
	}
	if data(2)["rows"] != -1.0 || data(3)["operation"] != "exportEntries.sent" || data(3)["rows"] != float64(e.entries) {
		t.Errorf("download events: %v, %v", ev[2], ev[3])
	}

	// A read that cannot be recorded shows nothing.
	e.admin.Exec(context.Background(), `REVOKE walscribe_app FROM `+strings.TrimSuffix(fmt.Sprint(ev[0]["context"].(map[string]any)["db_user"]), "")+``)
	res = e.get(t, BaseURL+"/entries?days=30", "viewer")
	if res.status != http.StatusServiceUnavailable || strings.Contains(string(res.body), `"id"`) {
		t.Errorf("unrecorded read: %d %s", res.status, res.body)
	}
	res.problem(t)
}

// TestEntries: each view gives the entries it should, their values as
// stored, hostile ones included.
func TestEntries(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{RatePerSecond: 1e6})
	var id int64
	var lsn, reqID, actorID, pk, table string
	if err := e.admin.QueryRow(ctx, `SELECT id, commit_lsn::text, request_id, actor_id, pk::text, schema_name || '.' || table_name FROM audit.entries
		WHERE actor_id = '<script>alert(1)</script>' AND action = 'update' ORDER BY id DESC LIMIT 1`).Scan(&id, &lsn, &reqID, &actorID, &pk, &table); err != nil {
		t.Fatal(err)
	}
	res := e.get(t, fmt.Sprintf("%s/entries/%d", BaseURL, id), "viewer")
	var got browse.Entry
	if err := json.Unmarshal(res.body, &got); err != nil || got.ID != id || *got.ActorID != actorID || *got.UserAgent != `Mozilla/5.0 "quoted" <b>` ||
		got.CommitLSN != lsn || len(got.Changed) == 0 || !strings.Contains(newNote(got), "<img src=x onerror=") {
		t.Fatalf("entry %d: %v %s", id, err, res.body)
	}
	ids := func(path string) []int64 {
		t.Helper()
		res := e.get(t, path, "viewer")
		if res.status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, res.status, res.body)
		}
		var p EntryList
		json.Unmarshal(res.body, &p)
		var out []int64
		for _, en := range p.Data {
			out = append(out, en.ID)
		}
		return out
	}
	want := func(where string, args ...any) []int64 {
		t.Helper()
		rows, err := e.admin.Query(ctx, `SELECT id FROM audit.entries WHERE `+where, args...)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := pgx.CollectRows(rows, pgx.RowTo[int64])
		return out
	}
	check := func(name string, got, want []int64) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	check("transaction", ids(BaseURL+"/transaction?lsn="+lsn), want(`commit_lsn = $1 ORDER BY id`, lsn))
	check("request", ids(BaseURL+"/requests/"+url.PathEscape(reqID)+"?limit=500"), want(`request_id = $1 AND committed_at > now() - interval '30 days' ORDER BY id DESC`, reqID))
	check("actor", ids(BaseURL+"/actors/"+url.PathEscape(actorID)+"/activity?limit=500"), want(`actor_id = $1 AND committed_at > now() - interval '30 days' ORDER BY id DESC`, actorID))
	check("me", ids(BaseURL+"/me/activity?limit=500"), want(`actor_id = '42' AND committed_at > now() - interval '30 days' ORDER BY id DESC`))
	check("history", ids(BaseURL+"/history?limit=500&table="+url.QueryEscape(table)+"&pk="+url.QueryEscape(pk)),
		want(`schema_name || '.' || table_name = $1 AND pk = $2::jsonb ORDER BY id DESC`, table, pk))

	res = e.get(t, BaseURL+"/transaction?lsn=0/1", "viewer")
	if res.status != http.StatusNotFound {
		t.Errorf("a transaction with no entries: %d", res.status)
	}
	res.problem(t)
	if res := e.get(t, BaseURL+"/entries/99999999", "viewer"); res.status != http.StatusNotFound {
		t.Errorf("no such entry: %d", res.status)
	}

	res = e.get(t, BaseURL+"/summary?days=30&top=3", "viewer")
	var sum Summary
	if err := json.Unmarshal(res.body, &sum); err != nil || sum.Entries != int64(e.entries) || len(sum.TopActors) != 3 || len(sum.ByDay) == 0 {
		t.Errorf("summary: %v %s", err, res.body)
	}
}

// TestValidation: what the spec does not allow is a 400 problem that
// names the parameter, before anything is read.
func TestValidation(t *testing.T) {
	e := newEnv(t, Config{RatePerSecond: 1e6})
	for _, c := range []struct{ path, says string }{
		{"/entries?limit=0", "limit"},
		{"/entries?limit=501", "limit"},
		{"/entries?tabel=public.orders", `"tabel"`},
		{"/entries?days=7&since=2026-01-01T00:00:00Z", "days or since"},
		{"/entries?since=yesterday", "since"},
		{"/entries?xid=-4", "xid"},
		{"/entries?ip=not-an-ip", "ip"},
		{"/entries?pk=42", "pk"},
		{"/entries?pk=%7Bx", "pk"},
		{"/entries?ip=fe80::1%25eth0", "ip"},
		{"/summary?days=400", "days"},
		{"/summary?since=2020-01-01T00:00:00Z", "366 days"},
		{"/entries?cursor=abc", "cursor"},
		{"/entries/abc", "id"},
		{"/entries?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"},
		{"/transaction?lsn=xyz", "lsn"},
		{"/history?table=public.orders", "pk"},
	} {
		res := e.get(t, BaseURL+c.path, "viewer")
		if res.status != http.StatusBadRequest || !strings.Contains(res.problem(t).deref(), c.says) {
			t.Errorf("%s: %d %s, want a 400 that names %s", c.path, res.status, res.body, c.says)
		}
	}
	if res := e.get(t, BaseURL+"/entries?until=2026-01-01T00:00:00Z", "viewer"); res.status != http.StatusOK {
		t.Errorf("until alone (the 7 days before it): %d %s", res.status, res.body)
	}
	for _, c := range []struct{ body, says string }{
		{`{"action": "alert", "target": "public.orders"}`, "walscribe records itself"},
		{`{"action": "Restored"}`, "walscribe records itself"},
		{`{"action": "read"}`, "walscribe records itself"},
		{`{"action": "viewed", "target": "walscribe.watch"}`, "walscribe's own tables"},
		{`{"action": "viewed", "target": "audit.entries"}`, "walscribe's own tables"},
		{`{"action": "viewed", "request_id": "a b\n"}`, "request_id"},
		{`{"action": ""}`, "action"},
		{`{"action": "x", "extra": 1}`, "extra"},
		{`{"action": "delete"}`, "walscribe records itself"},
		{`not json`, "body"},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+BaseURL+"/events", strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+e.tokens["viewer"])
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p Problem
		json.NewDecoder(res.Body).Decode(&p)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || p.Detail == nil || !strings.Contains(*p.Detail, c.says) {
			t.Errorf("event %s: %d %v, want a 400 that says %s", c.body, res.StatusCode, p.Detail, c.says)
		}
	}
	big := `{"action": "viewed", "data": {"x": "` + strings.Repeat("a", 70<<10) + `"}}`
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+BaseURL+"/events", strings.NewReader(big))
	req.Header.Set("Authorization", "Bearer "+e.tokens["viewer"])
	req.Header.Set("Content-Type", "application/json")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusBadRequest && res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 70 KiB event: %v %v", res.StatusCode, err)
	}
	if res := e.get(t, "/api/v1/nothing", "viewer"); res.status != http.StatusNotFound {
		t.Errorf("unknown path: %d", res.status)
	}
}

func (p Problem) deref() string {
	if p.Detail == nil {
		return ""
	}
	return *p.Detail
}

// TestSpecServed: the served document is the API's, and valid.
func TestSpecServed(t *testing.T) {
	e := newEnv(t, Config{RatePerSecond: 1e6})
	res := e.get(t, BaseURL+"/openapi.json", "")
	if res.status != http.StatusOK {
		t.Fatalf("%d", res.status)
	}
	doc, err := openapi3.NewLoader().LoadFromData(res.body)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(doc.Paths.Map()) != len(e.spec.Paths.Map()) || doc.Info.Title != "walscribe API" {
		t.Errorf("served %d paths, the spec has %d", len(doc.Paths.Map()), len(e.spec.Paths.Map()))
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if _, ok := op.Extensions["x-role"].(string); !ok {
				t.Errorf("%s %s has no x-role", method, path)
			}
		}
	}
}

// TestPostEvent: a posted event goes into the stream as log_event's,
// with the caller's context.
func TestPostEvent(t *testing.T) {
	e := newEnv(t, Config{RatePerSecond: 1e6})
	e.sent(t)
	res := e.do(t, http.MethodPost, BaseURL+"/events", e.tokens["viewer"], map[string]any{"action": "viewed", "target": "public.orders",
		"object_id": "7", "data": map[string]any{"fields": []string{"card"}}, "request_id": "r-1"})
	if res.status != http.StatusAccepted {
		t.Fatalf("%d %s", res.status, res.body)
	}
	ev := e.sent(t)
	if len(ev) != 1 || ev[0]["action"] != "viewed" || ev[0]["target"] != "public.orders" || ev[0]["object_id"] != "7" ||
		fmt.Sprint(ev[0]["data"]) != "map[fields:[card]]" || ev[0]["context"].(map[string]any)["request_id"] != "r-1" {
		t.Errorf("events %v", ev)
	}
}

func newNote(e browse.Entry) string {
	var m map[string]any
	json.Unmarshal(e.New, &m)
	return fmt.Sprint(m["note"])
}

// TestDownloadFailure: a download whose query fails before a row is sent
// is an error, never an empty 200 that looks like a whole file.
func TestDownloadFailure(t *testing.T) {
	e := newEnv(t, Config{RatePerSecond: 1e6})
	reader := e.reader
	if res := e.get(t, BaseURL+"/export?days=30", "auditor"); res.status != http.StatusOK || len(res.body) == 0 {
		t.Fatalf("download: %d, %d bytes", res.status, len(res.body))
	}
	// It may still check tokens, not read entries.
	pgtestExec(t, e, `GRANT USAGE ON SCHEMA audit TO `+reader)
	pgtestExec(t, e, `GRANT SELECT ON audit.api_tokens, audit.api_token_revocations TO `+reader)
	pgtestExec(t, e, `REVOKE walscribe_reader FROM `+reader)
	for _, format := range []string{"csv", "jsonl"} {
		res := e.get(t, BaseURL+"/export?days=30&format="+format, "auditor")
		if res.status == http.StatusOK {
			t.Errorf("%s download the reader may not read: 200, %d bytes", format, len(res.body))
			continue
		}
		if p := res.problem(t); p.Status != http.StatusInternalServerError {
			t.Errorf("%s: %d, want a 500", format, p.Status)
		}
	}
}

func pgtestExec(t *testing.T, e *env, sql string) {
	t.Helper()
	if _, err := e.admin.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}
