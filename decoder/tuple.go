package decoder

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Insert, Update and Delete messages are nearly every message of a busy
// stream. pglogrepl parses them into fresh structs with a copy of every
// column's bytes; these are parsed here instead, into tuples the decoder
// reuses whose columns point into the message itself. The message is only
// valid until the next one is received, which is why an entry's JSON is
// built before Decode returns, never later.

// tuple is the TupleData of a change message.
type tuple struct {
	cols []tupleColumn
}

// tupleColumn is one column of a tuple: its kind ('n' null, 'u' unchanged
// TOASTed value, not sent; 't' text, 'b' binary) and, for 't' and 'b', its
// bytes.
type tupleColumn struct {
	kind byte
	data []byte
}

const (
	colNull      = 'n'
	colUnchanged = 'u'
	colText      = 't'
	colBinary    = 'b'
)

// change is an Insert, Update or Delete message. Its tuples are the
// decoder's, overwritten by the next message.
type change struct {
	kind   byte   // 'I', 'U' or 'D'
	xid    uint32 // in a stream, the (sub)transaction; 0 otherwise
	relID  uint32
	oldTag byte   // 'K' (key columns only) or 'O' (the whole old row); 0: none sent
	old    *tuple // nil when none was sent
	new    *tuple // nil for a delete
}

var errShort = errors.New("message too short")

// parse parses an Insert, Update or Delete message (its first byte
// says which) into c, reusing c's tuples. inStream says whether the message
// came inside a streamed transaction, where it carries the xid. The tuples
// it fills are oldBuf and newBuf.
func (c *change) parse(b []byte, inStream bool, oldBuf, newBuf *tuple) error {
	if len(b) == 0 {
		return errShort
	}
	c.kind, c.xid, c.oldTag, c.old, c.new = b[0], 0, 0, nil, nil
	b = b[1:]
	if inStream {
		if len(b) < 4 {
			return errShort
		}
		c.xid, b = binary.BigEndian.Uint32(b), b[4:]
	}
	if len(b) < 5 {
		return errShort
	}
	c.relID, b = binary.BigEndian.Uint32(b), b[4:]
	var err error
	switch c.kind {
	case 'I':
		if b[0] != 'N' {
			return fmt.Errorf("insert: tuple tag %q, want 'N'", b[0])
		}
		c.new = newBuf
		b, err = c.new.parse(b[1:])
	case 'U':
		if b[0] == 'K' || b[0] == 'O' {
			c.oldTag, c.old = b[0], oldBuf
			if b, err = c.old.parse(b[1:]); err != nil {
				return err
			}
			if len(b) == 0 {
				return errShort
			}
		}
		if b[0] != 'N' {
			return fmt.Errorf("update: tuple tag %q, want 'N'", b[0])
		}
		c.new = newBuf
		b, err = c.new.parse(b[1:])
	case 'D':
		if b[0] != 'K' && b[0] != 'O' {
			return fmt.Errorf("delete: tuple tag %q, want 'K' or 'O'", b[0])
		}
		c.oldTag, c.old = b[0], oldBuf
		b, err = c.old.parse(b[1:])
	default:
		return fmt.Errorf("not a change message: %q", c.kind)
	}
	if err == nil && len(b) != 0 {
		// pgoutput never sends more: more means a protocol this decoder
		// does not know, and guessing would record wrong values.
		err = fmt.Errorf("%d bytes after the last tuple", len(b))
	}
	return err
}

// parse reads a TupleData from b into t and returns what follows it.
func (t *tuple) parse(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, errShort
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	t.cols = t.cols[:0]
	for range n {
		if len(b) < 1 {
			return nil, errShort
		}
		col := tupleColumn{kind: b[0]}
		b = b[1:]
		switch col.kind {
		case colNull, colUnchanged:
		case colText, colBinary:
			if len(b) < 4 {
				return nil, errShort
			}
			l := binary.BigEndian.Uint32(b)
			b = b[4:]
			if uint64(l) > uint64(len(b)) {
				return nil, errShort
			}
			col.data, b = b[:l:l], b[l:]
		default:
			return nil, fmt.Errorf("unknown column kind %q", col.kind)
		}
		t.cols = append(t.cols, col)
	}
	return b, nil
}
