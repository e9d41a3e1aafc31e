package verify

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/walscribe/walscribe/integrity"
)

// Proof is an inclusion proof of one entry in the log of a signed
// checkpoint (RFC 6962): with the entry's leaf hash it gives the
// checkpoint's root, which anyone holding the verifier key can check
// (tlog.CheckRecord).
type Proof struct {
	ID         int64       `json:"id"`         // the entry
	Index      int64       `json:"index"`      // its leaf: id - 1
	TreeSize   int64       `json:"tree_size"`  // the checkpoint's
	LeafHash   tlog.Hash   `json:"leaf_hash"`  // computed from the row as stored
	Hashes     []tlog.Hash `json:"proof"`      // the proof, as tlog.RecordProof
	Checkpoint string      `json:"checkpoint"` // the signed checkpoint
}

// Prove builds the inclusion proof of entry id against the newest signed
// checkpoint that covers it, and checks it. The entry's row must hash to
// the leaf the log holds for it.
func Prove(ctx context.Context, c1, c2 *pgx.Conn, o Options, id int64) (*Proof, error) {
	conn, leavesConn, end, err := snapshot(ctx, c1, c2)
	if err != nil {
		return nil, err
	}
	defer end()
	schema := pgx.Identifier{o.Schema}.Sanitize()
	r := &Report{}
	o.From = nil
	checkpoints, err := loadCheckpoints(ctx, conn, schema, o, r)
	if err != nil {
		return nil, err
	}
	var cp *signedCheckpoint
	for i := range checkpoints {
		if checkpoints[i].Size >= id && (cp == nil || checkpoints[i].Size > cp.Size) {
			cp = &checkpoints[i]
		}
	}
	if cp == nil {
		return nil, fmt.Errorf("%w: no checkpoint signed by %s covers entry %d yet", ErrCannotVerify, o.Verifier.Name(), id)
	}
	var row entryRow
	err = conn.QueryRow(ctx, `SELECT `+entryColumns+` FROM `+schema+`.entries e WHERE e.id = $1`, id).Scan(row.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("entry %d is not in the trail", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read entry %d: %w", id, err)
	}
	leaf := integrity.LeafHash(row.text)
	prover, err := integrity.NewProver(id-1, cp.Size)
	if err != nil {
		return nil, err
	}
	leaves, err := integrity.OpenLeaves(ctx, leavesConn, schema, 0, 0)
	if err != nil {
		return nil, err
	}
	defer leaves.Close()
	for i := int64(1); i <= cp.Size; i++ {
		h, ok, err := leaves.Leaf(i)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("the integrity log has no leaf for entry %d: run walscribe verify", i)
		}
		if i == id && h != leaf {
			return nil, fmt.Errorf("entry %d does not hash to the leaf the log holds for it: it was altered (run walscribe verify)", id)
		}
		if err := prover.Append(h); err != nil {
			return nil, err
		}
	}
	proof, err := prover.Proof()
	if err != nil {
		return nil, err
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, id-1, leaf); err != nil {
		return nil, fmt.Errorf("the proof of entry %d does not give the root of %s: the log's leaves were altered (run walscribe verify): %w", id, cp.where, err)
	}
	return &Proof{ID: id, Index: id - 1, TreeSize: cp.Size, LeafHash: leaf, Hashes: proof, Checkpoint: string(cp.note)}, nil
}
