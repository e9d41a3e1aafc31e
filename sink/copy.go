package sink

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/walscribe/walscribe/audit"
)

// Entries are sent with COPY in PostgreSQL's binary format, encoded here
// straight from the entries: the column types are fixed by the migrations,
// so there is no per-value type lookup, no boxing of values, and no round
// trip to learn the types. Each value is encoded exactly as pgx encodes the
// same Go value for that column type.
//
// The format: a header, then per row a 16-bit column count and, per column,
// a 32-bit length (-1 for NULL) and the value's binary form; then a 16-bit
// -1 (see "Binary Format" in https://www.postgresql.org/docs/current/sql-copy.html).

// copyColumns are the columns of audit.entries that COPY fills, in the
// order appendRow encodes them.
var copyColumns = []string{"id", "commit_lsn", "seq", "xid", "committed_at", "schema_name", "table_name",
	"action", "pk", "old", "new", "changed", "retention_class",
	"actor_id", "actor", "ip", "user_agent", "request_id", "db_user", "client_addr", "application_name", "context", "flags", "login_user"}

// copyStatement is the COPY of the entries into schema (a quoted identifier).
func copyStatement(schema string) string {
	return "COPY " + schema + ".entries (" + strings.Join(copyColumns, ", ") + ") FROM STDIN (FORMAT binary)"
}

const (
	copyHeader = "PGCOPY\n\377\r\n\000" // signature; the flags and header extension length (0, 0) follow
	// copyBufSize is about what pgconn takes per Read (its 64 KiB message,
	// less the message header): each Read is filled, so that each message
	// is full too.
	copyBufSize = 64 << 10
	textOID     = 25 // the element type of text[]
	// The address families of inet's binary form (PostgreSQL's PGSQL_AF_INET
	// and PGSQL_AF_INET6), as pgx's InetCodec sends them.
	afInet  = 2
	afInet6 = 3
	// microsecondsToY2K is the Unix time of 2000-01-01 00:00:00 UTC, the
	// epoch of timestamptz, in microseconds.
	microsecondsToY2K = 946_684_800 * 1_000_000
)

// errCopyOver is what a Read gets once Write is done with the COPY.
var errCopyOver = errors.New("the copy is over")

// copyReader is the COPY stream of a batch's entries. It encodes them a row
// at a time as they are read, so that memory does not grow with the batch
// (a spilled transaction can hold millions of entries). It numbers the
// entries from nextID and counts them for the metrics.
type copyReader struct {
	batch  []*audit.Transaction
	tx, e  int // the next entry: transaction, and entry of tx.Entries
	nextID int64
	tally  map[tallyKey]int
	// noContext counts the row changes that came without a context.
	noContext int

	buf   []byte // encoded; buf[off:] not read yet
	off   int
	begun bool  // the header is encoded
	done  bool  // the trailer is encoded
	err   error // from a spilled transaction's reader: the COPY is aborted

	// pgconn reads from its own goroutine, which may still be in Read when
	// CopyFrom returns on a broken connection: mu and over make sure that
	// nothing reads the batch once Write is done with it.
	mu   sync.Mutex
	over bool

	// leaves, when the sink hashes the rows itself, takes the leaf hashes
	// of spilled transactions' rows as they are encoded.
	leaves *batchLeaves
}

func newCopyReader(batch []*audit.Transaction, nextID int64) *copyReader {
	return &copyReader{batch: batch, nextID: nextID, tally: map[tallyKey]int{},
		buf: make([]byte, 0, 2*copyBufSize)} // a full Read and the row that went past it
}

