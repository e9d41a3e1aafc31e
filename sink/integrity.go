package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/prune"
)

// IntegrityConfig turns on the integrity log: in the database transaction
// that writes entries, the sink appends their leaf hashes (computed by the
// server from the rows as stored) to a Merkle log, and at most once per
// Interval, and at shutdown, signs its size and root.
type IntegrityConfig struct {
	Signer   note.Signer   // signs checkpoints; its name is the log's origin
	Interval time.Duration // least time between two signed checkpoints
	Dir      string        // a copy of each checkpoint goes there ("": none)
	// LeafHashing says who computes the leaf hashes of the entries the
	// sink writes (HashSink by default).
	LeafHashing string
}

// Who computes leaf hashes: the sink as it encodes the rows, the server
// from the rows stored only where the sink cannot render a row's text
// exactly; the server for every row; or both, refusing a batch where they
// differ (a check, for tests and doubt).
const (
	HashSink   = "sink"
	HashServer = "server"
	HashBoth   = "both"
)

// logState is the integrity log as this sink last committed it.
type logState struct {
	tree       *integrity.Tree
	signedSize int64     // the newest signed checkpoint stored
	signedRoot tlog.Hash // and its root
	signedAt   time.Time // when this process last signed one (zero: not yet)
	sampledAt  time.Time // when a row the sink hashed was last hashed by the server too
}

// logUpdate is what a database transaction adds to the log, applied to
// the logState once it commits.
type logUpdate struct {
	tree   *integrity.Tree
	signed []byte    // the signed checkpoint stored, if one was
	pruned prune.IDs // entries the database transaction removed, on the record
}

// leafChunk bounds the leaves hashed by one query when the log catches up
// with entries written without it.
const leafChunk = 50_000

// errLogAhead means the integrity log covers entries the stored progress
// does not: rows of the audit tables were removed.
var errLogAhead = errors.New("the integrity log covers entries past the trail's stored progress: the audit tables were altered; run `walscribe verify`")

// readHead reads the stored head of the log: the tree after the newest
// leaves stored.
func (p *Postgres) readHead(ctx context.Context, q querier) (*integrity.Tree, error) {
	var first, n int64
	var frontier []byte
	err := q.QueryRow(ctx, `SELECT first_id, octet_length(leaves) / 32, tree FROM `+p.schema+`.integrity_leaves
		ORDER BY first_id DESC LIMIT 1`).Scan(&first, &n, &frontier)
	if errors.Is(err, pgx.ErrNoRows) {
		return &integrity.Tree{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the integrity log: %w", err)
	}
	t, err := integrity.ParseFrontier(first+n-1, frontier)
	if err != nil {
		return nil, fmt.Errorf("read the integrity log: the stored tree after entry %d: %w", first+n-1, err)
	}
	return t, nil
}

// readSigned reads the newest signed checkpoint stored: its size and root
// (0 and the empty tree's root when none).
func (p *Postgres) readSigned(ctx context.Context, q querier) (int64, tlog.Hash, error) {
	var size int64
	var root []byte
	err := q.QueryRow(ctx, `SELECT tree_size, root FROM `+p.schema+`.integrity_checkpoints ORDER BY tree_size DESC LIMIT 1`).Scan(&size, &root)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, tlog.Hash{}, nil
	}
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("read the signed checkpoints: %w", err)
	}
	var h tlog.Hash
	copy(h[:], root)
	return size, h, nil
}

