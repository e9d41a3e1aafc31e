package ui

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/query"
)

// summaryView is the dashboard: what the window's entries add up to.
type summaryView struct {
	P        params
	Days     []int // the windows offered
	Error    string
	Since    string
	Until    string
	S        *query.Summary
	ByAction []countLink
	ByTable  []countLink
	Actors   []actorLink
	Spikes   []spikeLink
	Chart    chart
}

// spikeLink is a delete spike with the list of its deletes.
type spikeLink struct {
	query.Spike
	URL string
}

func (v summaryView) nav() string { return "summary" }

// countLink is a count with the list of what it counts.
type countLink struct {
	Label, Action, URL string
	Entries            int64
}

// actorLink is a top actor with their activity.
type actorLink struct {
	query.ActorCount
	URL string
}

// summaryTop is how many tables and actors the dashboard lists.
const summaryTop = 10

// summary is the dashboard of the last days (30 by default): counts by
// action, table and actor, delete spikes, and entries per day.
func (u *UI) summary(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := only(r.URL.Query(), "table", "action", "actor_id", "since", "until", "days"); err != nil {
		return err
	}
	all := readParams(r.URL.Query())
	p := params{Tables: all.Tables, Actions: all.Actions, ActorID: all.ActorID, Since: all.Since, Until: all.Until, Days: all.Days}
	v := summaryView{P: p, Days: []int{1, 7, 30, 90, 365}}
	f, _, err := p.filter(summaryDays, u.cfg.Now())
	if err == nil && f.Until.Sub(f.Since) > 366*24*time.Hour {
		err = errors.New("a summary covers at most 366 days: narrow the window")
	}
	if err != nil {
		v.Error = err.Error()
		u.show(w, r, s, http.StatusBadRequest, "summary", "Summary", v)
		return nil
	}
	sum, err := query.Summarize(r.Context(), u.db, pgx.Identifier{u.cfg.Schema}.Sanitize(), f, summaryTop)
	if err != nil {
		return err
	}
	if err := u.read(r, s, "ui.getSummary", &f, "", int(sum.Entries)); err != nil {
		return err
	}
	v.S, v.Since, v.Until = sum, stamp(f.Since), stamp(f.Until)
	spikes := sum.DeleteSpikes()
	for _, sp := range spikes {
		l := spikeLink{Spike: sp}
		if day, err := time.Parse(time.DateOnly, sp.Day); err == nil {
			l.URL = "/?" + url.Values{"action": {"delete"}, "since": {sp.Day}, "until": {day.Add(24 * time.Hour).Format(time.DateOnly)}}.Encode()
		}
		v.Spikes = append(v.Spikes, l)
	}
	// Each count links to the list of what it counts, in the same window.
	within := func(extra url.Values) string {
		q := p.values()
		if q.Get("days") == "" && q.Get("since") == "" {
			q.Set("days", strconv.Itoa(summaryDays))
		}
		for k, vs := range extra {
			q[k] = vs
		}
		return "/?" + q.Encode()
	}
	for _, c := range sum.ByAction {
		v.ByAction = append(v.ByAction, countLink{Label: c.Key, Action: c.Key, Entries: c.Entries, URL: within(url.Values{"action": {c.Key}})})
	}
	for _, c := range sum.ByTable {
		t := c.Schema + "." + c.Table
		v.ByTable = append(v.ByTable, countLink{Label: t, Action: c.Action, Entries: c.Entries, URL: within(url.Values{"table": {t}, "action": {c.Action}})})
	}
	for _, a := range sum.TopActors {
		l := actorLink{ActorCount: a}
		if a.ActorID != "" {
			l.URL = within(url.Values{"actor_id": {a.ActorID}})
		}
		v.Actors = append(v.Actors, l)
	}
	v.Chart = dayChart(sum, f.Since, f.Until, spikes)
	u.show(w, r, s, http.StatusOK, "summary", "Summary", v)
	return nil
}

// chart is entries per day as an SVG bar chart, drawn by the server:
// each day a bar of its entries, its deletes a red bar inside it.
type chart struct {
	Width, Height, Base int
	ViewWidth           int // the bars' width and room for the last label
	Max                 int64
	Bars                []bar
	Labels              []label
}

// bar is one day of the chart, in SVG user units.
type bar struct {
	X, W, Y, H, DY, DH float64
	Title              string
	URL                string
	Spike              bool
}

// label is a day written under the chart.
type label struct {
	X    float64
	Text string
}

// maxChartDays is the most days drawn one bar each: a longer window draws
// its days with entries only.
const maxChartDays = 400

func dayChart(sum *query.Summary, since, until time.Time, spikes []query.Spike) chart {
	c := chart{Width: 760, ViewWidth: 800, Height: 180, Base: 160}
	counts := map[string]query.DayCount{}
	for _, d := range sum.ByDay {
		counts[d.Day] = d
		c.Max = max(c.Max, d.Entries)
	}
	var days []string
	if until.Sub(since) <= maxChartDays*24*time.Hour {
		for d := since.UTC().Truncate(24 * time.Hour); d.Before(until); d = d.Add(24 * time.Hour) {
			days = append(days, d.Format(time.DateOnly))
		}
	} else {
		for _, d := range sum.ByDay {
			days = append(days, d.Day)
		}
	}
	if len(days) == 0 {
		return c
	}
	spiked := map[string]bool{}
	for _, s := range spikes {
		spiked[s.Day] = true
	}
	step := float64(c.Width) / float64(len(days))
	height := float64(c.Base - 10)
	every := max(1, len(days)/8)
	for i, day := range days {
		d := counts[day]
		b := bar{X: float64(i) * step, W: max(step-1, 0.5), Spike: spiked[day],
			Title: day + ": " + strconv.FormatInt(d.Entries, 10) + " entries, " + strconv.FormatInt(d.Deletes, 10) + " deletes"}
		if c.Max > 0 {
			b.H = height * float64(d.Entries) / float64(c.Max)
			b.DH = height * float64(d.Deletes) / float64(c.Max)
		}
		b.Y, b.DY = float64(c.Base)-b.H, float64(c.Base)-b.DH
		if t, err := time.Parse(time.DateOnly, day); err == nil {
			b.URL = "/?" + url.Values{"since": {day}, "until": {t.Add(24 * time.Hour).Format(time.DateOnly)}}.Encode()
		}
		c.Bars = append(c.Bars, b)
		if i%every == 0 {
			c.Labels = append(c.Labels, label{X: b.X, Text: day[5:]})
		}
	}
	return c
}
