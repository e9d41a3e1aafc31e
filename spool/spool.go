// Package spool holds the entries of transactions while they are decoded,
// in memory up to a limit per transaction and in a file beyond it, so that
// a transaction of any size costs bounded memory. It also resolves what
// only the end of a streamed transaction tells: which subtransactions were
// rolled back (their entries are dropped), the context in force for each
// entry, and the entries' order numbers.
package spool

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/walscribe/walscribe/audit"
)

// Record is one thing a transaction holds, in stream order: an entry, or a
// context that applies to the entries after it.
type Record struct {
	Subxid uint32         // the (sub)transaction it belongs to
	Ctx    *audit.Context // set: a context record
	Entry  audit.Entry    // otherwise: an entry (Seq and Ctx are set at the end)
}

// Config tunes a Spool.
type Config struct {
	// Dir holds the files of spilled transactions; "" is the system's
	// temporary directory.
	Dir string
	// TxnMemory is how many bytes of entries a transaction keeps in memory
	// before it moves them to a file. Default 8 MiB.
	TxnMemory int64
	// Prefix names the files, so that those of a daemon that died can be
	// removed by the next one (Clean).
	Prefix string
}

// Spool creates transactions. It is safe for concurrent use.
type Spool struct {
	cfg Config
	// Spills counts transactions moved to a file.
	Spills atomic.Int64
	// Files is the number of spill files that exist now.
	Files atomic.Int64
}

// New returns a Spool; it touches no file until a transaction spills.
func New(cfg Config) *Spool {
	if cfg.TxnMemory <= 0 {
		cfg.TxnMemory = 8 << 20
	}
	if cfg.Dir == "" {
		cfg.Dir = os.TempDir()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "walscribe"
	}
	return &Spool{cfg: cfg}
}

// Clean removes the spill files left by an earlier process with the same
// prefix (killed before it could remove them).
func (s *Spool) Clean() error {
	files, err := filepath.Glob(filepath.Join(s.cfg.Dir, s.cfg.Prefix+"-spill-*"))
	if err != nil {
		return err
	}
	for _, f := range files {
		os.Remove(f)
	}
	return nil
}

// Txn is one transaction's records. It is used by one goroutine at a time.
type Txn struct {
	s       *Spool
	recs    []Record
	mem     int64
	f       *os.File
	w       *bufio.Writer
	buf     []byte
	entries map[uint32]int // entries per subtransaction
	aborted map[uint32]bool
}

// Begin starts a transaction.
func (s *Spool) Begin() *Txn {
	return &Txn{s: s, entries: map[uint32]int{}}
}

func size(r *Record) int64 {
	e := &r.Entry
	n := int64(96 + len(e.Schema) + len(e.Table) + len(e.Action) + len(e.PK) + len(e.Old) + len(e.New))
	for _, c := range e.Changed {
		n += int64(16 + len(c))
	}
	for _, f := range e.Flags {
		n += int64(16 + len(f))
	}
	return n
}

// Add appends a record. The entry's byte slices must stay unchanged until
// the transaction ends (or are copied to the file at once).
func (t *Txn) Add(r Record) error {
	if r.Ctx == nil {
		t.entries[r.Subxid]++
	}
	if t.f == nil {
		t.recs = append(t.recs, r)
		t.mem += size(&r)
		if t.mem <= t.s.cfg.TxnMemory {
			return nil
		}
		return t.spill()
	}
	return t.write(&r)
}

// spill moves the records held in memory to a new file.
func (t *Txn) spill() error {
	f, err := os.CreateTemp(t.s.cfg.Dir, t.s.cfg.Prefix+"-spill-*")
	if err != nil {
		return fmt.Errorf("spill a large transaction to %s: %w", t.s.cfg.Dir, err)
	}
	t.s.Spills.Add(1)
	t.s.Files.Add(1)
	t.f, t.w = f, bufio.NewWriterSize(f, 256<<10)
	for i := range t.recs {
		if err := t.write(&t.recs[i]); err != nil {
			return err
		}
	}
	t.recs, t.mem = nil, 0
	return nil
}

func (t *Txn) write(r *Record) error {
	b := t.buf[:0]
	b = binary.AppendUvarint(b, uint64(r.Subxid))
	if r.Ctx != nil {
		js, err := json.Marshal(r.Ctx)
		if err != nil {
			return fmt.Errorf("spill: %w", err)
		}
		b = append(b, 1)
		b = appendBytes(b, js)
	} else {
		e := &r.Entry
		b = append(b, 0)
		b = appendBytes(b, []byte(e.Schema))
		b = appendBytes(b, []byte(e.Table))
		b = appendBytes(b, []byte(e.Action))
		b = appendBytes(b, e.PK)
		b = appendBytes(b, e.Old)
		b = appendBytes(b, e.New)
		b = appendStrings(b, e.Changed)
		b = appendStrings(b, e.Flags)
		b = appendBytes(b, []byte(e.Class))
	}
	t.buf = b
	var head [binary.MaxVarintLen64]byte
	if _, err := t.w.Write(binary.AppendUvarint(head[:0], uint64(len(b)))); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	if _, err := t.w.Write(b); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	return nil
}

