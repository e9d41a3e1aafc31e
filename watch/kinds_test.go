package watch

import (
	"slices"
	"testing"
	"time"

	"github.com/walscribe/walscribe/audit"
)

func TestMatchOncePerTransaction(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "reads", Kind: Match, Tables: []string{"*.*"}, Actions: []string{"read"}}}})
	read := change("public", "patients", "read", "7")
	h.feed(t0, read, read, change("public", "patients", audit.Update, "7"), read)
	h.feed(t0.Add(time.Second), change("public", "patients", audit.Update, "7"))
	h.feed(t0.Add(2*time.Second), read)
	got := h.alerts()
	if !slices.Equal(ids(got), []int64{1, 6}) {
		t.Fatalf("alerts on %v, want [1 6]: one per transaction", ids(got))
	}
	if a := got[0]; a.Count != 3 || a.FirstID != 1 || a.LastID != 4 || !slices.Equal(a.Sample, []int64{1, 2, 4}) || a.Window != 0 || a.Group != "" {
		t.Errorf("alert %+v: want count 3, ids 1..4, sample [1 2 4], no window, no group", *a)
	}
}

func TestMatchColumns(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "card", Kind: Match, Columns: []string{"card_number", "ssn"}}}})
	cases := []struct {
		name string
		e    audit.Entry
		want bool
	}{
		{"changed", audit.Entry{Changed: []string{"total", "ssn"}}, true},
		{"new key", audit.Entry{New: []byte(`{"id": 1, "card_number": "x"}`)}, true},
		{"old key", audit.Entry{Old: []byte(`{"id":1,"ssn":null}`)}, true},
		{"escaped key", audit.Entry{New: []byte(`{"card\u005fnumber": 1}`)}, true},
		{"nested key only", audit.Entry{New: []byte(`{"data": {"card_number": 1}, "list": [{"ssn": 2}]}`)}, false},
		{"as a value only", audit.Entry{New: []byte(`{"col": "card_number", "x": "\"ssn\": 1"}`)}, false},
		{"neither", audit.Entry{New: []byte(`{"id": 1}`), Changed: []string{"id"}}, false},
		{"not an object", audit.Entry{New: []byte(`["card_number"]`)}, false},
		{"malformed", audit.Entry{New: []byte(`{"id": 1, "card_number`)}, false},
		{"empty", audit.Entry{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.e.Schema, c.e.Table, c.e.Action = "public", "cards", audit.Update
			h.feed(t0, c.e)
			if got := len(h.alerts()) == 1; got != c.want {
				t.Errorf("fired %v, want %v", got, c.want)
			}
		})
	}
}

func TestMatchCooldown(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "admin", Kind: Match, Tables: []string{"public.roles"}, By: ByDBUser, Cooldown: 10 * time.Minute}}})
	grant := change("public", "roles", audit.Insert, "1")
	for _, at := range []time.Duration{0, 5 * time.Minute, 14 * time.Minute, 23 * time.Minute} {
		h.feed(t0.Add(at), grant)
	}
	if got := h.alerts(); !slices.Equal(ids(got), []int64{1}) {
		t.Fatalf("a run of changes no more than a cooldown apart fired on %v, want [1]", ids(got))
	}
	h.feed(t0.Add(40*time.Minute), grant)
	got := h.alerts()
	if !slices.Equal(ids(got), []int64{5}) {
		t.Fatalf("after a quiet cooldown, alerts on %v, want [5]", ids(got))
	}
	if got[0].Window != 10*time.Minute || got[0].Group != "app" || got[0].By != ByDBUser {
		t.Errorf("alert %+v: want window 10m, group app (db_user)", *got[0])
	}
}

// A transaction with more groups than max_groups fires for max_groups of
// them and once for the rest.
func TestPerTransactionGroupsBounded(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "m", Kind: Match, By: ByActorID, MaxGroups: 2}}})
	h.feed(t0, del("a"), del("b"), del("c"), del("d"), del("a"), del("e"))
	got := h.alerts()
	var groups []string
	for _, a := range got {
		groups = append(groups, a.Group)
	}
	if !slices.Equal(groups, []string{"a", "b", "(more groups)"}) || got[2].Count != 3 {
		t.Fatalf("groups %q (counts %v), want a, b and (more groups) of 3", groups, counts(got))
	}
}