// openLog loads the log's state at Open. At the process's first Open it
// is the stored one, which must extend the newest checkpoint kept outside
// the database; at a reconnection this sink's own stays the reference, and
// the stored one must be it or extend it (a standby that took over).
// Entries stored without the log (before integrity was enabled, or by an
// older walscribe) are hashed into it, a chunk per database transaction.
func (p *Postgres) openLog(ctx context.Context, conn *pgx.Conn) error {
	if p.cfg.Integrity == nil {
		return nil
	}
	stored, err := p.readHead(ctx, conn)
	if err != nil {
		return err
	}
	if p.ilog != nil {
		if p.ilog.tree, err = p.compareHead(ctx, conn, stored); err != nil {
			return err
		}
	} else {
		size, root, err := p.readSigned(ctx, conn)
		if err != nil {
			return err
		}
		p.ilog = &logState{tree: stored, signedSize: size, signedRoot: root}
		if err := p.checkOutside(ctx, conn, stored); err != nil {
			return err
		}
	}
	tree := p.ilog.tree
	if tree.Size() > p.lastID {
		return fmt.Errorf("%w (log: %d entries, progress: %d)", errLogAhead, tree.Size(), p.lastID)
	}
	if behind := p.lastID - tree.Size(); behind > 0 {
		p.log.Info("integrity: hashing the entries stored before the log", zap.Int64("entries", behind))
	}
	for p.ilog.tree.Size() < p.lastID {
		if err := p.catchUp(ctx, conn); err != nil {
			return err
		}
	}
	p.cfg.Metrics.IntegrityTreeSize.Set(float64(p.ilog.tree.Size()))
	return nil
}

// catchUp hashes up to leafChunk entries the log does not hold yet, in one
// database transaction under the writer lock.
func (p *Postgres) catchUp(ctx context.Context, conn *pgx.Conn) error {
	dbtx, err := conn.BeginTx(ctx, writerTx)
	if err != nil {
		return err
	}
	defer dbtx.Rollback(ctx)
	if err := p.lockAndReload(ctx, dbtx); err != nil {
		return err
	}
	base, err := p.readHead(ctx, dbtx)
	if err != nil {
		return err
	}
	p.ilog.tree = base
	first := base.Size() + 1
	last := min(p.lastID, first+leafChunk-1)
	if last < first {
		return nil
	}
	u, err := p.appendLeaves(ctx, dbtx, base, first, last, nil)
	if err != nil {
		return err
	}
	if err := dbtx.Commit(ctx); err != nil {
		return fmt.Errorf("integrity: %w", err)
	}
	p.ilog.tree = u.tree
	return nil
}

// checkHead compares, under the writer lock, the stored head of the log
// with this sink's own, and returns the tree the database transaction
// builds on. A head further on was written by another walscribe (a standby
// that took over), and is taken. One behind, or of the same size and
// another tree, means the log was altered: that is counted, logged and
// kept for Health, and this sink goes on from its own. Entries stored
// without the log are hashed into it, in the transaction.
func (p *Postgres) checkHead(ctx context.Context, dbtx pgx.Tx) (*integrity.Tree, error) {
	stored, err := p.readHead(ctx, dbtx)
	if err != nil {
		return nil, err
	}
	if p.ilog.tree, err = p.compareHead(ctx, dbtx, stored); err != nil {
		return nil, err
	}
	base := p.ilog.tree
	if base.Size() > p.lastID {
		return nil, fmt.Errorf("%w (log: %d entries, progress: %d)", errLogAhead, base.Size(), p.lastID)
	}
	for base.Size() < p.lastID {
		// Entries another walscribe stored without the log.
		u, err := p.appendLeaves(ctx, dbtx, base, base.Size()+1, min(p.lastID, base.Size()+leafChunk), nil)
		if err != nil {
			return nil, err
		}
		base = u.tree
	}
	return base, nil
}

// compareHead compares the stored head of the log with this sink's own,
// and returns the tree to go on from: the stored one when it is this
// sink's, or extends it (its record at this sink's size holds this sink's
// tree: another walscribe went on from it); this sink's own otherwise,
// which is a violation.
func (p *Postgres) compareHead(ctx context.Context, q querier, stored *integrity.Tree) (*integrity.Tree, error) {
	own := p.ilog.tree
	if stored.Size() == own.Size() && bytes.Equal(stored.Frontier(), own.Frontier()) {
		return own, nil
	}
	if stored.Size() > own.Size() {
		at, err := p.treeAt(ctx, q, own.Size())
		if err != nil {
			return nil, err
		}
		if at != nil && bytes.Equal(at.Frontier(), own.Frontier()) {
			return stored, nil
		}
	}
	p.violation(fmt.Sprintf("the stored integrity log ends at entry %d with root %s, which does not extend the log this walscribe wrote, to entry %d with root %s",
		stored.Size(), stored.Root(), own.Size(), own.Root()))
	return own, nil
}