// appendStrings writes a count (0 for nil, else len+1) and the strings.
func appendStrings(b []byte, v []string) []byte {
	if v == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	for _, s := range v {
		b = appendBytes(b, []byte(s))
	}
	return b
}

// readStrings reads what appendStrings wrote.
func readStrings(buf *[]byte) []string {
	n, k := binary.Uvarint(*buf)
	*buf = (*buf)[k:]
	if n == 0 {
		return nil
	}
	out := make([]string, n-1)
	for i := range out {
		c, _ := readBytes(buf)
		out[i] = string(c)
	}
	return out
}

// appendBytes writes a length (0 for nil, else len+1) and the bytes.
func appendBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

// Abort drops the records of a rolled-back subtransaction.
func (t *Txn) Abort(subxid uint32) {
	if t.aborted == nil {
		t.aborted = map[uint32]bool{}
	}
	t.aborted[subxid] = true
}

// Discard drops the whole transaction.
func (t *Txn) Discard() {
	if t.f != nil {
		t.f.Close()
		os.Remove(t.f.Name())
		t.s.Files.Add(-1)
		t.f = nil
	}
	t.recs = nil
}

// Count is the number of entries the transaction keeps.
func (t *Txn) Count() int {
	n := 0
	for sub, c := range t.entries {
		if !t.aborted[sub] {
			n += c
		}
	}
	return n
}

// Finish ends the transaction. Small transactions come back as entries;
// spilled ones as a reader of the file (nil entries). Rolled-back
// subtransactions are left out, and every entry gets its order number and
// the context in force where it was written.
func (t *Txn) Finish() ([]audit.Entry, audit.EntryReader, error) {
	if t.f != nil {
		if err := t.w.Flush(); err != nil {
			t.Discard()
			return nil, nil, fmt.Errorf("spill: %w", err)
		}
		r := &fileReader{s: t.s, f: t.f, aborted: t.aborted}
		t.f = nil
		return nil, r, r.Rewind()
	}
	entries := make([]audit.Entry, 0, t.Count())
	var ctx *audit.Context
	for i := range t.recs {
		r := &t.recs[i]
		if t.aborted[r.Subxid] {
			continue
		}
		if r.Ctx != nil {
			ctx = r.Ctx
			continue
		}
		e := r.Entry
		e.Seq = int32(len(entries) + 1)
		if e.Ctx == nil {
			e.Ctx = ctx
		}
		entries = append(entries, e)
	}
	t.recs = nil
	return entries, nil, nil
}

// fileReader reads the entries of a spilled transaction.
type fileReader struct {
	s       *Spool
	f       *os.File
	r       *bufio.Reader
	aborted map[uint32]bool
	ctx     *audit.Context
	seq     int32
	e       audit.Entry
	buf     []byte
}

var _ audit.EntryReader = (*fileReader)(nil)

func (r *fileReader) Rewind() error {
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	if r.r == nil {
		r.r = bufio.NewReaderSize(r.f, 256<<10)
	} else {
		r.r.Reset(r.f)
	}
	r.ctx, r.seq = nil, 0
	return nil
}

// Next returns the next entry, or nil at the end. The entry is valid until
// the next call.
func (r *fileReader) Next() (*audit.Entry, error) {
	for {
		n, err := binary.ReadUvarint(r.r)
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read spill: %w", err)
		}
		// A fresh buffer per record: the entry's slices point into it.
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.r, buf); err != nil {
			return nil, fmt.Errorf("read spill: %w", err)
		}
		sub, k := binary.Uvarint(buf)
		buf = buf[k:]
		kind := buf[0]
		buf = buf[1:]
		if kind == 1 {
			js, _ := readBytes(&buf)
			if r.aborted[uint32(sub)] {
				continue
			}
			var c audit.Context
			if err := json.Unmarshal(js, &c); err != nil {
				return nil, fmt.Errorf("read spill: %w", err)
			}
			r.ctx = &c
			continue
		}
		if r.aborted[uint32(sub)] {
			continue
		}
		e := &r.e
		*e = audit.Entry{}
		schema, _ := readBytes(&buf)
		table, _ := readBytes(&buf)
		action, _ := readBytes(&buf)
		e.Schema, e.Table, e.Action = string(schema), string(table), audit.Action(action)
		e.PK, _ = readBytes(&buf)
		e.Old, _ = readBytes(&buf)
		e.New, _ = readBytes(&buf)
		e.Changed = readStrings(&buf)
		e.Flags = readStrings(&buf)
		class, _ := readBytes(&buf)
		e.Class = string(class)
		r.seq++
		e.Seq = r.seq
		e.Ctx = r.ctx
		return e, nil
	}
}

func readBytes(buf *[]byte) ([]byte, bool) {
	n, k := binary.Uvarint(*buf)
	*buf = (*buf)[k:]
	if n == 0 {
		return nil, true
	}
	v := (*buf)[: n-1 : n-1]
	*buf = (*buf)[n-1:]
	return v, true
}

// Close removes the file.
func (r *fileReader) Close() error {
	if r.f == nil {
		return nil
	}
	r.f.Close()
	err := os.Remove(r.f.Name())
	r.f = nil
	r.s.Files.Add(-1)
	return err
}