func counts(as []*Alert) []int64 {
	var out []int64
	for _, a := range as {
		out = append(out, a.Count)
	}
	return out
}

func TestOutsideHours(t *testing.T) {
	berlin := Rule{Name: "payroll", Kind: OutsideHours, Tables: []string{"hr.payroll"}, Hours: "08:00-18:00", Days: "mon-fri", TimeZone: "Europe/Berlin"}
	tokyo := Rule{Name: "tokyo", Kind: OutsideHours, TimeZone: "Asia/Tokyo"}
	night := Rule{Name: "night", Kind: OutsideHours, Hours: "22:00-06:00", Days: "fri-mon", TimeZone: "America/New_York"}
	utc := func(s string) time.Time {
		t, err := time.Parse(time.DateTime, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	cases := []struct {
		name    string
		rule    Rule
		at      time.Time
		outside bool
	}{
		{"monday 09:00 CET", berlin, utc("2024-03-25 08:00:00"), false},
		{"monday 07:59 CET", berlin, utc("2024-03-25 06:59:00"), true},
		{"monday 18:00 CET, end exclusive", berlin, utc("2024-03-25 17:00:00"), true},
		{"monday 17:59 CET", berlin, utc("2024-03-25 16:59:00"), false},
		{"saturday noon", berlin, utc("2024-03-23 11:00:00"), true},
		// 06:30 UTC is 07:30 before the change to summer time (CET, +1)
		// and 08:30 after it (CEST, +2).
		{"06:30 UTC a week before summer time", berlin, utc("2024-03-25 06:30:00"), true},
		{"06:30 UTC the monday after summer time", berlin, utc("2024-04-01 06:30:00"), false},
		{"16:30 UTC the monday after summer time is 18:30", berlin, utc("2024-04-01 16:30:00"), true},
		{"16:30 UTC the monday after winter time is 17:30", berlin, utc("2024-10-28 16:30:00"), false},
		{"a UTC sunday is a tokyo monday", tokyo, utc("2024-03-24 23:30:00"), false},
		{"tokyo friday 19:00", tokyo, utc("2024-03-29 10:00:00"), true},
		{"a UTC friday is a tokyo saturday", tokyo, utc("2024-03-29 23:30:00"), true},
		{"night watch: saturday 23:00 in New York", night, utc("2024-03-10 04:00:00"), false},
		{"night watch: sunday 03:30 EDT, just after the clocks jumped", night, utc("2024-03-10 07:30:00"), false},
		{"night watch: sunday 07:00 EDT", night, utc("2024-03-10 11:00:00"), true},
		{"night watch: tuesday 23:00 is not a working day", night, utc("2024-03-13 03:00:00"), true},
		{"night watch: the repeated 01:30 in November, first", night, utc("2024-11-03 05:30:00"), false},
		{"night watch: the repeated 01:30 in November, second", night, utc("2024-11-03 06:30:00"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{Rules: []Rule{c.rule}})
			h.feed(c.at, change("hr", "payroll", audit.Update, "9"))
			if got := len(h.alerts()) == 1; got != c.outside {
				t.Errorf("fired %v, want %v (local time %s)", got, c.outside, c.at.In(h.e.rules[0].sched.loc))
			}
		})
	}
}

func TestOutsideHoursOncePerTransaction(t *testing.T) {
	h := newHarness(t, Config{Rules: []Rule{{Name: "late", Kind: OutsideHours}}})
	sunday := t0.Add(-24 * time.Hour)
	h.feed(sunday, repeat(change("public", "a", audit.Update, "1"), 5)...)
	h.feed(sunday.Add(time.Minute), change("public", "a", audit.Update, "1"))
	h.feed(t0, repeat(change("public", "a", audit.Update, "1"), 5)...) // monday noon: inside
	got := h.alerts()
	if !slices.Equal(ids(got), []int64{1, 6}) || got[0].Count != 5 {
		t.Fatalf("alerts on %v (counts %v), want [1 6] with 5 and 1", ids(got), counts(got))
	}
}
