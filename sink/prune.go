package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/daily"
	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/prune"
)

// Pruned is what one purge removed, as recorded.
type Pruned struct {
	Entry   int64 // the entry (action pruned) that records it; 0 when nothing was removed
	Entries int64 // entries removed
	IDs     prune.IDs
}

// Prune removes what scope names, through the audit schema's retention
// functions, which refuse a partition not yet expired and entries of less
// than a day, and record the purge in prunes themselves. In the same
// database transaction, under the writer lock, it writes an entry of
// action pruned and, with the integrity log, the prune record signed, that
// entry's leaf and a checkpoint covering it (copied outside the database
// with the record). limit bounds the entries a table's deletion removes
// (a partition goes whole). expect, when set, may refuse the ids about to
// go (nothing is removed then).
func (p *Postgres) Prune(ctx context.Context, scope prune.Scope, limit int, expect func(prune.IDs) error) (*Pruned, error) {
	if err := p.connectIfNeeded(ctx); err != nil {
		return nil, err
	}
	dbtx, err := p.conn.BeginTx(ctx, writerTx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer dbtx.Rollback(ctx)
	committed := false
	defer p.forgetUncommitted(&committed)
	// Dropping a partition waits for those reading it (a verify, an
	// export), and the daemon's writes wait for the writer lock meanwhile:
	// not for long.
	if _, err := dbtx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if err := p.lockAndReload(ctx, dbtx); err != nil {
		return nil, err
	}
	var logged *logUpdate
	if p.ilog != nil {
		base, err := p.checkHead(ctx, dbtx)
		if err != nil {
			return nil, err
		}
		logged = &logUpdate{tree: base}
	}
	// The pruned entry comes after the newest entry as it is now, before
	// anything is removed.
	lsn, seq, err := p.newestPosition(ctx, dbtx)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", scope, err)
	}
	ids, list, err := p.pruneIDs(ctx, dbtx, scope, limit)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", scope, err)
	}
	id := p.lastID + 1
	n := ids.Count()
	if n > 0 && expect != nil {
		if err := expect(ids); err != nil {
			return nil, err
		}
	}
	rec := prune.Record{Entry: id, Scope: scope.JSON(), Count: n, IDs: ids.Digest()}
	var leavesDigest []byte
	var note any
	if logged != nil && n > 0 {
		leaves, err := integrity.OpenLeaves(ctx, dbtx, p.schema, ids[0].First, ids[len(ids)-1].Last)
		if err != nil {
			return nil, err
		}
		rec.Leaves, err = prune.LeafDigest(ids, leaves.Leaf)
		leaves.Close()
		if err != nil {
			return nil, fmt.Errorf("prune %s: %w", scope, err)
		}
		leavesDigest = rec.Leaves[:]
		rec.Origin = p.cfg.Integrity.Signer.Name()
		signed, err := prune.Sign(rec, p.cfg.Integrity.Signer)
		if err != nil {
			return nil, fmt.Errorf("prune %s: sign the prune record: %w", scope, err)
		}
		note = string(signed)
	}
	if n > 0 {
		// The daily counts of the days these entries were in are stale:
		// forgotten here, counted again by walscribe run.
		var lo, hi *time.Time
		if err := dbtx.QueryRow(ctx, `SELECT min(committed_at), max(committed_at) FROM `+p.schema+`.entries WHERE id BETWEEN $1 AND $2`,
			ids[0].First, ids[len(ids)-1].Last).Scan(&lo, &hi); err != nil {
			return nil, fmt.Errorf("prune %s: %w", scope, err)
		}
		if lo != nil {
			if err := daily.Forget(ctx, dbtx, p.schema, *lo, *hi); err != nil {
				return nil, fmt.Errorf("prune %s: %w", scope, err)
			}
		}
	}
	var removed int64
	if scope.Leaf != "" {
		err = dbtx.QueryRow(ctx, `SELECT `+p.schema+`.expire_leaf($1, $2, $3, $4, $5, $6)`,
			scope.Leaf, id, rec.Scope, rec.IDs[:], leavesDigest, note).Scan(&removed)
	} else if n > 0 {
		var classes []string
		if len(scope.Classes) > 0 {
			classes = scope.Classes
		}
		err = dbtx.QueryRow(ctx, `SELECT `+p.schema+`.expire_rows($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			scope.Schema, scope.Table, scope.Before, classes, list, id, rec.Scope, leavesDigest, note).Scan(&removed)
	}
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", scope, err)
	}
	if removed != n {
		return nil, fmt.Errorf("prune %s: %d entries removed of the %d read", scope, removed, n)
	}
	if n == 0 {
		// An empty partition dropped, or nothing left to delete: no hole,
		// nothing to record.
		if err := dbtx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("prune %s: %w", scope, err)
		}
		committed = true
		return &Pruned{}, nil
	}
	detail := map[string]any{"scope": json.RawMessage(rec.Scope), "entries": n,
		"first_id": ids[0].First, "last_id": ids[len(ids)-1].Last, "ids_sha256": fmt.Sprintf("%x", rec.IDs)}
	if err := p.insertOwn(ctx, dbtx, id, lsn, seq, "retention", "pruned", detail); err != nil {
		return nil, fmt.Errorf("prune %s: %w", scope, err)
	}
	if logged != nil {
		if logged, err = p.logOwn(ctx, dbtx, logged, id); err != nil {
			return nil, err
		}
		// Signed now: the hole and its record are vouched for at once.
		logged.pruned = ids
		if err := p.sign(ctx, dbtx, logged); err != nil {
			return nil, err
		}
	}
	if err := dbtx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("prune %s: commit: %w", scope, err)
	}
	committed = true
	p.applyLog(logged)
	p.lastID = id
	if s, ok := note.(string); ok && p.cfg.Integrity.Dir != "" && !p.frozen {
		if err := writeDirFile(p.cfg.Integrity.Dir, PruneFile(id), []byte(s)); err != nil {
			p.cfg.Metrics.Errors.WithLabelValues("checkpoint_dir").Inc()
			p.log.Error("integrity: the prune record was stored, but not copied outside the database", zap.Error(err))
		}
	}
	return &Pruned{Entry: id, Entries: n, IDs: ids}, nil
}

// pruneIDs reads the ids scope would remove: a partition's (read through
// the parent table, whose privileges apply), or up to limit of a table's,
// oldest first, with them as a list.
func (p *Postgres) pruneIDs(ctx context.Context, dbtx pgx.Tx, scope prune.Scope, limit int) (prune.IDs, []int64, error) {
	var list []int64
	if scope.Leaf != "" {
		var class string
		var lo, hi time.Time
		err := dbtx.QueryRow(ctx, `SELECT class, month_start, month_end FROM `+p.schema+`.retention_leaves() WHERE leaf = $1`, scope.Leaf).Scan(&class, &lo, &hi)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, fmt.Errorf("%s is not a partition of the trail", scope.Leaf)
		}
		if err != nil {
			return nil, nil, err
		}
		rows, err := dbtx.Query(ctx, `SELECT id FROM `+p.schema+`.entries WHERE retention_class = $1 AND committed_at >= $2 AND committed_at < $3 ORDER BY id`, class, lo, hi)
		if err != nil {
			return nil, nil, err
		}
		if list, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return nil, nil, err
		}
	} else {
		var classes []string
		if len(scope.Classes) > 0 {
			classes = scope.Classes
		}
		rows, err := dbtx.Query(ctx, `SELECT id FROM (SELECT id FROM `+p.schema+`.entries
			WHERE schema_name = $1 AND table_name = $2 AND committed_at < $3 AND ($4::text[] IS NULL OR retention_class = ANY ($4))
			ORDER BY committed_at, id LIMIT $5) v ORDER BY id`, scope.Schema, scope.Table, scope.Before, classes, limit)
		if err != nil {
			return nil, nil, err
		}
		if list, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return nil, nil, err
		}
	}
	return prune.FromSorted(list), list, nil
}

// PruneFile is the name of the copy of the prune record of entry id in
// the checkpoint directory.
func PruneFile(id int64) string { return "prune-" + strconv.FormatInt(id, 10) }

// newestPosition is the (commit_lsn, seq) of the newest entry (zero when
// there is none).
func (p *Postgres) newestPosition(ctx context.Context, dbtx pgx.Tx) (pglogrepl.LSN, int32, error) {
	var lsn pglogrepl.LSN
	var seq int32
	err := dbtx.QueryRow(ctx, `SELECT commit_lsn, seq FROM `+p.schema+`.entries ORDER BY id DESC LIMIT 1`).Scan(&lsn, &seq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("read the newest entry: %w", err)
	}
	return lsn, seq, nil
}

// insertOwn inserts an entry of walscribe's own (schema walscribe): what
// it did to the trail, with detail as its new. It comes right after the
// newest entry, at (lsn, seq), in (commit_lsn, seq) order: it belongs to no
// source transaction. The caller holds the writer lock, and id is the next
// id.
func (p *Postgres) insertOwn(ctx context.Context, dbtx pgx.Tx, id int64, lsn pglogrepl.LSN, seq int32, table, action string, detail any) error {
	now := time.Now().UTC()
	if err := p.ensureMonth(ctx, dbtx, now); err != nil {
		return err
	}
	text, err := json.Marshal(detail)
	if err != nil {
		return err
	}
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action, new)
		VALUES ($1, $2, $3, $4, 'walscribe', $5, $6, $7)`, id, lsn, seq+1, now, table, action, string(text)); err != nil {
		return fmt.Errorf("record the %s entry: %w", action, err)
	}
	return nil
}

