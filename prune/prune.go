// Package prune describes what a purge of expired entries removed, in the
// form the trail keeps it: the ids as ranges (PostgreSQL's int8multirange),
// their digest and that of their leaf hashes in the integrity log, and the
// signed prune record walscribe verify accepts holes from.
package prune

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A Range is the ids First..Last, both included.
type Range struct{ First, Last int64 }

// IDs are ascending, disjoint id ranges.
type IDs []Range

// ParseIDs reads an int8multirange's text, as the server writes it:
// {[1,5),[8,9)}, ranges in order, bounds inclusive-exclusive.
func ParseIDs(s string) (IDs, error) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, fmt.Errorf("ids %q: not a multirange", s)
	}
	body := s[1 : len(s)-1]
	var out IDs
	for body != "" {
		end := strings.IndexByte(body, ')')
		if len(body) < 5 || body[0] != '[' || end < 0 {
			return nil, fmt.Errorf("ids %q: not a multirange of [a,b) ranges", s)
		}
		lo, hi, ok := strings.Cut(body[1:end], ",")
		first, err1 := strconv.ParseInt(lo, 10, 64)
		next, err2 := strconv.ParseInt(hi, 10, 64)
		if !ok || err1 != nil || err2 != nil || next <= first || len(out) > 0 && first <= out[len(out)-1].Last {
			return nil, fmt.Errorf("ids %q: not ascending [a,b) ranges", s)
		}
		out = append(out, Range{first, next - 1})
		body = body[end+1:]
		if body != "" {
			if body = strings.TrimPrefix(body, ","); body == "" || body[0] != '[' {
				return nil, fmt.Errorf("ids %q: not a multirange of [a,b) ranges", s)
			}
		}
	}
	return out, nil
}

// Count is how many ids there are.
func (ids IDs) Count() int64 {
	var n int64
	for _, r := range ids {
		n += r.Last - r.First + 1
	}
	return n
}

// Contains reports whether id is one of them.
func (ids IDs) Contains(id int64) bool {
	lo, hi := 0, len(ids)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case id < ids[m].First:
			hi = m
		case id > ids[m].Last:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// Digest is the SHA-256 of the ids, ascending, 8 bytes each big-endian.
func (ids IDs) Digest() [32]byte {
	h := sha256.New()
	var b [8 * 512]byte
	n := 0
	for _, r := range ids {
		for id := r.First; id <= r.Last; id++ {
			binary.BigEndian.PutUint64(b[n:], uint64(id))
			if n += 8; n == len(b) {
				h.Write(b[:])
				n = 0
			}
		}
	}
	h.Write(b[:n])
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// LeafDigest hashes the leaf hashes of the ids, in order, as leaf(id)
// gives them. It fails where leaf has none.
func LeafDigest(ids IDs, leaf func(id int64) (tlog.Hash, bool, error)) ([32]byte, error) {
	h := sha256.New()
	for _, r := range ids {
		for id := r.First; id <= r.Last; id++ {
			l, ok, err := leaf(id)
			if err != nil {
				return [32]byte{}, err
			}
			if !ok {
				return [32]byte{}, fmt.Errorf("the integrity log has no leaf for entry %d", id)
			}
			h.Write(l[:])
		}
	}
	var d [32]byte
	h.Sum(d[:0])
	return d, nil
}

// A Record is a purge as signed: the log's origin, the entry (action
// pruned) that records it, which is also the log's size once it is
// appended, what was removed, and the ids and their leaves' digests.
type Record struct {
	Origin string
	Entry  int64
	Scope  string // what was removed: Scope.JSON
	Count  int64
	IDs    [32]byte // IDs.Digest
	Leaves [32]byte // LeafDigest
}

// header is the first line of a record's text.
const header = "walscribe prune v1"

// Format is the record's text, one field a line.
func (r Record) Format() []byte {
	return fmt.Appendf(nil, "%s\norigin %s\nentry %d\nscope %s\nids %d sha256 %x\nleaves sha256 %x\n",
		header, r.Origin, r.Entry, r.Scope, r.Count, r.IDs, r.Leaves)
}

// ErrMalformed: the text is not a prune record.
var ErrMalformed = errors.New("malformed prune record")

// Parse reads a record's text, as Format writes it.
func Parse(text []byte) (Record, error) {
	var r Record
	lines := strings.Split(string(text), "\n")
	if len(lines) != 7 || lines[0] != header || lines[6] != "" {
		return r, ErrMalformed
	}
	var ok bool
	var err error
	if r.Origin, ok = strings.CutPrefix(lines[1], "origin "); !ok || r.Origin == "" {
		return r, ErrMalformed
	}
	entry, ok := strings.CutPrefix(lines[2], "entry ")
	if r.Entry, err = strconv.ParseInt(entry, 10, 64); !ok || err != nil || r.Entry < 1 {
		return r, ErrMalformed
	}
	if r.Scope, ok = strings.CutPrefix(lines[3], "scope "); !ok {
		return r, ErrMalformed
	}
	var ids, leaves []byte
	if _, err := fmt.Sscanf(lines[4], "ids %d sha256 %x", &r.Count, &ids); err != nil || len(ids) != 32 || r.Count < 0 {
		return r, ErrMalformed
	}
	if _, err := fmt.Sscanf(lines[5], "leaves sha256 %x", &leaves); err != nil || len(leaves) != 32 {
		return r, ErrMalformed
	}
	copy(r.IDs[:], ids)
	copy(r.Leaves[:], leaves)
	if string(r.Format()) != string(text) {
		return r, ErrMalformed // not in canonical form
	}
	return r, nil
}

// Sign signs the record as a note.
func Sign(r Record, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(r.Format())}, s)
}

