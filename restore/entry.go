package restore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/audit"
)

// Entry is what a restore needs of one stored audit entry. The JSON fields
// hold the stored jsonb as text (nil: SQL NULL).
type Entry struct {
	ID          int64
	CommitLSN   pglogrepl.LSN
	CommittedAt time.Time
	Schema      string
	Table       string
	Action      audit.Action
	PK          []byte
	Old         []byte
	New         []byte
	Changed     []string
	Flags       []string
	// Rules are the records of the rules in force when the entry was
	// written: per slot, the newest record from at or before CommitLSN.
	Rules []RulesRecord
}

// RulesRecord is one row of the trail's rules table.
type RulesRecord struct {
	Slot  string
	From  pglogrepl.LSN
	Rules []byte // the rules as rules.Set.Describe writes them
}

// ErrNoEntry is returned by Load when the trail holds no entry of that id
// (never written, or removed by retention).
var ErrNoEntry = errors.New("no such entry in the trail")

// Load reads entry id from the trail, and the rules in force when it was
// written. trail reads the audit schema (the walscribe_reader role may).
func (r *Restorer) Load(ctx context.Context, trail Querier, id int64) (*Entry, error) {
	s := pgx.Identifier{r.cfg.Schema}.Sanitize()
	rows, err := trail.Query(ctx, `SELECT e.id, e.commit_lsn::text, e.committed_at, e.schema_name, e.table_name, e.action,
			e.pk::text, e.old::text, e.new::text, e.changed, e.flags
		FROM `+s+`.entries e WHERE e.id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("load entry %d: %w", id, err)
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Entry, error) {
		var (
			e            Entry
			lsn, action  string
			pk, old, new *string
		)
		if err := row.Scan(&e.ID, &lsn, &e.CommittedAt, &e.Schema, &e.Table, &action, &pk, &old, &new, &e.Changed, &e.Flags); err != nil {
			return nil, err
		}
		var err error
		if e.CommitLSN, err = pglogrepl.ParseLSN(lsn); err != nil {
			return nil, err
		}
		e.Action = audit.Action(action)
		e.PK, e.Old, e.New = textBytes(pk), textBytes(old), textBytes(new)
		return &e, nil
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("load entry %d: %w", id, err)
	case len(entries) == 0:
		return nil, fmt.Errorf("load entry %d: %w", id, ErrNoEntry)
	case len(entries) > 1:
		return nil, fmt.Errorf("load entry %d: the trail holds %d entries of that id", id, len(entries))
	}
	e := entries[0]
	if e.Rules, err = r.loadRules(ctx, trail, e.CommitLSN); err != nil {
		return nil, fmt.Errorf("load entry %d: %w", id, err)
	}
	return e, nil
}

// loadRules reads, per slot, the newest record of the rules that applies
// to a transaction committed at lsn. A record applies to the transactions
// that end after its from_lsn; a transaction ending after it commits at or
// after it, since from_lsn is the end of an earlier transaction (or where
// the stream started).
func (r *Restorer) loadRules(ctx context.Context, trail Querier, lsn pglogrepl.LSN) ([]RulesRecord, error) {
	s := pgx.Identifier{r.cfg.Schema}.Sanitize()
	rows, err := trail.Query(ctx, `SELECT DISTINCT ON (r.slot) r.slot, r.from_lsn::text, r.rules::text
		FROM `+s+`.rules r
		WHERE r.from_lsn <= $1::text::pg_lsn AND ($2::text = '' OR r.slot = $2::text)
		ORDER BY r.slot, r.from_lsn DESC, r.recorded_at DESC`, lsn.String(), r.cfg.Slot)
	if err != nil {
		return nil, fmt.Errorf("read the rules in force: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RulesRecord, error) {
		var (
			rec   RulesRecord
			from  string
			rules string
		)
		if err := row.Scan(&rec.Slot, &from, &rules); err != nil {
			return rec, err
		}
		rec.Rules = []byte(rules)
		var err error
		rec.From, err = pglogrepl.ParseLSN(from)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the rules in force: %w", err)
	}
	return recs, nil
}

func textBytes(s *string) []byte {
	if s == nil {
		return nil
	}
	return []byte(*s)
}