// Read fills p with the next part of the stream, encoding rows as needed.
// An error reading a spilled transaction is returned (pgconn then aborts the
// COPY) and kept in r.err.
func (r *copyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		return 0, errCopyOver
	}
	if len(r.buf)-r.off < len(p) && !r.done {
		if err := r.fill(len(p)); err != nil {
			r.err = err
			return 0, err
		}
	}
	if r.off == len(r.buf) {
		return 0, io.EOF
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// stop ends the reading: it waits for a Read under way, and makes later
// ones fail without touching the batch.
func (r *copyReader) stop() {
	r.mu.Lock()
	r.over = true
	r.mu.Unlock()
}

// fill moves what is not read yet to the front of the buffer and encodes
// rows after it until it holds want bytes, or the whole stream.
func (r *copyReader) fill(want int) error {
	rest := r.buf[r.off:]
	if cap(r.buf) > 4*copyBufSize {
		r.buf = make([]byte, 0, 2*copyBufSize) // a huge row grew it: let it go
	}
	r.buf = append(r.buf[:0], rest...)
	r.off = 0
	if !r.begun {
		r.buf = append(r.buf, copyHeader...)
		r.buf = binary.BigEndian.AppendUint32(r.buf, 0) // flags
		r.buf = binary.BigEndian.AppendUint32(r.buf, 0) // header extension length
		r.begun = true
	}
	for len(r.buf) < want {
		tx, e, err := r.next()
		if err != nil {
			return err
		}
		if e == nil {
			r.buf = binary.BigEndian.AppendUint16(r.buf, 0xffff) // -1: the end
			r.done = true
			return nil
		}
		r.appendRow(tx, e)
	}
	return nil
}

// next returns the next entry and its transaction; a nil entry at the end.
func (r *copyReader) next() (*audit.Transaction, *audit.Entry, error) {
	for r.tx < len(r.batch) {
		tx := r.batch[r.tx]
		if tx.Spilled != nil {
			e, err := tx.Spilled.Next()
			if err != nil {
				return nil, nil, err
			}
			if e != nil {
				return tx, e, nil
			}
		} else if r.e < len(tx.Entries) {
			r.e++
			return tx, &tx.Entries[r.e-1], nil
		}
		r.tx++
		r.e = 0
	}
	return nil, nil, nil
}

// appendRow encodes the row of entry e of transaction tx, in the order of
// copyColumns, and counts it.
func (r *copyReader) appendRow(tx *audit.Transaction, e *audit.Entry) {
	r.tally[tallyKey{e.Schema, e.Table, e.Action, e.Ctx != nil && e.Ctx.ActorID != ""}.bounded()]++
	b := binary.BigEndian.AppendUint16(r.buf, uint16(len(copyColumns)))
	b = appendInt8(b, r.nextID)
	r.nextID++
	b = appendInt8(b, int64(tx.CommitLSN)) // pg_lsn: an unsigned 64-bit integer
	b = appendInt4(b, e.Seq)
	if tx.Xid != 0 {
		b = appendInt8(b, int64(tx.Xid))
	} else {
		b = appendNull(b) // an event kept outside any transaction
	}
	b = appendTimestamptz(b, tx.CommittedAt)
	b = appendText(b, e.Schema)
	b = appendText(b, e.Table)
	b = appendText(b, string(e.Action))
	b = appendJSONB(b, e.PK)
	b = appendJSONB(b, e.Old)
	b = appendJSONB(b, e.New)
	b = appendTextArray(b, e.Changed)
	b = appendText(b, e.RetentionClass())
	if c := e.Ctx; c != nil {
		b = appendTextOrNull(b, c.ActorID)
		b = appendTextOrNull(b, c.Actor)
		b = appendInet(b, c.IP)
		b = appendTextOrNull(b, c.UserAgent)
		b = appendTextOrNull(b, c.RequestID)
		b = appendTextOrNull(b, c.DBUser)
		b = appendInet(b, c.ClientAddr)
		b = appendTextOrNull(b, c.ApplicationName)
		b = appendJSONB(b, c.Extra)
	} else {
		for range 9 {
			b = appendNull(b)
		}
	}
	flags, loginUser := rowFlags(e)
	if e.Ctx == nil && audit.IsRowAction(e.Action) {
		r.noContext++
	}
	b = appendTextArray(b, flags)
	b = appendTextOrNull(b, loginUser)
	r.buf = b
	if r.leaves != nil && tx.Spilled != nil {
		// In-memory transactions are hashed beside the COPY (hashLeaves);
		// a spilled one only here, as its file is read.
		r.leaves.hash(r.nextID-1, tx, e, flags, loginUser)
	}
}

// rowFlags are the flags and login_user appendRow stores for e: its flags
// and its context's, and no_context for a row change without one.
func rowFlags(e *audit.Entry) (flags []string, loginUser string) {
	if e.Ctx != nil {
		loginUser = e.Ctx.LoginUser
	}
	flags = e.Flags
	if c := e.Ctx; c != nil && len(c.Flags) > 0 {
		flags = slices.Clone(flags)
		for _, f := range c.Flags {
			if !slices.Contains(flags, f) {
				flags = append(flags, f)
			}
		}
	}
	if e.Ctx == nil && audit.IsRowAction(e.Action) {
		flags = append(slices.Clone(flags), audit.FlagNoContext)
	}
	return flags, loginUser
}

// The append functions below encode one column value: its length, then its
// binary form.

// appendNull encodes a NULL: a length of -1.
func appendNull(b []byte) []byte { return binary.BigEndian.AppendUint32(b, 0xffffffff) }

// appendInt8 encodes a bigint (or a pg_lsn).
func appendInt8(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// appendInt4 encodes an integer.
func appendInt4(b []byte, v int32) []byte {
	b = binary.BigEndian.AppendUint32(b, 4)
	return binary.BigEndian.AppendUint32(b, uint32(v))
}

// appendTimestamptz encodes t as microseconds since 2000-01-01 UTC,
// truncating nanoseconds as pgx does (toward the past). Infinities do not
// occur.
func appendTimestamptz(b []byte, t time.Time) []byte {
	return appendInt8(b, t.UnixMicro()-microsecondsToY2K)
}

// appendText encodes a text value: its bytes.
func appendText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendTextOrNull encodes s, or NULL when s is empty.
func appendTextOrNull(b []byte, s string) []byte {
	if s == "" {
		return appendNull(b)
	}
	return appendText(b, s)
}

// appendJSONB encodes a jsonb value: version 1, then the JSON text as is.
// NULL when j is nil.
func appendJSONB(b []byte, j []byte) []byte {
	if j == nil {
		return appendNull(b)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(1+len(j)))
	b = append(b, 1)
	return append(b, j...)
}

// appendTextArray encodes a one-dimensional text[] without NULLs: the
// number of dimensions, the has-NULLs flag, the element type, the length
// and lower bound of the dimension, then each element with its length.
// An empty slice is an empty array; NULL when a is nil.
func appendTextArray(b []byte, a []string) []byte {
	if a == nil {
		return appendNull(b)
	}
	size := 20
	for _, s := range a {
		size += 4 + len(s)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = binary.BigEndian.AppendUint32(b, 1) // dimensions
	b = binary.BigEndian.AppendUint32(b, 0) // no NULLs
	b = binary.BigEndian.AppendUint32(b, textOID)
	b = binary.BigEndian.AppendUint32(b, uint32(len(a)))
	b = binary.BigEndian.AppendUint32(b, 1) // lower bound
	for _, s := range a {
		b = appendText(b, s)
	}
	return b
}

// appendInet encodes p as an inet: family, prefix bits, is_cidr (0), the
// address length and the address. An IPv4-mapped IPv6 address stays IPv6.
// NULL when p is not valid.
func appendInet(b []byte, p netip.Prefix) []byte {
	if !p.IsValid() {
		return appendNull(b)
	}
	a := p.Addr()
	if a.Is4() {
		b = binary.BigEndian.AppendUint32(b, 8)
		b = append(b, afInet, byte(p.Bits()), 0, 4)
		a4 := a.As4()
		return append(b, a4[:]...)
	}
	b = binary.BigEndian.AppendUint32(b, 20)
	b = append(b, afInet6, byte(p.Bits()), 0, 16)
	a16 := a.As16()
	return append(b, a16[:]...)
}
