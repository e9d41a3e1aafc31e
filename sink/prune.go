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
// functions (which refuse a partition not yet expired), and records it in
// the same database transaction, under the writer lock: a row of prunes
// with the ids removed and their digests, an entry of action pruned, and
// with the integrity log the prune record signed, that entry's leaf and a
// checkpoint covering it (copied outside the database with the record).
// limit bounds the entries a table's deletion removes (ignored for a
// partition, which goes whole).
func (p *Postgres) Prune(ctx context.Context, scope prune.Scope, limit int) (*Pruned, error) {
	if err := p.connectIfNeeded(ctx); err != nil {
		return nil, err
	}
	dbtx, err := p.conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer dbtx.Rollback(ctx)
	committed := false
	defer p.forgetUncommitted(&committed)
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
	var text string
	if scope.Leaf != "" {
		err = dbtx.QueryRow(ctx, `SELECT `+p.schema+`.expire_leaf($1)::text`, scope.Leaf).Scan(&text)
	} else {
		var classes []string
		if len(scope.Classes) > 0 {
			classes = scope.Classes
		}
		err = dbtx.QueryRow(ctx, `SELECT `+p.schema+`.expire_rows($1, $2, $3, $4, $5)::text`,
			scope.Schema, scope.Table, scope.Before, classes, limit).Scan(&text)
	}
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", scope, err)
	}
	ids, err := prune.ParseIDs(text)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", scope, err)
	}
	n := ids.Count()
	if n == 0 {
		// An empty partition dropped, or nothing left to delete: no hole,
		// nothing to record.
		if err := dbtx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("prune %s: %w", scope, err)
		}
		committed = true
		return &Pruned{}, nil
	}
	id := p.lastID + 1
	rec := prune.Record{Entry: id, Scope: scope.JSON(), Count: n, IDs: ids.Digest()}
	var leavesDigest []byte
	if logged != nil {
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
	}
	detail := map[string]any{"scope": json.RawMessage(rec.Scope), "entries": n,
		"first_id": ids[0].First, "last_id": ids[len(ids)-1].Last, "ids_sha256": fmt.Sprintf("%x", rec.IDs)}
	if err := p.insertOwn(ctx, dbtx, id, "retention", "pruned", detail); err != nil {
		return nil, fmt.Errorf("prune %s: %w", scope, err)
	}
	var signed []byte
	if logged != nil {
		if signed, err = prune.Sign(rec, p.cfg.Integrity.Signer); err != nil {
			return nil, fmt.Errorf("prune %s: sign the prune record: %w", scope, err)
		}
	}
	var note any
	if signed != nil {
		note = string(signed)
	}
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.prunes (entry_id, scope, ids, entries, ids_sha256, leaves_sha256, note)
		VALUES ($1, $2, $3::int8multirange, $4, $5, $6, $7)`, id, rec.Scope, text, n, rec.IDs[:], leavesDigest, note); err != nil {
		return nil, fmt.Errorf("prune %s: record it: %w", scope, err)
	}
	if logged != nil {
		if logged, err = p.logOwn(ctx, dbtx, logged, id); err != nil {
			return nil, err
		}
		// Signed now: the hole and its record are vouched for at once.
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
	if signed != nil && p.cfg.Integrity.Dir != "" && !p.frozen {
		if err := writeDirFile(p.cfg.Integrity.Dir, PruneFile(id), signed); err != nil {
			p.cfg.Metrics.Errors.WithLabelValues("checkpoint_dir").Inc()
			p.log.Error("integrity: the prune record was stored, but not copied outside the database", zap.Error(err))
		}
	}
	return &Pruned{Entry: id, Entries: n, IDs: ids}, nil
}

// PruneFile is the name of the copy of the prune record of entry id in
// the checkpoint directory.
func PruneFile(id int64) string { return "prune-" + strconv.FormatInt(id, 10) }

// insertOwn inserts an entry of walscribe's own (schema walscribe): what
// it did to the trail, with detail as its new. It comes right after the
// newest entry in (commit_lsn, seq) order: it belongs to no source
// transaction. The caller holds the writer lock, and id is the next id.
func (p *Postgres) insertOwn(ctx context.Context, dbtx pgx.Tx, id int64, table, action string, detail any) error {
	var lsn pglogrepl.LSN
	var seq int32
	err := dbtx.QueryRow(ctx, `SELECT commit_lsn, seq FROM `+p.schema+`.entries ORDER BY id DESC LIMIT 1`).Scan(&lsn, &seq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read the newest entry: %w", err)
	}
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
	dbtx, err := p.conn.Begin(ctx)
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
	if err := p.insertOwn(ctx, dbtx, id, table, action, detail); err != nil {
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
