package query

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/daily"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/migrations"
	"github.com/walscribe/walscribe/prune"
	"github.com/walscribe/walscribe/sink"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

// entry is what the oracle knows of a stored entry.
type entry struct {
	id                                int64
	at                                time.Time
	schema, table, action             string
	actorID, actor, requestID, dbUser string
	ip                                netip.Addr
	pk                                string
	changed                           []string
	xid                               int64
}

// newTrail writes a varied trail over the last 20 days and returns its
// DSN and what was written, by id.
func newTrail(t *testing.T) (string, []entry) {
	t.Helper()
	ctx := context.Background()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	s := sink.NewPostgres(sink.Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: time.Second}, zap.NewNop())
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	r := rand.New(rand.NewPCG(7, 8))
	now := time.Now().UTC().Truncate(time.Microsecond)
	tables := [][2]string{{"public", "orders"}, {"public", "users"}, {"billing", "invoices"}, {"public", "odd name"}}
	actions := []audit.Action{audit.Insert, audit.Update, audit.Update, audit.Delete, "exported", "login_failed"}
	actors := []string{"", "1", "2", "42", "=HYPERLINK(\"http://x\")"}
	var out []entry
	lsn := pglogrepl.LSN(0x1000000)
	for i := range 60 {
		at := now.Add(-time.Duration(r.IntN(20*24)) * time.Hour).Add(-time.Duration(i) * time.Second)
		tx := &audit.Transaction{Xid: uint32(1000 + i), CommitLSN: lsn, EndLSN: lsn + 0x100, CommittedAt: at}
		lsn += 0x1000
		actor := actors[r.IntN(len(actors))]
		ctxt := &audit.Context{ActorID: actor, Actor: "name of " + actor, RequestID: fmt.Sprintf("req-%d", i%7), DBUser: []string{"app", "admin"}[i%2],
			IP: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i % 3), 0, byte(i)}), 32)}
		if actor == "" {
			ctxt = nil
		}
		for j := range 1 + r.IntN(6) {
			tb := tables[r.IntN(len(tables))]
			a := actions[r.IntN(len(actions))]
			id := r.IntN(5)
			e := audit.Entry{Seq: int32(j + 1), Schema: tb[0], Table: tb[1], Action: a, PK: fmt.Appendf(nil, `{"id":%d}`, id),
				New: fmt.Appendf(nil, `{"id":%d,"note":"n%d"}`, id, j), Ctx: ctxt}
			if a == audit.Update {
				e.Old = fmt.Appendf(nil, `{"id":%d,"note":"o"}`, id)
				e.Changed = [][]string{{"note"}, {"note", "total"}, {"total"}}[r.IntN(3)]
			}
			tx.Entries = append(tx.Entries, e)
		}
		if err := s.Write(ctx, []*audit.Transaction{tx}); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := conn.Query(ctx, `SELECT id, committed_at, schema_name, table_name, action, coalesce(actor_id, ''), coalesce(actor, ''),
		coalesce(request_id, ''), coalesce(db_user, ''), ip, pk::text, changed, xid FROM audit.entries ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var e entry
	var ip *netip.Prefix
	_, err = pgx.ForEachRow(rows, []any{&e.id, &e.at, &e.schema, &e.table, &e.action, &e.actorID, &e.actor, &e.requestID, &e.dbUser, &ip, &e.pk, &e.changed, &e.xid}, func() error {
		if ip != nil {
			e.ip = ip.Addr()
		} else {
			e.ip = netip.Addr{}
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dsn, out
}

// match is the oracle: whether e is one f selects, decided in Go.
func (e entry) match(f Filter) bool {
	if e.at.Before(f.Since) || !e.at.Before(f.Until) || f.AfterID > 0 && e.id <= f.AfterID || f.BeforeID > 0 && e.id >= f.BeforeID {
		return false
	}
	if len(f.Tables) > 0 && !slices.ContainsFunc(f.Tables, func(t string) bool {
		s, tb := SplitTable(t)
		return s == e.schema && tb == e.table
	}) {
		return false
	}
	if len(f.Actions) > 0 && !slices.Contains(f.Actions, e.action) {
		return false
	}
	for _, c := range [][2]string{{f.ActorID, e.actorID}, {f.Actor, e.actor}, {f.RequestID, e.requestID}, {f.DBUser, e.dbUser}} {
		if c[0] != "" && c[0] != c[1] {
			return false
		}
	}
	if f.Xid != 0 && f.Xid != e.xid {
		return false
	}
	if f.IP != "" {
		p, _ := parseIP(f.IP)
		if !e.ip.IsValid() || !p.Contains(e.ip) {
			return false
		}
	}
	if f.PK != "" && strings.ReplaceAll(f.PK, " ", "") != strings.ReplaceAll(e.pk, " ", "") {
		return false
	}
	if f.Changed != "" && !slices.Contains(e.changed, f.Changed) {
		return false
	}
	return true
}

// TestFilter: every combination of filters, drawn at random, selects
// exactly the entries the oracle selects.
func TestFilter(t *testing.T) {
	ctx := context.Background()
	dsn, all := newTrail(t)
	conn := pgtest.Connect(t, dsn)
	r := rand.New(rand.NewPCG(9, 10))
	now := time.Now().UTC()
	nonEmpty := 0
	for i := range 400 {
		f := Days(1+r.IntN(25), now)
		if r.IntN(4) == 0 {
			f.Since, f.Until = now.Add(-time.Duration(r.IntN(400))*time.Hour), now.Add(-time.Duration(r.IntN(100))*time.Hour)
			if !f.Since.Before(f.Until) {
				f.Since, f.Until = f.Until, f.Since.Add(time.Hour)
			}
		}
		pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
		if r.IntN(3) == 0 {
			f.Tables = []string{pick("public.orders", "users", "billing.invoices", "public.odd name", "public.none")}
			if r.IntN(3) == 0 {
				f.Tables = append(f.Tables, "billing.invoices")
			}
		}
		if r.IntN(3) == 0 {
			f.Actions = []string{pick("insert", "update", "delete", "exported", "login_failed")}
		}
		if r.IntN(4) == 0 {
			f.ActorID = pick("1", "2", "42", "7")
		}
		if r.IntN(6) == 0 {
			f.Actor = pick("name of 1", "name of 42")
		}
		if r.IntN(5) == 0 {
			f.RequestID = fmt.Sprintf("req-%d", r.IntN(8))
		}
		if r.IntN(6) == 0 {
			f.DBUser = pick("app", "admin")
		}
		if r.IntN(6) == 0 {
			f.IP = pick("10.1.0.0/16", "10.0.0.4", "10.2.0.0/24", "192.168.0.0/16")
		}
		if r.IntN(5) == 0 {
			f.PK = fmt.Sprintf(`{"id": %d}`, r.IntN(6))
		}
		if r.IntN(5) == 0 {
			f.Changed = pick("note", "total", "id")
		}
		if r.IntN(8) == 0 {
			f.Xid = int64(1000 + r.IntN(60))
		}
		if r.IntN(5) == 0 {
			f.AfterID = int64(r.IntN(len(all)))
		}
		if r.IntN(5) == 0 {
			f.BeforeID = int64(r.IntN(len(all) + 2))
		}
		if err := f.Check(); err != nil {
			t.Fatalf("filter %d: %v", i, err)
		}
		var want []int64
		for _, e := range all {
			if e.match(f) {
				want = append(want, e.id)
			}
		}
		where, args := f.Where("e")
		rows, err := conn.Query(ctx, `SELECT e.id FROM audit.entries e WHERE `+where+` ORDER BY e.id`, args...)
		if err != nil {
			t.Fatalf("filter %+v: %v", f, err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("filter %+v:\n  selects %v\n  oracle  %v", f, got, want)
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < 100 {
		t.Errorf("only %d of 400 filters selected anything", nonEmpty)
	}
}

// TestCSVAndJSON: the CSV of a filter holds, cell for cell, what a direct
// query of the trail gives (formula-like cells quoted), and its JSON the
// same entries with their stored documents.
func TestCSVAndJSON(t *testing.T) {
	ctx := context.Background()
	dsn, _ := newTrail(t)
	conn := pgtest.Connect(t, dsn)
	f := Days(30, time.Now())
	f.Tables = []string{"public.orders", "public.users", "public.odd name"}
	var buf bytes.Buffer
	n, err := WriteCSV(ctx, conn, `"audit"`, f, &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(records)) != n+1 || !slices.Equal(records[0], Columns()) {
		t.Fatalf("%d records for %d rows; header %v", len(records), n, records[0])
	}
	rows, err := conn.Query(ctx, `SELECT id::text, commit_lsn::text, seq::text, xid::text,
		to_char(committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), to_char(captured_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
		schema_name, table_name, action, pk::text, old::text, new::text, array_to_json(changed)::text, actor_id, actor, host(ip),
		user_agent, request_id, db_user, host(client_addr), application_name, context::text, retention_class, array_to_json(flags)::text, login_user
		FROM audit.entries e WHERE schema_name = 'public' AND table_name IN ('orders', 'users', 'odd name') ORDER BY e.id`)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]string, error) {
		vals := make([]*string, len(Columns()))
		dest := make([]any, len(vals))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := r.Scan(dest...); err != nil {
			return nil, err
		}
		out := make([]string, len(vals))
		for i, v := range vals {
			if v != nil {
				out[i] = *v
			}
		}
		return out, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != int(n) || n < 20 {
		t.Fatalf("CSV has %d rows, the direct query %d", n, len(want))
	}
	quoted := 0
	for i, w := range want {
		for j := range w {
			cell := w[j]
			if strings.HasPrefix(cell, "=") {
				cell = "'" + cell
				quoted++
			}
			if records[i+1][j] != cell {
				t.Fatalf("row %d, %s: CSV %q, the trail %q", i, Columns()[j], records[i+1][j], w[j])
			}
		}
	}
	if quoted == 0 {
		t.Error("no formula-like cell in the test trail")
	}

	buf.Reset()
	if n2, err := WriteJSON(ctx, conn, `"audit"`, f, &buf, nil); err != nil || n2 != n {
		t.Fatalf("WriteJSON: %d rows, %v; want %d", n2, err, n)
	}
	for i, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		if len(obj) != len(Columns()) || string(obj["id"]) != want[i][0] {
			t.Fatalf("line %d: %d keys, id %s; want %d keys, id %s", i, len(obj), obj["id"], len(Columns()), want[i][0])
		}
		var same bool
		if err := conn.QueryRow(ctx, `SELECT new IS NOT DISTINCT FROM $2::jsonb AND pk = $3::jsonb FROM audit.entries WHERE id = $1`,
			want[i][0], nullJSON(obj["new"]), string(obj["pk"])).Scan(&same); err != nil || !same {
			t.Fatalf("line %d: new or pk differ from the stored ones (%v): %s", i, err, line)
		}
	}
}

func nullJSON(b json.RawMessage) any {
	if string(b) == "null" {
		return nil
	}
	return string(b)
}

// TestSummary: the summary's counts are those of the trail.
func TestSummary(t *testing.T) {
	ctx := context.Background()
	dsn, all := newTrail(t)
	conn := pgtest.Connect(t, dsn)
	f := Days(30, time.Now())
	s, err := Summarize(ctx, conn, `"audit"`, f, 100)
	if err != nil {
		t.Fatal(err)
	}
	if s.Entries != int64(len(all)) {
		t.Errorf("%d entries, want %d", s.Entries, len(all))
	}
	deletes, byActor := int64(0), map[string]int64{}
	for _, e := range all {
		if e.action == "delete" {
			deletes++
		}
		byActor[e.actorID]++
	}
	var dayDeletes, dayEntries int64
	for _, d := range s.ByDay {
		dayDeletes, dayEntries = dayDeletes+d.Deletes, dayEntries+d.Entries
	}
	if dayDeletes != deletes || dayEntries != s.Entries {
		t.Errorf("by day: %d entries, %d deletes; want %d, %d", dayEntries, dayDeletes, s.Entries, deletes)
	}
	for _, a := range s.TopActors {
		if byActor[a.ActorID] != a.Entries {
			t.Errorf("actor %q: %d entries, want %d", a.ActorID, a.Entries, byActor[a.ActorID])
		}
	}
	if len(s.TopActors) != len(byActor) || s.Actors != int64(len(byActor)-1) {
		t.Errorf("%d top actors, %d distinct; want %d and %d", len(s.TopActors), s.Actors, len(byActor), len(byActor)-1)
	}
	byAction, byTable := map[string]int64{}, map[string]int64{}
	for _, e := range all {
		byAction[e.action]++
		byTable[e.schema+"."+e.table+" "+e.action]++
	}
	if len(s.ByAction) != len(byAction) || len(s.ByTable) != len(byTable) {
		t.Errorf("%d actions and %d table actions, want %d and %d", len(s.ByAction), len(s.ByTable), len(byAction), len(byTable))
	}
	for _, c := range s.ByAction {
		if byAction[c.Key] != c.Entries {
			t.Errorf("action %q: %d entries, want %d", c.Key, c.Entries, byAction[c.Key])
		}
	}
	for i, c := range s.ByTable {
		if byTable[c.Schema+"."+c.Table+" "+c.Action] != c.Entries || i > 0 && c.Entries > s.ByTable[i-1].Entries {
			t.Errorf("table %s.%s %s: %d entries (want %d), or out of order", c.Schema, c.Table, c.Action, c.Entries, byTable[c.Schema+"."+c.Table+" "+c.Action])
		}
	}
	for _, a := range s.TopActors {
		if a.ActorID != "" && a.Actor != "name of "+a.ActorID {
			t.Errorf("actor %q named %q", a.ActorID, a.Actor)
		}
	}
	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil || !strings.Contains(text.String(), "top actors") || strings.Contains(text.String(), "\x1b") {
		t.Errorf("WriteText: %v\n%s", err, text.String())
	}
}

// TestDeleteSpikes: a day is a spike when its deletes are at least 10 and
// more than three times the median day's.
func TestDeleteSpikes(t *testing.T) {
	day := func(d string, n int64) DayCount { return DayCount{Day: d, Entries: n, Deletes: n} }
	since := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		days []DayCount
		want []string
	}{
		{"quiet", []DayCount{day("2026-03-01", 2), day("2026-03-02", 3), day("2026-03-03", 4)}, nil},
		{"one spike over zeros", []DayCount{day("2026-03-02", 10)}, []string{"2026-03-02"}},
		{"below ten", []DayCount{day("2026-03-02", 9)}, nil},
		{"steady high", []DayCount{day("2026-03-01", 50), day("2026-03-02", 50), day("2026-03-03", 50), day("2026-03-04", 50), day("2026-03-05", 160)}, []string{"2026-03-05"}},
		{"three times is not more", []DayCount{day("2026-03-01", 50), day("2026-03-02", 50), day("2026-03-03", 50), day("2026-03-04", 50), day("2026-03-05", 150)}, nil},
		{"a window off midnight counts the days it touches", []DayCount{day("2026-03-03", 40)}, []string{"2026-03-03"}},
		{"too few days", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Summary{Since: since, Until: since.Add(7 * 24 * time.Hour), ByDay: c.days}
			if strings.HasPrefix(c.name, "a window off midnight") {
				// Seven days and four hours over nine days, 40 deletes on
				// one: a spike against the median day's 0.
				s.Since, s.Until = since.Add(22*time.Hour), since.Add(8*24*time.Hour+2*time.Hour)
			}
			if c.name == "too few days" {
				s.ByDay = []DayCount{day("2026-03-02", 500)}
				s.Until = since.Add(6 * 24 * time.Hour)
			}
			var got []string
			for _, sp := range s.DeleteSpikes() {
				got = append(got, sp.Day)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("spikes %v, want %v", got, c.want)
			}
		})
	}
}

// TestSummaryFromDailyCounts: a summary of a time window takes the whole
// days the daily counts hold from them, the rest from the entries, and
// adds up to what reading every entry gives; forgotten days are read
// again.
func TestSummaryFromDailyCounts(t *testing.T) {
	ctx := context.Background()
	dsn, _ := newTrail(t)
	conn := pgtest.Connect(t, dsn)
	now := time.Now().UTC()
	windows := []Filter{Days(30, now), {Since: now.Add(-10*24*time.Hour - 7*time.Hour), Until: now.Add(-2*24*time.Hour + 5*time.Hour)}}
	var want []*Summary
	for _, f := range windows {
		s, err := Summarize(ctx, conn, `"audit"`, f, 100)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, s)
	}
	days, err := daily.Uncounted(ctx, conn, `"audit"`, now.AddDate(0, 0, -31), now, 100)
	if err != nil || len(days) < 30 {
		t.Fatalf("%d uncounted days (%v)", len(days), err)
	}
	var total int64
	for _, d := range days {
		n, err := daily.Count(ctx, conn, `"audit"`, d)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if left, _ := daily.Uncounted(ctx, conn, `"audit"`, now.AddDate(0, 0, -31), now, 100); len(left) != 0 {
		t.Errorf("still uncounted: %v", left)
	}
	same := func(label string) {
		t.Helper()
		for i, f := range windows {
			got, err := Summarize(ctx, conn, `"audit"`, f, 100)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want[i]) {
				t.Errorf("%s, window %d:\n  got  %+v\n  want %+v", label, i, got, want[i])
			}
		}
	}
	same("from the daily counts")
	// The counts are what is read: a count that is wrong shows.
	pgtest.Exec(t, dsn, `INSERT INTO audit.daily_counts (day, kind, action, entries) VALUES ((now() AT TIME ZONE 'UTC')::date - 5, 'd', 'insert', 1000)`)
	if s, _ := Summarize(ctx, conn, `"audit"`, windows[0], 100); s.Entries != want[0].Entries+1000 {
		t.Errorf("the summary does not read the daily counts: %d entries, want %d", s.Entries, want[0].Entries+1000)
	}
	if err := daily.Forget(ctx, conn, `"audit"`, now.AddDate(0, 0, -6), now.AddDate(0, 0, -4)); err != nil {
		t.Fatal(err)
	}
	same("with days forgotten")
	if left, _ := daily.Uncounted(ctx, conn, `"audit"`, now.AddDate(0, 0, -31), now, 100); len(left) != 3 {
		t.Errorf("%d days to count again, want 3: %v", len(left), left)
	}
}

// TestCountAndPurgeDoNotOverlap: a purge waits for a count in progress
// (the daily counts' lock), then forgets the day that count wrote: no day
// stays counted with entries a purge removed.
func TestCountAndPurgeDoNotOverlap(t *testing.T) {
	ctx := context.Background()
	dsn, all := newTrail(t)
	conn := pgtest.Connect(t, dsn)
	s := sink.NewPostgres(sink.Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: time.Second}, zap.NewNop())
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	var day time.Time
	for _, e := range all {
		if e.schema == "public" && e.table == "orders" && e.at.Before(time.Now().AddDate(0, 0, -2)) {
			day = e.at.UTC().Truncate(24 * time.Hour)
			break
		}
	}
	if day.IsZero() {
		t.Fatal("no entry of public.orders older than two days")
	}
	// A count in progress: it holds the lock, and has written the day.
	counting, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer counting.Rollback(ctx)
	if _, err := counting.Exec(ctx, `SELECT `+daily.Lock, `"audit"`); err != nil {
		t.Fatal(err)
	}
	if _, err := counting.Exec(ctx, `INSERT INTO audit.daily_days (day, entries) VALUES ($1::date, 999)`, day.Format(time.DateOnly)); err != nil {
		t.Fatal(err)
	}
	pruned := make(chan error, 1)
	go func() {
		_, err := s.Prune(ctx, prune.Scope{Schema: "public", Table: "orders", Before: day.Add(24 * time.Hour)}, 1000, nil)
		pruned <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := counting.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-pruned:
			t.Fatalf("the purge did not wait for the count in progress (%v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the purge never waited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := counting.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-pruned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the purge did not finish")
	}
	var counted bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit.daily_days WHERE day = $1::date)`, day.Format(time.DateOnly)).Scan(&counted); err != nil || counted {
		t.Errorf("the day the purge touched is still counted (%v)", err)
	}
}