// Open checks a signed record with the verifier's key and parses it; its
// origin must be the key's name.
func Open(signed []byte, v note.Verifier) (Record, error) {
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Record{}, err
	}
	r, err := Parse([]byte(n.Text))
	if err != nil {
		return r, err
	}
	if r.Origin != v.Name() {
		return r, fmt.Errorf("prune record of %q, not of the log %q", r.Origin, v.Name())
	}
	return r, nil
}

// Scope is what one purge removed: a leaf partition (a month of one
// retention class) dropped whole, or one table's entries committed before
// a time, deleted.
type Scope struct {
	Leaf    string    `json:"leaf,omitempty"`
	Class   string    `json:"class,omitempty"`
	Month   string    `json:"month,omitempty"` // YYYY-MM
	Schema  string    `json:"schema,omitempty"`
	Table   string    `json:"table,omitempty"`
	Before  time.Time `json:"before,omitzero"`
	Classes []string  `json:"classes,omitempty"` // the classes deleted from; none: all
	Reason  string    `json:"reason"`            // why: expired, period shortened, cleanup
}

// JSON is the scope as stored and signed: one line of JSON.
func (s Scope) JSON() string {
	b, _ := json.Marshal(s) // strings and a time: cannot fail
	return string(b)
}

// String says it in words.
func (s Scope) String() string {
	if s.Leaf != "" {
		return fmt.Sprintf("partition %s (class %s, %s)", s.Leaf, s.Class, s.Month)
	}
	what := strconv.Quote(s.Schema) + "." + strconv.Quote(s.Table)
	if len(s.Classes) > 0 {
		what += " (class " + strings.Join(s.Classes, ", ") + ")"
	}
	return fmt.Sprintf("%s entries committed before %s", what, s.Before.UTC().Format(time.RFC3339))
}

// FromSorted are the ids of an ascending list, as ranges.
func FromSorted(ids []int64) IDs {
	var out IDs
	for _, id := range ids {
		if n := len(out); n > 0 && id <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, id)
			continue
		}
		out = append(out, Range{id, id})
	}
	return out
}
