package verify

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/prune"
)

// loadPrunes checks the purges the trail records (its prunes table) and
// returns the ids they removed, whose absence is then no finding: those of
// records signed with the log's key whose ids, count and leaves match the
// record and the log. Any other is a finding, and its ids stay missing.
func loadPrunes(ctx context.Context, conn, leavesConn querier, schema string, o Options, r *Report) (prune.IDs, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, schema+".prunes").Scan(&exists); err != nil {
		return nil, fmt.Errorf("read the audit schema: %w", err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := conn.Query(ctx, `SELECT entry_id, ids::text, entries, ids_sha256, leaves_sha256, note FROM `+schema+`.prunes ORDER BY entry_id`)
	if err != nil {
		return nil, fmt.Errorf("read the prune records: %w", err)
	}
	type stored struct {
		entry, entries int64
		ids            string
		idsSHA, leaves []byte
		note           *string
	}
	records, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (stored, error) {
		var s stored
		err := row.Scan(&s.entry, &s.ids, &s.entries, &s.idsSHA, &s.leaves, &s.note)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the prune records: %w", err)
	}
	var accepted prune.IDs
	for _, s := range records {
		bad := func(detail string) {
			r.Findings = append(r.Findings, Finding{Kind: Prune, ID: s.entry,
				Detail: "prune record: " + detail + "; the entries it names are not accepted as pruned"})
		}
		ids, err := prune.ParseIDs(s.ids)
		if err != nil {
			bad(err.Error())
			continue
		}
		if s.note == nil {
			bad("not signed")
			continue
		}
		rec, err := prune.Open([]byte(*s.note), o.Verifier)
		if err != nil {
			bad(fmt.Sprintf("its signature does not hold with the verifier key: %v", err))
			continue
		}
		// The cheap checks first: the ids are hashed one by one.
		switch {
		case rec.Entry != s.entry:
			bad(fmt.Sprintf("signed for entry %d, stored with entry %d", rec.Entry, s.entry))
			continue
		case len(ids) == 0 || rec.Count != ids.Count() || rec.Count != s.entries:
			bad("the ids stored are not those signed")
			continue
		case ids[len(ids)-1].Last >= rec.Entry || ids[0].First < 1:
			bad(fmt.Sprintf("it names entries after its own, %d", rec.Entry))
			continue
		}
		if d := ids.Digest(); rec.IDs != d || string(s.idsSHA) != string(d[:]) {
			bad("the ids stored are not those signed")
			continue
		}
		leaves, err := integrity.OpenLeaves(ctx, leavesConn, schema, ids[0].First, ids[len(ids)-1].Last)
		if err != nil {
			return nil, err
		}
		digest, err := prune.LeafDigest(ids, leaves.Leaf)
		leaves.Close()
		if err != nil || digest != rec.Leaves {
			bad("the log's leaves of the ids are not those signed")
			continue
		}
		r.Prunes++
		accepted = append(accepted, ids...)
	}
	slices.SortFunc(accepted, func(a, b prune.Range) int { return int(a.First - b.First) })
	return accepted, nil
}

// split reports which of first..last are pruned: it returns the ranges
// that are not, and counts the others.
func split(first, last int64, pruned prune.IDs) (missing []prune.Range, covered int64) {
	at := first
	for _, p := range pruned {
		if p.Last < at || p.First > last {
			continue
		}
		if p.First > at {
			missing = append(missing, prune.Range{First: at, Last: p.First - 1})
		}
		lo, hi := max(p.First, at), min(p.Last, last)
		covered += hi - lo + 1
		at = hi + 1
		if at > last {
			break
		}
	}
	if at <= last {
		missing = append(missing, prune.Range{First: at, Last: last})
	}
	return missing, covered
}
