// Package retention decides which entries of the trail have expired, and
// removes them: a month of one retention class whose period has passed is
// dropped whole (its partition); rows are deleted, in batches, only where
// a partition cannot go whole — a table held or kept longer than the
// partition's class, a table whose period was shortened since its entries
// were written, or a cleanup of chosen tables. Every removal is recorded
// (sink.Prune). Legal holds block it.
package retention

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/prune"
	"github.com/walscribe/walscribe/rules"
)

// Policy is what the configuration says.
type Policy struct {
	// Period returns the retention period a table's entries are kept for
	// now ("" when kept until a cleanup names them).
	Period func(schema, table string) string
	// Holds are table names or patterns (schema.table, path.Match syntax on
	// each part; a name without a dot is in public) never expired.
	Holds []string
}

// held reports whether a hold covers the table.
func (p Policy) held(schema, table string) bool {
	if p.holdsAll() {
		return true
	}
	for _, h := range p.Holds {
		hs, ht, ok := strings.Cut(h, ".")
		if !ok {
			hs, ht = "public", h
		}
		if rules.MatchName(hs, schema) && rules.MatchName(ht, table) {
			return true
		}
	}
	return false
}

// holdsAll reports whether a hold covers every table.
func (p Policy) holdsAll() bool {
	for _, h := range p.Holds {
		if h == "*" || h == "*.*" {
			return true
		}
	}
	return false
}

// days is a period's length in days, at least (months 28, years 365) or
// at most (31, 366): only to compare two periods. -1: no period, kept for
// ever.
func days(period string, most bool) int {
	if len(period) < 2 {
		return -1
	}
	n, err := strconv.Atoi(period[:len(period)-1])
	if err != nil {
		return -1
	}
	month, year := 28, 365
	if most {
		month, year = 31, 366
	}
	switch period[len(period)-1] {
	case 'w':
		return 7 * n
	case 'm':
		return month * n
	case 'y':
		return year * n
	}
	return n
}

// longer reports whether period a may keep entries longer than period b:
// its longest reckoning is longer than b's shortest.
func longer(a, b string) bool {
	da, db := days(a, true), days(b, false)
	switch {
	case da < 0:
		return db >= 0
	case db < 0:
		return false
	}
	return da > db
}

// Step is one removal: a partition dropped, or a table's rows deleted.
type Step struct {
	Scope   prune.Scope
	Drop    bool      // the partition goes whole; else rows are deleted
	Entries int64     // entries it removes (as planned)
	Oldest  time.Time // committed_at of the oldest and newest of them
	Newest  time.Time
}

// Held is a table whose expired entries a hold keeps.
type Held struct {
	Schema, Table string
	Entries       int64
}

// Plan is what a cleanup removes, in the order it does.
type Plan struct {
	Steps []Step
	Held  []Held
}

// Entries is how many entries the plan removes.
func (p *Plan) Entries() int64 {
	var n int64
	for _, s := range p.Steps {
		n += s.Entries
	}
	return n
}

// Options narrow a plan to a cleanup of chosen tables.
type Options struct {
	// Tables, with OlderThan, are the tables (names or patterns) whose
	// entries committed more than OlderThan ago are deleted, whatever
	// their period; nil: expire by the policy.
	Tables    []string
	OlderThan string // a period: 30d, 12w, 6m, 1y
}

// querier runs queries: a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Make plans a cleanup of the trail in schema (an SQL identifier, quoted)
// at time now: what the policy has expired, or with o.Tables what is older
// than o.OlderThan.
func Make(ctx context.Context, q querier, schema string, pol Policy, now time.Time, o Options) (*Plan, error) {
	if o.Tables != nil {
		return planTables(ctx, q, schema, pol, now, o)
	}
	plan := &Plan{}
	if pol.holdsAll() {
		return plan, nil
	}
	dropped, err := planLeaves(ctx, q, schema, pol, now, plan)
	if err != nil {
		return nil, err
	}
	if err := planPeriods(ctx, q, schema, pol, now, dropped, plan); err != nil {
		return nil, err
	}
	return plan, nil
}

type leaf struct {
	name, class string
	start, end  time.Time
}

