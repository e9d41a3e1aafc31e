package query

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
)

// Summary is what the entries a filter selects add up to.
type Summary struct {
	Since, Until time.Time
	Entries      int64
	Actors       int64        // distinct actor ids
	ByAction     []Count      // every action: row actions and events
	ByTable      []TableCount // by table and action, most first
	TopActors    []ActorCount // most first
	ByDay        []DayCount   // by UTC day
}

// Count is how many entries have one value.
type Count struct {
	Key     string `json:"key"`
	Entries int64  `json:"entries"`
}

// TableCount is how many entries of one action one table has.
type TableCount struct {
	Schema  string `json:"schema"`
	Table   string `json:"table"`
	Action  string `json:"action"`
	Entries int64  `json:"entries"`
}

// ActorCount is how many entries one actor has ("" for none).
type ActorCount struct {
	ActorID string `json:"actor_id"`
	Actor   string `json:"actor"` // the latest name the actor had
	Entries int64  `json:"entries"`
	Deletes int64  `json:"deletes"`
	none    bool   // entries without an actor id (ActorID "" too)
}

// DayCount is how many entries, and deletes, a day has.
type DayCount struct {
	Day     string `json:"day"` // YYYY-MM-DD, UTC
	Entries int64  `json:"entries"`
	Deletes int64  `json:"deletes"`
}

