package prune

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestParseIDs(t *testing.T) {
	ids, err := ParseIDs("{[1,5),[8,9),[20,23)}")
	if err != nil || len(ids) != 3 || ids[0] != (Range{1, 4}) || ids[1] != (Range{8, 8}) || ids.Count() != 4+1+3 {
		t.Fatalf("%v %v", ids, err)
	}
	for id, want := range map[int64]bool{0: false, 1: true, 4: true, 5: false, 8: true, 9: false, 22: true, 23: false} {
		if ids.Contains(id) != want {
			t.Errorf("Contains(%d) = %v", id, !want)
		}
	}
	if ids, err := ParseIDs("{}"); err != nil || len(ids) != 0 {
		t.Errorf("{}: %v %v", ids, err)
	}
	for _, bad := range []string{"", "{", "[1,2)", "{[2,1)}", "{[1,5),[3,9)}", "{[a,2)}", "{(1,2]}", "{[1,2),}"} {
		if _, err := ParseIDs(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// TestDigest: the ids' digest is SHA-256 of them, 8 bytes each big-endian,
// also past the writer's buffer.
func TestDigest(t *testing.T) {
	ids := IDs{{1, 3}, {10, 1000}}
	h := sha256.New()
	for _, r := range ids {
		for id := r.First; id <= r.Last; id++ {
			h.Write(binary.BigEndian.AppendUint64(nil, uint64(id)))
		}
	}
	if got := ids.Digest(); string(got[:]) != string(h.Sum(nil)) {
		t.Error("Digest differs from SHA-256 of the ids")
	}
	leaf := func(id int64) (tlog.Hash, bool, error) { return tlog.RecordHash([]byte{byte(id)}), id != 500, nil }
	if _, err := LeafDigest(ids, leaf); err == nil {
		t.Error("LeafDigest with a leaf missing: no error")
	}
}

// TestRecord: a record signs and opens; altered, signed by another key or
// for another log, it does not.
func TestRecord(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(nil, "test.example/log")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	ids := IDs{{1, 3}}
	r := Record{Origin: "test.example/log", Entry: 9, Scope: Scope{Leaf: "entries_2026m01_30d", Class: "30d", Month: "2026-01", Reason: "expired"}.JSON(),
		Count: ids.Count(), IDs: ids.Digest()}
	signed, err := Sign(r, signer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(signed, verifier)
	if err != nil || got.Entry != 9 || got.IDs != r.IDs || got.Scope != r.Scope {
		t.Fatalf("Open: %+v, %v", got, err)
	}
	altered := []byte(string(signed[:len("walscribe prune v1\norigin test.example/log\nentry ")]) + "8" + string(signed[len("walscribe prune v1\norigin test.example/log\nentry 9"):]))
	if _, err := Open(altered, verifier); err == nil {
		t.Error("an altered record opens")
	}
	other, _, _ := note.GenerateKey(nil, "other.example/log")
	os, _ := note.NewSigner(other)
	r.Origin = "other.example/log"
	forged, _ := Sign(r, os)
	if _, err := Open(forged, verifier); err == nil {
		t.Error("a record signed by another key opens")
	}
	if _, err := Parse([]byte("walscribe prune v1\norigin a\nentry 01\nscope {}\nids 1 sha256 00\nleaves sha256 00\n")); err == nil {
		t.Error("a record not in canonical form parses")
	}
}