// planLeaves plans the expired partitions that go whole: those where no
// table is held, or kept longer now than the partition's class. The others
// stay; their tables' rows expire by their own periods (planPeriods).
func planLeaves(ctx context.Context, q querier, schema string, pol Policy, now time.Time, plan *Plan) ([]leaf, error) {
	rows, err := q.Query(ctx, `SELECT leaf, class, month_start, month_end FROM `+schema+`.retention_leaves()
		WHERE expires_at <= $1 ORDER BY month_start, class`, now)
	if err != nil {
		return nil, fmt.Errorf("list the trail's partitions: %w", err)
	}
	leaves, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (leaf, error) {
		var l leaf
		err := r.Scan(&l.name, &l.class, &l.start, &l.end)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("list the trail's partitions: %w", err)
	}
	var dropped []leaf
	for _, l := range leaves {
		// Read through the parent (whose privileges apply), pruned to the
		// partition.
		rows, err := q.Query(ctx, `SELECT schema_name, table_name, count(*), min(committed_at), max(committed_at)
			FROM `+schema+`.entries WHERE retention_class = $1 AND committed_at >= $2 AND committed_at < $3
			GROUP BY 1, 2 ORDER BY 1, 2`, l.class, l.start, l.end)
		if err != nil {
			return nil, fmt.Errorf("read partition %s: %w", l.name, err)
		}
		s := Step{Scope: prune.Scope{Leaf: l.name, Class: l.class, Month: l.start.UTC().Format("2006-01"), Reason: "expired"}, Drop: true}
		whole := true
		var schemaName, table string
		var n int64
		var oldest, newest time.Time
		_, err = pgx.ForEachRow(rows, []any{&schemaName, &table, &n, &oldest, &newest}, func() error {
			switch {
			case pol.held(schemaName, table):
				if pol.Period(schemaName, table) == "" {
					// (one with a period is counted with it: planPeriods)
					plan.Held = append(plan.Held, Held{Schema: schemaName, Table: table, Entries: n})
				}
				whole = false
			case longer(pol.Period(schemaName, table), l.class):
				whole = false // kept longer now: its rows expire by its new period
			default:
				s.add(n, oldest, newest)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read partition %s: %w", l.name, err)
		}
		if whole {
			plan.Steps = append(plan.Steps, s)
			dropped = append(dropped, l)
		}
	}
	return dropped, nil
}

// planPeriods plans, for each table with a retention period, the deletion
// of its entries older than the period that no partition dropped takes
// with it: entries of a class other than the table's period now (the
// period was changed, or set, since they were written), or kept in a
// partition for another table's sake.
func planPeriods(ctx context.Context, q querier, schema string, pol Policy, now time.Time, dropped []leaf, plan *Plan) error {
	tables, err := distinctTables(ctx, q, schema)
	if err != nil {
		return err
	}
	var classes []string
	var starts, ends []time.Time
	for _, l := range dropped {
		classes, starts, ends = append(classes, l.class), append(starts, l.start), append(ends, l.end)
	}
	for _, t := range tables {
		period := pol.Period(t[0], t[1])
		if period == "" || t[0] == "walscribe" {
			continue
		}
		// Entries of other classes expire once older than the period;
		// those of the period's own class a month at a time, with their
		// partition (here: one kept for another table's sake).
		var before, monthly time.Time
		if err := q.QueryRow(ctx, `SELECT ($1::timestamptz AT TIME ZONE 'UTC' - `+schema+`.retention_period($2)) AT TIME ZONE 'UTC',
				date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC' - `+schema+`.retention_period($2)) AT TIME ZONE 'UTC'`,
			now, period).Scan(&before, &monthly); err != nil {
			return fmt.Errorf("the cutoff of %s: %w", period, err)
		}
		rows, err := q.Query(ctx, `SELECT e.retention_class, count(*), min(e.committed_at), max(e.committed_at) FROM `+schema+`.entries e
			WHERE e.schema_name = $1 AND e.table_name = $2
			  AND e.committed_at < CASE WHEN e.retention_class = $7 THEN $8::timestamptz ELSE $3::timestamptz END
			  AND NOT EXISTS (SELECT FROM unnest($4::text[], $5::timestamptz[], $6::timestamptz[]) d(class, lo, hi)
			                   WHERE d.class = e.retention_class AND e.committed_at >= d.lo AND e.committed_at < d.hi)
			GROUP BY 1 ORDER BY 1`,
			t[0], t[1], before, classes, starts, ends, period, monthly)
		if err != nil {
			return fmt.Errorf("read the entries of %q.%q: %w", t[0], t[1], err)
		}
		var class string
		var n int64
		var oldest, newest time.Time
		held := pol.held(t[0], t[1])
		_, err = pgx.ForEachRow(rows, []any{&class, &n, &oldest, &newest}, func() error {
			if held {
				plan.Held = append(plan.Held, Held{Schema: t[0], Table: t[1], Entries: n})
				return nil
			}
			s := Step{Scope: prune.Scope{Schema: t[0], Table: t[1], Before: before, Classes: []string{class},
				Reason: "older than the table's period, " + period}}
			if class == period {
				s.Scope.Before = monthly
			}
			s.add(n, oldest, newest)
			plan.Steps = append(plan.Steps, s)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read the entries of %q.%q: %w", t[0], t[1], err)
		}
	}
	return nil
}

// planTables plans a cleanup of chosen tables: their entries older than
// o.OlderThan, whatever their period; held tables are left.
func planTables(ctx context.Context, q querier, schema string, pol Policy, now time.Time, o Options) (*Plan, error) {
	tables, err := distinctTables(ctx, q, schema)
	if err != nil {
		return nil, err
	}
	plan := &Plan{}
	var before *time.Time
	if err := q.QueryRow(ctx, `SELECT ($1::timestamptz AT TIME ZONE 'UTC' - `+schema+`.retention_period($2)) AT TIME ZONE 'UTC'`, now, o.OlderThan).Scan(&before); err != nil {
		return nil, fmt.Errorf("the cutoff of %s: %w", o.OlderThan, err)
	}
	if before == nil {
		return nil, fmt.Errorf("%q is not a period: write a whole number and d, w, m or y, e.g. 30d", o.OlderThan)
	}
	for _, t := range tables {
		if t[0] == "walscribe" || !(Policy{Holds: o.Tables}).held(t[0], t[1]) {
			continue
		}
		var n int64
		var oldest, newest *time.Time
		if err := q.QueryRow(ctx, `SELECT count(*), min(committed_at), max(committed_at) FROM `+schema+`.entries
			WHERE schema_name = $1 AND table_name = $2 AND committed_at < $3`, t[0], t[1], *before).Scan(&n, &oldest, &newest); err != nil {
			return nil, fmt.Errorf("read the entries of %q.%q: %w", t[0], t[1], err)
		}
		if n == 0 {
			continue
		}
		if pol.held(t[0], t[1]) {
			plan.Held = append(plan.Held, Held{Schema: t[0], Table: t[1], Entries: n})
			continue
		}
		s := Step{Scope: prune.Scope{Schema: t[0], Table: t[1], Before: *before, Reason: "cleanup of entries older than " + o.OlderThan}}
		s.add(n, *oldest, *newest)
		plan.Steps = append(plan.Steps, s)
	}
	return plan, nil
}

// distinctTables lists the tables the trail has entries of, by skipping
// through the row-history index.
func distinctTables(ctx context.Context, q querier, schema string) ([][2]string, error) {
	rows, err := q.Query(ctx, `WITH RECURSIVE t(s, n) AS (
			SELECT * FROM (SELECT schema_name, table_name FROM `+schema+`.entries ORDER BY 1, 2 LIMIT 1) f
			UNION ALL
			SELECT x.schema_name, x.table_name FROM t, LATERAL (
				SELECT schema_name, table_name FROM `+schema+`.entries e
				 WHERE (e.schema_name, e.table_name) > (t.s, t.n) ORDER BY 1, 2 LIMIT 1) x
		) SELECT s, n FROM t`)
	if err != nil {
		return nil, fmt.Errorf("list the tables of the trail: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var t [2]string
		err := r.Scan(&t[0], &t[1])
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list the tables of the trail: %w", err)
	}
	return out, nil
}

func (s *Step) add(n int64, oldest, newest time.Time) {
	if s.Entries == 0 || oldest.Before(s.Oldest) {
		s.Oldest = oldest
	}
	if newest.After(s.Newest) {
		s.Newest = newest
	}
	s.Entries += n
}

// Pruner removes what a scope names and records it (sink.Postgres.Prune).
type Pruner func(ctx context.Context, scope prune.Scope, limit int) (removed int64, err error)

// Execute carries the plan out: each partition dropped once, each table's
// rows deleted batch entries at a time until none is left. done is told of
// each transaction's removal (nil: nobody). It returns the entries removed.
func Execute(ctx context.Context, plan *Plan, do Pruner, batch int, done func(s Step, removed int64)) (int64, error) {
	var total int64
	for _, s := range plan.Steps {
		for {
			n, err := do(ctx, s.Scope, batch)
			if err != nil {
				return total, err
			}
			total += n
			if done != nil && n > 0 {
				done(s, n)
			}
			if s.Drop || n < int64(batch) {
				break
			}
		}
	}
	return total, nil
}