// treeAt is the stored tree after entry size: the compact range of the
// leaf record that ends there (nil when none does; the empty tree at 0).
func (p *Postgres) treeAt(ctx context.Context, q querier, size int64) (*integrity.Tree, error) {
	if size == 0 {
		return &integrity.Tree{}, nil
	}
	var frontier []byte
	// The record that ends at size is the last one starting at or before
	// it (found through the primary key), if it ends there.
	var end int64
	err := q.QueryRow(ctx, `SELECT tree, first_id + octet_length(leaves) / 32 - 1 FROM `+p.schema+`.integrity_leaves
		WHERE first_id <= $1 ORDER BY first_id DESC LIMIT 1`, size).Scan(&frontier, &end)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && end != size {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the integrity log: %w", err)
	}
	return integrity.ParseFrontier(size, frontier)
}

// checkOutside compares the stored log with the newest checkpoint in the
// checkpoint directory, when there is one: the log must reach it, and give
// its root. A log cut short or rewritten while walscribe was stopped (a
// database restored from an older backup, say) is a violation.
func (p *Postgres) checkOutside(ctx context.Context, q querier, stored *integrity.Tree) error {
	dir := p.cfg.Integrity.Dir
	v, ok := integrity.VerifierOf(p.cfg.Integrity.Signer)
	if dir == "" || !ok {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "checkpoint-*"))
	if err != nil {
		return err
	}
	var newest *integrity.Checkpoint
	var from string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("integrity: read %s: %w", f, err)
		}
		cp, err := integrity.Open(b, v)
		if err != nil {
			p.log.Warn("integrity: a file of the checkpoint directory is not a checkpoint of this log", zap.String("file", f), zap.Error(err))
			continue
		}
		if newest == nil || cp.Size > newest.Size {
			newest, from = &cp, f
		}
	}
	if newest == nil {
		return nil
	}
	if stored.Size() < newest.Size {
		p.violation(fmt.Sprintf("the stored integrity log ends at entry %d; %s vouches for %d entries (cut short, or restored from an older backup)", stored.Size(), from, newest.Size))
		return nil
	}
	at, err := p.treeAt(ctx, q, newest.Size)
	if err != nil {
		return err
	}
	if at == nil || at.Root() != newest.Root {
		p.violation(fmt.Sprintf("the stored integrity log does not give the root of %s at entry %d: rewritten", from, newest.Size))
	}
	return nil
}

// timeRange bounds the commit times of the entries hashed, so that only
// their partitions are read (nil: every partition).
type timeRange struct{ lo, hi time.Time }

// appendLeaves hashes entries first..last as stored (the server computes
// the leaf hashes: the texts hashed are the server's), appends them to a
// copy of base, and stores them with the tree after them.
func (p *Postgres) appendLeaves(ctx context.Context, dbtx pgx.Tx, base *integrity.Tree, first, last int64, at *timeRange) (*logUpdate, error) {
	leaves, err := p.serverLeaves(ctx, dbtx, first, last, at)
	if err != nil {
		return nil, err
	}
	return p.storeLeaves(ctx, dbtx, base, first, leaves)
}