// logOwn appends the leaf of an entry insertOwn wrote (hashed by the
// server) to the log.
func (p *Postgres) logOwn(ctx context.Context, dbtx pgx.Tx, logged *logUpdate, id int64) (*logUpdate, error) {
	now := time.Now()
	return p.appendLeaves(ctx, dbtx, logged.tree, id, id, &timeRange{lo: now.Add(-time.Minute), hi: now.Add(time.Minute)})
}

// Record writes an entry of walscribe's own: action (such as exported) on
// its table (such as export), with detail as its new, in a database
// transaction of its own under the writer lock. It returns the entry's id.
func (p *Postgres) Record(ctx context.Context, table, action string, detail any) (int64, error) {
	if err := p.connectIfNeeded(ctx); err != nil {
		return 0, err
	}
	dbtx, err := p.conn.BeginTx(ctx, writerTx)
	if err != nil {
		return 0, fmt.Errorf("record %s: %w", action, err)
	}
	defer dbtx.Rollback(ctx)
	committed := false
	defer p.forgetUncommitted(&committed)
	if err := p.lockAndReload(ctx, dbtx); err != nil {
		return 0, err
	}
	var logged *logUpdate
	if p.ilog != nil {
		base, err := p.checkHead(ctx, dbtx)
		if err != nil {
			return 0, err
		}
		logged = &logUpdate{tree: base}
	}
	id := p.lastID + 1
	lsn, seq, err := p.newestPosition(ctx, dbtx)
	if err != nil {
		return 0, fmt.Errorf("record %s: %w", action, err)
	}
	if err := p.insertOwn(ctx, dbtx, id, lsn, seq, table, action, detail); err != nil {
		return 0, fmt.Errorf("record %s: %w", action, err)
	}
	// The progress moves to it without a new stored position: the
	// progress query counts the ids of walscribe's own entries.
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.own_entries (entry_id) VALUES ($1)`, id); err != nil {
		return 0, fmt.Errorf("record %s: %w", action, err)
	}
	if logged != nil {
		if logged, err = p.logOwn(ctx, dbtx, logged, id); err != nil {
			return 0, err
		}
	}
	if err := dbtx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("record %s: commit: %w", action, err)
	}
	committed = true
	p.applyLog(logged)
	p.lastID = id
	return id, nil
}
