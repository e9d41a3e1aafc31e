package integrity

import (
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// Tree is the Merkle tree of a log kept as its compact range: the roots of
// the perfect subtrees its leaves decompose into, largest first, one per bit
// set in the size — at most 63 hashes. It computes the same root as
// tlog.TreeHash without keeping the leaves. The zero Tree is the empty tree,
// ready to use.
type Tree struct {
	size   int64
	hashes []tlog.Hash
	// node, when set, sees every perfect subtree root the tree produces:
	// level, index among the subtrees of that level, hash.
	node func(level int, n int64, h tlog.Hash)
}

// Size is the number of leaves.
func (t *Tree) Size() int64 { return t.size }

// Append adds a leaf with hash h (a tlog.RecordHash, such as LeafHash).
func (t *Tree) Append(h tlog.Hash) {
	if t.size == 1<<63-1 {
		panic("integrity: tree full")
	}
	t.push(0, h)
}

// AppendSubtree adds 2^level leaves at once, given the root hash h of the
// perfect subtree they form. It is for leaves no longer at hand — a range
// removed by retention, known by its subtree hash — and needs the size to
// be a multiple of 2^level, so that the leaves form a subtree of the log.
// AppendSubtree(0, h) is Append(h).
func (t *Tree) AppendSubtree(level int, h tlog.Hash) error {
	if level < 0 || level > 62 {
		return fmt.Errorf("append subtree: level %d is not between 0 and 62", level)
	}
	width := int64(1) << level
	if t.size%width != 0 {
		return fmt.Errorf("append subtree: a subtree of 2^%d leaves cannot start at leaf %d, which is not a multiple of %d", level, t.size, width)
	}
	if t.size > 1<<63-1-width {
		return errors.New("append subtree: the tree would pass 2^63-1 leaves")
	}
	t.push(level, h)
	return nil
}

// push adds the subtree with root h at level: while the tree has a subtree
// of the same level on its right edge, the two merge into their parent.
func (t *Tree) push(level int, h tlog.Hash) {
	n := t.size >> level // index of the new subtree among those of its level
	t.size += 1 << level
	for {
		if t.node != nil {
			t.node(level, n, h)
		}
		if n&1 == 0 {
			break
		}
		last := len(t.hashes) - 1
		h = tlog.NodeHash(t.hashes[last], h)
		t.hashes = t.hashes[:last]
		level++
		n >>= 1
	}
	t.hashes = append(t.hashes, h)
}

// Root is the root hash of the tree, as tlog.TreeHash computes it. The root
// of the empty tree is, as in tlog and RFC 6962, the SHA-256 of the empty
// string.
func (t *Tree) Root() tlog.Hash {
	if len(t.hashes) == 0 {
		h, _ := tlog.TreeHash(0, nil) // reads nothing
		return h
	}
	h := t.hashes[len(t.hashes)-1]
	for i := len(t.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(t.hashes[i], h)
	}
	return h
}

// Frontier is the tree's state besides its size: the compact range's
// hashes, 32 bytes each, largest subtree first. A writer stores it with the
// size to resume with ParseFrontier.
func (t *Tree) Frontier() []byte {
	b := make([]byte, 0, len(t.hashes)*tlog.HashSize)
	for _, h := range t.hashes {
		b = append(b, h[:]...)
	}
	return b
}

// ParseFrontier returns the tree of size leaves whose Frontier is b. It
// checks that b holds one hash per bit set in size; it cannot check the
// hashes themselves.
func ParseFrontier(size int64, b []byte) (*Tree, error) {
	if size < 0 {
		return nil, fmt.Errorf("parse frontier: negative tree size %d", size)
	}
	n := bits.OnesCount64(uint64(size))
	if len(b) != n*tlog.HashSize {
		return nil, fmt.Errorf("parse frontier: a tree of %d leaves has %d hashes (%d bytes), got %d bytes", size, n, n*tlog.HashSize, len(b))
	}
	t := &Tree{size: size, hashes: make([]tlog.Hash, n)}
	for i := range t.hashes {
		copy(t.hashes[i][:], b[i*tlog.HashSize:])
	}
	return t, nil
}