// appendOwnLeaves stores the leaves the sink computed for the batch's
// entries as it encoded them (batchLeaves), after asking the server for
// those it could not render exactly — or, with LeafHashing "both", for all
// of them, refusing the batch on a difference.
func (p *Postgres) appendOwnLeaves(ctx context.Context, dbtx pgx.Tx, base *integrity.Tree, l *batchLeaves, at *timeRange) (*logUpdate, error) {
	first, own, inexact := l.first, l.leaves, l.inexact
	last := first + int64(len(own)) - 1
	if p.cfg.Integrity.LeafHashing == HashBoth {
		server, err := p.serverLeaves(ctx, dbtx, first, last, at)
		if err != nil {
			return nil, err
		}
		for i := range own {
			if server[i] != own[i] && !slices.Contains(inexact, i) {
				return nil, fmt.Errorf("integrity: entry %d: the sink's leaf hash %s differs from the server's %s", first+int64(i), own[i], server[i])
			}
		}
		return p.storeLeaves(ctx, dbtx, base, first, server)
	}
	for _, i := range inexact {
		h, err := p.serverLeaves(ctx, dbtx, first+int64(i), first+int64(i), at)
		if err != nil {
			return nil, err
		}
		own[i] = h[0]
	}
	// A sample, at most once per checkpoint interval: one row of the batch
	// hashed by the server too. Should the sink ever render a row otherwise
	// than the server, the server hashes every row from then on (this
	// batch's included), and it is said.
	if time.Since(p.ilog.sampledAt) >= p.cfg.Integrity.Interval {
		p.ilog.sampledAt = time.Now()
		i := int(uint64(first) % uint64(len(own)))
		h, err := p.serverLeaves(ctx, dbtx, first+int64(i), first+int64(i), at)
		if err != nil {
			return nil, err
		}
		if h[0] != own[i] && !slices.Contains(inexact, i) {
			p.cfg.Metrics.Errors.WithLabelValues("leaf_hash").Inc()
			p.log.Error("integrity: the sink's leaf hash of an entry differs from the server's; the server hashes every entry from now on (integrity.leaf_hashing: server); please report it",
				zap.Int64("id", first+int64(i)))
			p.cfg.Integrity.LeafHashing = HashServer
			server, err := p.serverLeaves(ctx, dbtx, first, last, at)
			if err != nil {
				return nil, err
			}
			return p.storeLeaves(ctx, dbtx, base, first, server)
		}
	}
	if l.sealed != nil && l.sealedOn == base && len(inexact) == 0 {
		// Appended to the tree beside the COPY.
		p.treesBeside++
		return p.insertLeaves(ctx, dbtx, first, l.sealed, l.packed)
	}
	return p.storeLeaves(ctx, dbtx, base, first, own)
}

// serverLeaves has the server hash entries first..last as stored.
func (p *Postgres) serverLeaves(ctx context.Context, dbtx pgx.Tx, first, last int64, at *timeRange) ([]tlog.Hash, error) {
	query := `SELECT e.id, ` + integrity.LeafHashSQL("e") + ` FROM ` + p.schema + `.entries e WHERE e.id BETWEEN $1 AND $2`
	args := []any{first, last}
	if at != nil {
		query += ` AND e.committed_at BETWEEN $3 AND $4`
		args = append(args, at.lo, at.hi)
	}
	rows, err := dbtx.Query(ctx, query+` ORDER BY e.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("integrity: hash entries %d to %d: %w", first, last, err)
	}
	leaves := make([]tlog.Hash, 0, last-first+1)
	next := first
	var id int64
	var h []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &h}, func() error {
		if id != next || len(h) != 32 {
			return fmt.Errorf("entry %d where %d was expected: the trail was altered; run `walscribe verify`", id, next)
		}
		leaves = append(leaves, tlog.Hash(h))
		next++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("integrity: hash entries %d to %d: %w", first, last, err)
	}
	if next != last+1 {
		return nil, fmt.Errorf("integrity: hash entries %d to %d: entry %d is missing", first, last, next)
	}
	return leaves, nil
}

// storeLeaves appends leaves (of the entries from first on) to a copy of
// base, and stores them with the tree after them.
func (p *Postgres) storeLeaves(ctx context.Context, dbtx pgx.Tx, base *integrity.Tree, first int64, leaves []tlog.Hash) (*logUpdate, error) {
	tree, packed, err := sealLeaves(base, leaves)
	if err != nil {
		return nil, err
	}
	return p.insertLeaves(ctx, dbtx, first, tree, packed)
}

// sealLeaves appends leaves to a copy of base, and packs them as the leaf
// record stores them.
func sealLeaves(base *integrity.Tree, leaves []tlog.Hash) (*integrity.Tree, []byte, error) {
	tree, err := integrity.ParseFrontier(base.Size(), base.Frontier())
	if err != nil {
		return nil, nil, err
	}
	packed := make([]byte, 0, 32*len(leaves))
	for _, h := range leaves {
		tree.Append(h)
		packed = append(packed, h[:]...)
	}
	return tree, packed, nil
}

// insertLeaves stores the leaf record of entries from first on: the
// leaves packed, and the tree after them.
func (p *Postgres) insertLeaves(ctx context.Context, dbtx pgx.Tx, first int64, tree *integrity.Tree, packed []byte) (*logUpdate, error) {
	leaves := len(packed) / 32
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.integrity_leaves (first_id, leaves, tree) VALUES ($1, $2, $3)`,
		first, packed, tree.Frontier()); err != nil {
		return nil, fmt.Errorf("integrity: store the leaves of entries %d to %d: %w", first, first+int64(leaves)-1, err)
	}
	return &logUpdate{tree: tree}, nil
}

