package integrity

import (
	"math/bits"
	"slices"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// prove streams the leaves of s into a Prover for leaf i of n and checks
// the proof against tlog's.
func prove(t *testing.T, s storage, i, n int64) {
	t.Helper()
	p, err := NewProver(i, n)
	if err != nil {
		t.Fatalf("NewProver(%d, %d): %v", i, n, err)
	}
	if kept := len(p.got); kept > 2*bits.Len64(uint64(n)) {
		t.Fatalf("NewProver(%d, %d) keeps %d hashes", i, n, kept)
	}
	for j := range n {
		if err := p.Append(leaf(j)); err != nil {
			t.Fatalf("(%d, %d): Append leaf %d: %v", i, n, j, err)
		}
	}
	got, err := p.Proof()
	if err != nil {
		t.Fatalf("(%d, %d): %v", i, n, err)
	}
	want, err := tlog.ProveRecord(n, i, s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("(%d, %d): proof %v, want %v", i, n, got, want)
	}
	root, err := p.Root()
	if err != nil || root != treeHash(t, s, n) {
		t.Fatalf("(%d, %d): Root = %v, %v", i, n, root, err)
	}
	if err := tlog.CheckRecord(got, n, root, i, leaf(i)); err != nil {
		t.Fatalf("(%d, %d): CheckRecord: %v", i, n, err)
	}
}

// TestProver: the streamed proof is tlog.ProveRecord's, and verifies.
func TestProver(t *testing.T) {
	s := logOf(t, 5000)
	for n := int64(1); n <= 130; n++ {
		for i := range n {
			prove(t, s, i, n)
		}
	}
	for _, n := range []int64{255, 256, 257, 1000, 1024, 1025, 4095, 4096, 4097, 5000} {
		for _, i := range []int64{0, 1, n / 3, n / 2, n/2 + 1, n - 2, n - 1, 127, 128, 511, 512, 1023, 1024} {
			if i < n {
				prove(t, s, i, n)
			}
		}
	}
}

// TestProverSubtree: leaves given as a subtree still prove the others.
func TestProverSubtree(t *testing.T) {
	const n = 40
	s := logOf(t, n)
	for _, i := range []int64{0, 15, 16, 31, 32, 39} {
		p, err := NewProver(i, n)
		if err != nil {
			t.Fatal(err)
		}
		for j := int64(0); j < n; {
			// Leaves 16-31 by their subtree, unless i is one of them.
			if j == 16 && (i < 16 || i > 31) {
				if err := p.AppendSubtree(4, s[tlog.StoredHashIndex(4, 1)]); err != nil {
					t.Fatal(err)
				}
				j += 16
				continue
			}
			if err := p.Append(leaf(j)); err != nil {
				t.Fatal(err)
			}
			j++
		}
		got, err := p.Proof()
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := tlog.ProveRecord(n, i, s); !slices.Equal(got, want) {
			t.Errorf("leaf %d: proof %v, want %v", i, got, want)
		}
	}

	p, _ := NewProver(20, n)
	for j := range int64(16) {
		p.Append(leaf(j))
	}
	if err := p.AppendSubtree(4, s[tlog.StoredHashIndex(4, 1)]); err == nil {
		t.Error("AppendSubtree over the proven leaf succeeds")
	}
}

// TestProverMisuse: bad arguments and a wrong number of leaves are errors.
func TestProverMisuse(t *testing.T) {
	for _, c := range [][2]int64{{0, 0}, {-1, 5}, {5, 5}, {6, 5}} {
		if _, err := NewProver(c[0], c[1]); err == nil {
			t.Errorf("NewProver(%d, %d) succeeds", c[0], c[1])
		}
	}
	p, err := NewProver(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	p.Append(leaf(0))
	p.Append(leaf(1))
	if _, err := p.Proof(); err == nil {
		t.Error("Proof after 2 leaves of 3 succeeds")
	}
	if _, err := p.Root(); err == nil {
		t.Error("Root after 2 leaves of 3 succeeds")
	}
	if err := p.AppendSubtree(1, tlog.Hash{}); err == nil {
		t.Error("2 leaves more than the size fit")
	}
	if err := p.Append(leaf(2)); err != nil {
		t.Fatal(err)
	}
	if err := p.Append(leaf(3)); err == nil {
		t.Error("a 4th leaf of 3 fits")
	}
}