// Summarize adds up the entries f selects in schema (an SQL identifier,
// quoted): at most top tables and actors. A filter of a time window alone
// takes the whole UTC days it covers from the daily counts where they hold
// them (see package daily), and reads only the rest of the window; any other
// filter reads its entries (one scan, three groupings). Then it looks up
// the latest name of each top actor.
func Summarize(ctx context.Context, q Querier, schema string, f Filter, top int) (*Summary, error) {
	// Every read in one snapshot: a purge that forgets days between two of
	// them must not make the counted days and the read ones miss each other.
	if b, ok := q.(txBeginner); ok {
		tx, err := b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("summarize: %w", err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		q = tx
	}
	t := newTally()
	ranges := []Filter{f}
	if f.windowOnly() {
		counted, live, err := countedDays(ctx, q, schema, f)
		if err != nil {
			return nil, err
		}
		if len(counted) > 0 {
			if err := t.addCounted(ctx, q, schema, counted); err != nil {
				return nil, err
			}
		}
		ranges = live
	}
	for _, r := range ranges {
		if err := t.addScan(ctx, q, schema, r); err != nil {
			return nil, err
		}
	}
	s := t.summary(f, top)
	if err := s.actorNames(ctx, q, schema, f); err != nil {
		return nil, err
	}
	return s, nil
}

// txBeginner begins a transaction: a connection or a pool.
type txBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// windowOnly reports whether f selects by time alone.
func (f Filter) windowOnly() bool {
	g := f
	g.Since, g.Until = time.Time{}, time.Time{}
	return g.Tables == nil && g.Actions == nil && g.Classes == nil && g.ActorID == "" && g.Actor == "" && g.RequestID == "" &&
		g.Xid == 0 && g.DBUser == "" && g.IP == "" && g.PK == "" && g.Changed == "" && g.AfterID == 0 && g.BeforeID == 0
}

// countedDays splits f's window into the whole UTC days the daily counts
// hold, and the windows to read from the entries.
func countedDays(ctx context.Context, q Querier, schema string, f Filter) (counted []time.Time, live []Filter, err error) {
	day := 24 * time.Hour
	first := f.Since.UTC().Truncate(day)
	if first.Before(f.Since) {
		first = first.Add(day)
	}
	end := f.Until.UTC().Truncate(day)
	if !first.Before(end) {
		return nil, []Filter{f}, nil
	}
	// A trail of an earlier version, or a role that may not read them:
	// no counted days, the entries are read.
	rows, err := q.Query(ctx, `SELECT coalesce(has_table_privilege(to_regclass($1), 'SELECT') AND has_table_privilege(to_regclass($2), 'SELECT'), false)`,
		schema+".daily_days", schema+".daily_counts")
	readable := false
	if err == nil {
		readable, err = pgx.CollectExactlyOneRow(rows, pgx.RowTo[bool])
	}
	if err != nil {
		return nil, nil, fmt.Errorf("summarize: read the daily counts: %w", err)
	}
	if !readable {
		return nil, []Filter{f}, nil
	}
	rows, err = q.Query(ctx, `SELECT day FROM `+schema+`.daily_days WHERE day >= $1::date AND day < $2::date ORDER BY day`,
		first.Format(time.DateOnly), end.Format(time.DateOnly))
	var days []time.Time
	if err == nil {
		days, err = pgx.CollectRows(rows, pgx.RowTo[time.Time])
	}
	if err != nil {
		return nil, nil, fmt.Errorf("summarize: read the daily counts: %w", err)
	}
	at := f.Since
	for _, d := range days {
		d = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
		if at.Before(d) {
			live = append(live, f.window(at, d))
		}
		counted = append(counted, d)
		at = d.Add(day)
	}
	if at.Before(f.Until) {
		live = append(live, f.window(at, f.Until))
	}
	return counted, live, nil
}

func (f Filter) window(since, until time.Time) Filter {
	f.Since, f.Until = since, until
	return f
}

// tally adds up counts of entries, from scans and from daily counts.
type tally struct {
	entries int64
	actions map[string]int64
	days    map[string]*DayCount
	tables  map[[3]string]int64
	actors  map[string]*ActorCount
}

func newTally() *tally {
	return &tally{actions: map[string]int64{}, days: map[string]*DayCount{}, tables: map[[3]string]int64{}, actors: map[string]*ActorCount{}}
}

func (t *tally) addDay(day, action string, n int64) {
	t.actions[action] += n
	t.entries += n
	dc := t.days[day]
	if dc == nil {
		dc = &DayCount{Day: day}
		t.days[day] = dc
	}
	dc.Entries += n
	if action == "delete" {
		dc.Deletes += n
	}
}

func (t *tally) addActor(actor *string, action string, n int64) {
	key := "\x00none" // no actor id, apart from an empty one
	if actor != nil {
		key = *actor
	}
	a := t.actors[key]
	if a == nil {
		a = &ActorCount{ActorID: deref(actor), none: actor == nil}
		t.actors[key] = a
	}
	a.Entries += n
	if action == "delete" {
		a.Deletes += n
	}
}

// addScan adds the entries f selects, read in one scan.
func (t *tally) addScan(ctx context.Context, q Querier, schema string, f Filter) error {
	where, args := f.Where("e")
	day := `to_char(e.committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`
	rows, err := q.Query(ctx, `SELECT GROUPING(`+day+`, e.schema_name, e.table_name, e.actor_id), `+day+`, e.schema_name, e.table_name, e.action, e.actor_id, count(*)
		FROM `+schema+`.entries e WHERE `+where+`
		GROUP BY GROUPING SETS ((`+day+`, e.action), (e.schema_name, e.table_name, e.action), (e.actor_id, e.action))`, args...)
	if err != nil {
		return fmt.Errorf("summarize: %w", err)
	}
	var (
		g                    int32
		d, sc, tb, ac, actor *string
		n                    int64
	)
	_, err = pgx.ForEachRow(rows, []any{&g, &d, &sc, &tb, &ac, &actor, &n}, func() error {
		switch g {
		case 0b0111: // day, action
			t.addDay(deref(d), deref(ac), n)
		case 0b1001: // table, action
			t.tables[[3]string{deref(sc), deref(tb), deref(ac)}] += n
		case 0b1110: // actor, action
			t.addActor(actor, deref(ac), n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("summarize: %w", err)
	}
	return nil
}

// addCounted adds the daily counts of days.
func (t *tally) addCounted(ctx context.Context, q Querier, schema string, days []time.Time) error {
	dates := make([]string, len(days))
	for i, d := range days {
		dates[i] = d.Format(time.DateOnly)
	}
	rows, err := q.Query(ctx, `
		SELECT 'd', to_char(day, 'YYYY-MM-DD'), NULL, NULL, NULL, action, entries FROM `+schema+`.daily_counts WHERE kind = 'd' AND day = ANY ($1::date[])
		UNION ALL
		SELECT 't', NULL, schema_name, table_name, NULL, action, sum(entries)::bigint FROM `+schema+`.daily_counts WHERE kind = 't' AND day = ANY ($1::date[])
		 GROUP BY schema_name, table_name, action
		UNION ALL
		SELECT 'a', NULL, NULL, NULL, actor_id, action, sum(entries)::bigint FROM `+schema+`.daily_counts WHERE kind = 'a' AND day = ANY ($1::date[])
		 GROUP BY actor_id, action`, dates)
	if err != nil {
		return fmt.Errorf("summarize: read the daily counts: %w", err)
	}
	var (
		kind                 string
		d, sc, tb, actor, ac *string
		n                    int64
	)
	_, err = pgx.ForEachRow(rows, []any{&kind, &d, &sc, &tb, &actor, &ac, &n}, func() error {
		switch kind {
		case "d":
			t.addDay(deref(d), deref(ac), n)
		case "t":
			t.tables[[3]string{deref(sc), deref(tb), deref(ac)}] += n
		case "a":
			t.addActor(actor, deref(ac), n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("summarize: read the daily counts: %w", err)
	}
	return nil
}

// summary is what t adds up to, at most top tables and actors.
func (t *tally) summary(f Filter, top int) *Summary {
	s := &Summary{Since: f.Since, Until: f.Until, Entries: t.entries}
	for k, v := range t.actions {
		s.ByAction = append(s.ByAction, Count{Key: k, Entries: v})
	}
	slices.SortFunc(s.ByAction, func(a, b Count) int { return cmp.Or(cmp.Compare(b.Entries, a.Entries), cmp.Compare(a.Key, b.Key)) })
	for k, v := range t.tables {
		s.ByTable = append(s.ByTable, TableCount{Schema: k[0], Table: k[1], Action: k[2], Entries: v})
	}
	slices.SortFunc(s.ByTable, func(a, b TableCount) int {
		return cmp.Or(cmp.Compare(b.Entries, a.Entries), cmp.Compare(a.Schema, b.Schema), cmp.Compare(a.Table, b.Table), cmp.Compare(a.Action, b.Action))
	})
	s.ByTable = s.ByTable[:min(len(s.ByTable), top)]
	for _, a := range t.actors {
		if !a.none {
			s.Actors++
		}
		s.TopActors = append(s.TopActors, *a)
	}
	slices.SortFunc(s.TopActors, func(a, b ActorCount) int {
		return cmp.Or(cmp.Compare(b.Entries, a.Entries), cmp.Compare(a.ActorID, b.ActorID))
	})
	s.TopActors = s.TopActors[:min(len(s.TopActors), top)]
	for _, dc := range t.days {
		s.ByDay = append(s.ByDay, *dc)
	}
	slices.SortFunc(s.ByDay, func(a, b DayCount) int { return cmp.Compare(a.Day, b.Day) })
	return s
}

// actorNames fills in the latest name each top actor had in f's window.
func (s *Summary) actorNames(ctx context.Context, q Querier, schema string, f Filter) error {
	var ids []string
	for _, a := range s.TopActors {
		if !a.none {
			ids = append(ids, a.ActorID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// One look-up per actor, newest first through the actor index, rather
	// than a second pass over the window.
	where, args := f.Where("e")
	rows, err := q.Query(ctx, `SELECT a.id, n.actor FROM unnest($`+strconv.Itoa(len(args)+1)+`::text[]) a(id)
		CROSS JOIN LATERAL (SELECT e.actor FROM `+schema+`.entries e
			WHERE `+where+` AND e.actor_id = a.id AND e.actor IS NOT NULL ORDER BY e.id DESC LIMIT 1) n`, append(args, ids)...)
	if err != nil {
		return fmt.Errorf("summarize actors: %w", err)
	}
	names := map[string]string{}
	var id, name string
	if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error { names[id] = name; return nil }); err != nil {
		return fmt.Errorf("summarize actors: %w", err)
	}
	for i := range s.TopActors {
		if !s.TopActors[i].none {
			s.TopActors[i].Actor = names[s.TopActors[i].ActorID]
		}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Spike is a day with unusually many deletes.
type Spike struct {
	Day      string `json:"day"`
	Deletes  int64  `json:"deletes"`
	Baseline int64  `json:"baseline"` // the median of the window's daily deletes
}

// DeleteSpikes are the days of s whose deletes are at least 10 and more
// than three times the median of its days' deletes (days without entries
// count as 0); none for a window of fewer than 7 days.
func (s *Summary) DeleteSpikes() []Spike {
	// The UTC days the window touches, from since's to the one before until.
	first := s.Since.UTC().Truncate(24 * time.Hour)
	last := s.Until.UTC().Add(-time.Nanosecond).Truncate(24 * time.Hour)
	span := int(last.Sub(first).Hours()/24) + 1
	if s.Until.Sub(s.Since) < 7*24*time.Hour {
		return nil // too few days to tell a usual one
	}
	per := make([]int64, 0, max(span, len(s.ByDay)))
	for _, d := range s.ByDay {
		per = append(per, d.Deletes)
	}
	for len(per) < span {
		per = append(per, 0)
	}
	slices.Sort(per)
	median := per[(len(per)-1)/2] // the lower median: with two days, the quieter
	var out []Spike
	for _, d := range s.ByDay {
		if d.Deletes >= 10 && d.Deletes > 3*median {
			out = append(out, Spike{Day: d.Day, Deletes: d.Deletes, Baseline: median})
		}
	}
	return out
}

// rowActions are the actions of row changes; the others are events.
var rowActions = map[string]bool{"insert": true, "update": true, "delete": true, "truncate": true}

// WriteText writes the summary as tables, for a terminal.
func (s *Summary) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("%d entries, %d actors, from %s to %s (UTC)", s.Entries, s.Actors, s.Since.UTC().Format(time.DateTime), s.Until.UTC().Format(time.DateTime))
	var rows, events []string
	for _, c := range s.ByAction {
		item := fmt.Sprintf("%s %d", clean(c.Key), c.Entries)
		if rowActions[c.Key] {
			rows = append(rows, item)
		} else {
			events = append(events, item)
		}
	}
	p("changes: %s", orNone(strings.Join(rows, ", ")))
	p("events: %s", orNone(strings.Join(events, ", ")))
	if len(s.ByTable) > 0 {
		p("\nby table\tentries\taction")
		for _, t := range s.ByTable {
			p("%s.%s\t%d\t%s", clean(t.Schema), clean(t.Table), t.Entries, clean(t.Action))
		}
	}
	if len(s.TopActors) > 0 {
		p("\ntop actors\tentries\tdeletes\tname")
		for _, a := range s.TopActors {
			id := a.ActorID
			if id == "" {
				id = "(none)"
			}
			p("%s\t%d\t%d\t%s", clean(id), a.Entries, a.Deletes, clean(a.Actor))
		}
	}
	if len(s.ByDay) > 0 {
		p("\nby day\tentries\tdeletes")
		for _, d := range s.ByDay {
			p("%s\t%d\t%d", d.Day, d.Entries, d.Deletes)
		}
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func clean(s string) string { return Clean(s, 80) }

// Clean is a value written by the application (or anyone else), made
// harmless for a terminal: control and format characters (escape
// sequences, tabs, line breaks, right-to-left overrides) are shown
// escaped, and it is cut at max characters.
func Clean(s string, max int) string {
	var b strings.Builder
	for i, r := range s {
		if i >= max {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			// Escape sequences, line breaks, and format characters such
			// as right-to-left overrides.
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