// signDue reports whether a checkpoint is due for the tree t.
func (p *Postgres) signDue(t *integrity.Tree) bool {
	return t.Size() > p.ilog.signedSize && time.Since(p.ilog.signedAt) >= p.cfg.Integrity.Interval
}

// sign signs the tree of u and stores the checkpoint, in the database
// transaction that wrote its leaves. First the live check: the newest
// checkpoint stored and the newest entry must be this sink's.
func (p *Postgres) sign(ctx context.Context, dbtx pgx.Tx, u *logUpdate) error {
	size, root, err := p.readSigned(ctx, dbtx)
	if err != nil {
		return err
	}
	if size != p.ilog.signedSize || root != p.ilog.signedRoot {
		if size > p.ilog.signedSize && size <= u.tree.Size() {
			// Signed by another walscribe (a standby that took over).
			p.ilog.signedSize, p.ilog.signedRoot = size, root
		} else {
			p.violation(fmt.Sprintf("the newest signed checkpoint stored is of %d entries with root %s; this walscribe signed %d entries with root %s",
				size, root, p.ilog.signedSize, p.ilog.signedRoot))
		}
	}
	// The head: the newest entry is the log's newest, and the newest entry
	// of the last checkpoint is still there. (Two index probes: counting the
	// entries since the last checkpoint cost a drain 2 % of its rate.)
	var newest int64
	var last bool
	if err := dbtx.QueryRow(ctx, `SELECT (SELECT coalesce(max(id), 0) FROM `+p.schema+`.entries),
		EXISTS (SELECT FROM `+p.schema+`.entries WHERE id = $1)`, p.ilog.signedSize).Scan(&newest, &last); err != nil {
		return fmt.Errorf("integrity: read the newest entries: %w", err)
	}
	if newest != u.tree.Size() || !last && p.ilog.signedSize > 0 && !u.pruned.Contains(p.ilog.signedSize) {
		p.violation(fmt.Sprintf("the trail's newest entry is %d, and entry %d, the newest of the last checkpoint, is %s; the integrity log's newest is %d",
			newest, p.ilog.signedSize, map[bool]string{true: "there", false: "gone"}[last], u.tree.Size()))
	}
	cp := integrity.Checkpoint{Origin: p.cfg.Integrity.Signer.Name(), Size: u.tree.Size(), Root: u.tree.Root()}
	signed, err := integrity.Sign(cp, p.cfg.Integrity.Signer)
	if err != nil {
		return fmt.Errorf("integrity: sign a checkpoint: %w", err)
	}
	if _, err := dbtx.Exec(ctx, `INSERT INTO `+p.schema+`.integrity_checkpoints (tree_size, root, note) VALUES ($1, $2, $3)`,
		cp.Size, cp.Root[:], string(signed)); err != nil {
		return fmt.Errorf("integrity: store a checkpoint: %w", err)
	}
	u.signed = signed
	return nil
}

