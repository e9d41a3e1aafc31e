package integrity

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// A Prover computes the inclusion proof of one leaf in a tree of a given
// size while it is fed the tree's leaves in order, keeping O(log size)
// hashes: the compact range, and the few subtree roots the proof is made
// of, caught as the range produces them. The proof is the one
// tlog.ProveRecord returns.
type Prover struct {
	index int64
	size  int64
	tree  Tree
	// want maps each subtree root the proof needs to its position in got.
	want map[node]int
	got  []tlog.Hash
}

// node is a perfect subtree: the n-th of those with 2^level leaves.
type node struct {
	level int
	n     int64
}

// NewProver returns a Prover for the leaf at index in the tree of size
// leaves.
func NewProver(index, size int64) (*Prover, error) {
	if index < 0 || index >= size {
		return nil, fmt.Errorf("new prover: leaf %d is not in a tree of %d leaves", index, size)
	}
	p := &Prover{index: index, size: size, want: make(map[node]int)}
	// Which hashes ProveRecord reads depends only on index and size: ask
	// once, answering with zero hashes, to learn them.
	var stored []int64
	record := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		stored = indexes
		return make([]tlog.Hash, len(indexes)), nil
	})
	if _, err := tlog.ProveRecord(size, index, record); err != nil {
		return nil, fmt.Errorf("new prover: %w", err)
	}
	p.got = make([]tlog.Hash, len(stored))
	for i, x := range stored {
		level, n := tlog.SplitStoredHashIndex(x)
		p.want[node{level, n}] = i
	}
	p.tree.node = func(level int, n int64, h tlog.Hash) {
		if i, ok := p.want[node{level, n}]; ok {
			p.got[i] = h
		}
	}
	return p, nil
}

// Append feeds the next leaf hash. It fails once the tree is complete.
func (p *Prover) Append(h tlog.Hash) error {
	return p.AppendSubtree(0, h)
}

// AppendSubtree feeds the next 2^level leaves at once by the root hash of
// their subtree, as Tree.AppendSubtree does. The proven leaf cannot be
// among them.
func (p *Prover) AppendSubtree(level int, h tlog.Hash) error {
	if level < 0 || level > 62 || p.size-p.tree.size < 1<<level {
		return fmt.Errorf("prover: %d leaves of %d fed, 2^%d more do not fit", p.tree.size, p.size, level)
	}
	if start := p.tree.size; level > 0 && start <= p.index && p.index < start+1<<level {
		return fmt.Errorf("prover: the subtree of leaves %d to %d holds leaf %d, whose proof is asked for", start, start+1<<level-1, p.index)
	}
	return p.tree.AppendSubtree(level, h)
}

// Proof returns the inclusion proof, once all the leaves are fed.
func (p *Prover) Proof() (tlog.RecordProof, error) {
	if p.tree.size != p.size {
		return nil, fmt.Errorf("prover: %d leaves of %d fed", p.tree.size, p.size)
	}
	read := tlog.HashReaderFunc(func([]int64) ([]tlog.Hash, error) { return p.got, nil })
	return tlog.ProveRecord(p.size, p.index, read)
}

// Root returns the root hash of the tree, once all the leaves are fed.
func (p *Prover) Root() (tlog.Hash, error) {
	if p.tree.size != p.size {
		return tlog.Hash{}, fmt.Errorf("prover: %d leaves of %d fed", p.tree.size, p.size)
	}
	return p.tree.Root(), nil
}
