package integrity

import (
	"crypto/sha256"
	"strconv"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// storage is tlog's stored hashes of a log, kept in memory.
type storage []tlog.Hash

func (s storage) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = s[x]
	}
	return out, nil
}

func leaf(i int64) tlog.Hash { return tlog.RecordHash([]byte(strconv.FormatInt(i, 10))) }

// logOf returns the stored hashes of the log whose leaves are leaf(0), …,
// leaf(n-1).
func logOf(t *testing.T, n int64) storage {
	t.Helper()
	var s storage
	for i := range n {
		hs, err := tlog.StoredHashesForRecordHash(i, leaf(i), s)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, hs...)
	}
	return s
}

func treeHash(t *testing.T, s storage, n int64) tlog.Hash {
	t.Helper()
	h, err := tlog.TreeHash(n, s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestTreeRoot: Root is tlog.TreeHash at every size, and a tree resumed
// from its frontier goes on with the same roots.
func TestTreeRoot(t *testing.T) {
	const n = 1<<17 + 5
	s := logOf(t, n)
	var tree Tree
	if tree.Root() != sha256.Sum256(nil) || tree.Size() != 0 || len(tree.Frontier()) != 0 {
		t.Fatalf("empty tree: root %v, size %d, frontier %x", tree.Root(), tree.Size(), tree.Frontier())
	}
	var resumed *Tree
	for i := range int64(n) {
		tree.Append(leaf(i))
		size := i + 1
		if size <= 300 || size&(size-1) == 0 || size%9973 == 0 || size%1000 == 999 || size == n {
			if got, want := tree.Root(), treeHash(t, s, size); got != want || tree.Size() != size {
				t.Fatalf("size %d (Size %d): root %v, want %v", size, tree.Size(), got, want)
			}
		}
		if size == 1000 {
			var err error
			if resumed, err = ParseFrontier(tree.Size(), tree.Frontier()); err != nil {
				t.Fatal(err)
			}
		} else if resumed != nil {
			resumed.Append(leaf(i))
		}
		if resumed != nil && resumed.Root() != tree.Root() {
			t.Fatalf("size %d: resumed at 1000, root %v, want %v", size, resumed.Root(), tree.Root())
		}
	}
}

// TestFrontier: the frontier holds one hash per bit of the size, and
// ParseFrontier refuses any other length.
func TestFrontier(t *testing.T) {
	var tree Tree
	for i := range int64(300) {
		tree.Append(leaf(i))
		b := tree.Frontier()
		back, err := ParseFrontier(tree.Size(), b)
		if err != nil {
			t.Fatalf("size %d: %v", tree.Size(), err)
		}
		if back.Root() != tree.Root() || back.Size() != tree.Size() || string(back.Frontier()) != string(b) {
			t.Fatalf("size %d: the frontier does not round-trip", tree.Size())
		}
	}
	// 300 leaves = 256 + 32 + 8 + 4: four hashes.
	b := tree.Frontier()
	if len(b) != 4*tlog.HashSize {
		t.Fatalf("frontier of 300 leaves: %d bytes", len(b))
	}
	for _, c := range []struct {
		size int64
		b    []byte
	}{
		{300, b[:len(b)-tlog.HashSize]},
		{300, append(b[:len(b):len(b)], make([]byte, tlog.HashSize)...)},
		{300, b[:len(b)-1]},
		{301, b},
		{0, b[:tlog.HashSize]},
		{-4, nil},
	} {
		if _, err := ParseFrontier(c.size, c.b); err == nil {
			t.Errorf("ParseFrontier(%d, %d bytes) succeeds", c.size, len(c.b))
		}
	}
	if tr, err := ParseFrontier(0, nil); err != nil || tr.Root() != sha256.Sum256(nil) {
		t.Errorf("ParseFrontier(0, nil) = %v, %v", tr, err)
	}
}

// TestAppendSubtree: a perfect subtree appended by its root gives the tree
// its leaves would, and only where it can start.
func TestAppendSubtree(t *testing.T) {
	const n = 200
	s := logOf(t, n)
	// Leaves 0-99 one by one, 100-103 as a subtree of level 2, 104-111
	// (level 3), 112-127 (level 4), then one by one again.
	var tree Tree
	for i := range int64(n) {
		level := map[int64]int{100: 2, 104: 3, 112: 4}[i]
		switch {
		case level > 0:
			sub := s[tlog.StoredHashIndex(level, i>>level)]
			if err := tree.AppendSubtree(level, sub); err != nil {
				t.Fatalf("at %d: %v", i, err)
			}
		case i > 100 && i < 128:
			continue
		default:
			tree.Append(leaf(i))
		}
		if got, want := tree.Root(), treeHash(t, s, tree.Size()); got != want {
			t.Fatalf("size %d: root %v, want %v", tree.Size(), got, want)
		}
	}
	if tree.Size() != n {
		t.Fatalf("size %d, want %d", tree.Size(), n)
	}

	for _, c := range []struct {
		size  int64
		level int
	}{{1, 1}, {6, 2}, {8, 4}, {0, -1}, {0, 63}} {
		tree := Tree{}
		for i := range c.size {
			tree.Append(leaf(i))
		}
		if err := tree.AppendSubtree(c.level, tlog.Hash{}); err == nil {
			t.Errorf("AppendSubtree(%d) at size %d succeeds", c.level, c.size)
		} else if tree.Size() != c.size {
			t.Errorf("a refused AppendSubtree changed the size to %d", tree.Size())
		}
	}
}