// applyLog takes what a committed database transaction added to the log,
// and copies a checkpoint it signed outside the database.
func (p *Postgres) applyLog(u *logUpdate) {
	if u == nil {
		return
	}
	p.ilog.tree = u.tree
	p.cfg.Metrics.IntegrityTreeSize.Set(float64(u.tree.Size()))
	if u.signed == nil {
		return
	}
	p.ilog.signedSize, p.ilog.signedRoot, p.ilog.signedAt = u.tree.Size(), u.tree.Root(), time.Now()
	p.cfg.Metrics.IntegrityCheckpoints.Inc()
	if p.cfg.Integrity.Dir == "" {
		return
	}
	if p.frozen {
		// The newest file there is what shows the log was altered: kept.
		p.log.Warn("integrity: the checkpoint was stored, but not copied outside the database: the log was found altered, and the checkpoint directory keeps the evidence; run walscribe verify")
		return
	}
	if err := writeCheckpointFile(p.cfg.Integrity.Dir, u.signed, time.Now()); err != nil {
		p.cfg.Metrics.Errors.WithLabelValues("checkpoint_dir").Inc()
		p.noteError(err)
		p.log.Error("integrity: the checkpoint was stored, but not copied outside the database", zap.Error(err))
	}
}

// CheckpointFile is the name of the file in integrity.checkpoint_dir that
// holds the newest checkpoint signed on the day of at (UTC).
func CheckpointFile(at time.Time) string {
	return "checkpoint-" + at.UTC().Format(time.DateOnly)
}

// writeCheckpointFile replaces the day's checkpoint file in dir with
// signed, durably: a new file written and synced, renamed over the old one,
// and the directory synced.
func writeCheckpointFile(dir string, signed []byte, at time.Time) error {
	if err := writeDirFile(dir, CheckpointFile(at), signed); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

// writeDirFile writes name in dir atomically and durably: a temporary file
// synced, renamed, and the directory synced.
func writeDirFile(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return err
	}
	return nil
}

// violation records that the log was found altered.
func (p *Postgres) violation(what string) {
	p.cfg.Metrics.IntegrityViolations.Inc()
	p.errMu.Lock()
	p.integrityViolation, p.integrityViolationAt = what, time.Now().UTC()
	p.errMu.Unlock()
	p.frozen = true
	p.log.Error("integrity violation: " + what + "; run `walscribe verify`")
}

// IntegrityViolation returns the last integrity violation found and when
// ("" when none).
func (p *Postgres) IntegrityViolation() (string, time.Time) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.integrityViolation, p.integrityViolationAt
}

// SignPending signs a checkpoint of the entries stored since the last one,
// if there are any: at shutdown, and when the sink has been idle for the
// checkpoint interval.
func (p *Postgres) SignPending(ctx context.Context) error {
	if p.cfg.Integrity == nil || p.ilog == nil || p.conn == nil || p.ilog.tree.Size() <= p.ilog.signedSize {
		return nil
	}
	wctx := context.WithoutCancel(ctx)
	dbtx, err := p.conn.BeginTx(wctx, writerTx)
	if err != nil {
		return fmt.Errorf("integrity: %w", err)
	}
	defer dbtx.Rollback(wctx)
	if err := p.lockAndReload(wctx, dbtx); err != nil {
		return err
	}
	base, err := p.checkHead(wctx, dbtx)
	if err != nil {
		return err
	}
	if base.Size() <= p.ilog.signedSize {
		return nil
	}
	u := &logUpdate{tree: base}
	if err := p.sign(wctx, dbtx, u); err != nil {
		return err
	}
	if err := dbtx.Commit(wctx); err != nil {
		return fmt.Errorf("integrity: %w", err)
	}
	p.applyLog(u)
	return nil
}
