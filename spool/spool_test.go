package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/walscribe/walscribe/audit"
)

// fill adds to a transaction: a context, entries of subtransaction 1,
// a context and entries of subtransaction 2 (rolled back), entries of 3.
func fill(t *testing.T, tx *Txn, n int) {
	t.Helper()
	add := func(r Record) {
		if err := tx.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	add(Record{Subxid: 1, Ctx: &audit.Context{ActorID: "a"}})
	for i := range n {
		add(Record{Subxid: 1, Entry: audit.Entry{Schema: "s", Table: "t", Action: audit.Insert,
			PK: []byte(fmt.Sprintf(`{"id":%d}`, i)), New: []byte(fmt.Sprintf(`{"id":%d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`, i))}})
	}
	add(Record{Subxid: 2, Ctx: &audit.Context{ActorID: "rolled back"}})
	for range n {
		add(Record{Subxid: 2, Entry: audit.Entry{Schema: "s", Table: "t", Action: audit.Delete, Old: []byte(`{}`)}})
	}
	for i := range n {
		add(Record{Subxid: 3, Entry: audit.Entry{Schema: "s", Table: "t", Action: audit.Update,
			Old: []byte(`{"a":1}`), New: []byte(`{"a":2}`), Changed: []string{"a"}, PK: []byte(fmt.Sprintf(`{"id":%d}`, i)),
			Flags: []string{audit.FlagJSONReencoded}}})
	}
	tx.Abort(2)
}

// check reads the kept entries back: subtransaction 2 gone, seq dense,
// the context of the first record on all.
func check(t *testing.T, entries []audit.Entry, n int) {
	t.Helper()
	if len(entries) != 2*n {
		t.Fatalf("%d entries, want %d", len(entries), 2*n)
	}
	for i, e := range entries {
		if e.Seq != int32(i+1) {
			t.Fatalf("entry %d: seq %d", i, e.Seq)
		}
		if e.Ctx == nil || e.Ctx.ActorID != "a" {
			t.Fatalf("entry %d: context %+v, want actor a", i, e.Ctx)
		}
		if e.Action == audit.Delete {
			t.Fatalf("entry %d: an entry of the rolled-back subtransaction", i)
		}
	}
	last := entries[len(entries)-1]
	if string(last.PK) != fmt.Sprintf(`{"id":%d}`, n-1) || last.Changed[0] != "a" || string(last.New) != `{"a":2}` ||
		len(last.Flags) != 1 || last.Flags[0] != audit.FlagJSONReencoded {
		t.Fatalf("last entry %+v", last)
	}
	if entries[0].Changed != nil || entries[0].Old != nil || entries[0].Flags != nil {
		t.Fatalf("nil fields did not stay nil: %+v", entries[0])
	}
}

func TestInMemoryAndSpilledAgree(t *testing.T) {
	const n = 500
	for _, limit := range []int64{64 << 20, 4 << 10} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			dir := t.TempDir()
			s := New(Config{Dir: dir, TxnMemory: limit, Prefix: "test"})
			tx := s.Begin()
			fill(t, tx, n)
			if got := tx.Count(); got != 2*n {
				t.Fatalf("Count %d, want %d", got, 2*n)
			}
			entries, r, err := tx.Finish()
			if err != nil {
				t.Fatal(err)
			}
			spilled := r != nil
			if spilled != (limit < 1<<20) {
				t.Fatalf("spilled %v with a limit of %d bytes", spilled, limit)
			}
			if spilled {
				for range 2 { // a retry reads it again from the start
					if err := r.Rewind(); err != nil {
						t.Fatal(err)
					}
					var got []audit.Entry
					for {
						e, err := r.Next()
						if err != nil {
							t.Fatal(err)
						}
						if e == nil {
							break
						}
						c := *e
						got = append(got, c)
					}
					check(t, got, n)
				}
				if files, _ := filepath.Glob(filepath.Join(dir, "test-spill-*")); len(files) != 1 || s.Files.Load() != 1 {
					t.Fatalf("%d spill files, counter %d; want 1", len(files), s.Files.Load())
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				check(t, entries, n)
			}
			if files, _ := filepath.Glob(filepath.Join(dir, "test-spill-*")); len(files) != 0 || s.Files.Load() != 0 {
				t.Fatalf("%d spill files left, counter %d", len(files), s.Files.Load())
			}
		})
	}
}

func TestDiscardAndClean(t *testing.T) {
	dir := t.TempDir()
	s := New(Config{Dir: dir, TxnMemory: 1 << 10, Prefix: "p"})
	tx := s.Begin()
	fill(t, tx, 100)
	tx.Discard()
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Fatalf("files left after Discard: %v", files)
	}
	// A file a killed process left behind is removed by Clean, and only
	// those of its prefix.
	os.WriteFile(filepath.Join(dir, "p-spill-123"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "other-spill-1"), []byte("x"), 0o600)
	if err := s.Clean(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || filepath.Base(files[0]) != "other-spill-1" {
		t.Fatalf("after Clean: %v", files)
	}
}
