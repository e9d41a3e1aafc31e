package query

import (
	"context"
	"fmt"
	"io"
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
}

// DayCount is how many entries, and deletes, a day has.
type DayCount struct {
	Day     string `json:"day"` // YYYY-MM-DD, UTC
	Entries int64  `json:"entries"`
	Deletes int64  `json:"deletes"`
}

// Summarize adds up the entries f selects in schema (an SQL identifier,
// quoted): at most top tables and actors.
func Summarize(ctx context.Context, q Querier, schema string, f Filter, top int) (*Summary, error) {
	where, args := f.Where("e")
	from := ` FROM ` + schema + `.entries e WHERE ` + where
	s := &Summary{Since: f.Since, Until: f.Until}
	run := func(what, sql string, dest []any, each func()) error {
		rows, err := q.Query(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("summarize %s: %w", what, err)
		}
		if _, err := pgx.ForEachRow(rows, dest, func() error { each(); return nil }); err != nil {
			return fmt.Errorf("summarize %s: %w", what, err)
		}
		return nil
	}
	var c Count
	if err := run("actions", `SELECT e.action, count(*)`+from+` GROUP BY 1 ORDER BY 2 DESC, 1`,
		[]any{&c.Key, &c.Entries}, func() { s.ByAction = append(s.ByAction, c); s.Entries += c.Entries }); err != nil {
		return nil, err
	}
	var t TableCount
	if err := run("tables", `SELECT e.schema_name, e.table_name, e.action, count(*)`+from+fmt.Sprintf(` GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT %d`, top),
		[]any{&t.Schema, &t.Table, &t.Action, &t.Entries}, func() { s.ByTable = append(s.ByTable, t) }); err != nil {
		return nil, err
	}
	var a ActorCount
	if err := run("actors", `SELECT coalesce(e.actor_id, ''), coalesce((array_agg(e.actor ORDER BY e.id DESC) FILTER (WHERE e.actor IS NOT NULL))[1], ''),
			count(*), count(*) FILTER (WHERE e.action = 'delete')`+from+fmt.Sprintf(` GROUP BY e.actor_id ORDER BY 3 DESC, 1 LIMIT %d`, top),
		[]any{&a.ActorID, &a.Actor, &a.Entries, &a.Deletes}, func() { s.TopActors = append(s.TopActors, a) }); err != nil {
		return nil, err
	}
	var d DayCount
	if err := run("days", `SELECT to_char(e.committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*), count(*) FILTER (WHERE e.action = 'delete')`+from+` GROUP BY 1 ORDER BY 1`,
		[]any{&d.Day, &d.Entries, &d.Deletes}, func() { s.ByDay = append(s.ByDay, d) }); err != nil {
		return nil, err
	}
	if err := run("actors", `SELECT count(DISTINCT e.actor_id)`+from, []any{&s.Actors}, func() {}); err != nil {
		return nil, err
	}
	return s, nil
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
