// Package cdc owns the replication side: preparing the source database
// (publication, replica identity, slot), the replication connection with its
// keepalives and standby status updates, and the slot's state. It knows
// nothing of audit entries.
package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/walscribe/walscribe/internal/pg"
)

// SessionSettings are the settings of the walsender session, so that values
// arrive in the forms the decoder renders (as to_jsonb does under UTC).
var SessionSettings = map[string]string{
	"DateStyle":          "ISO",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "3",
	"TimeZone":           "UTC",
	"client_encoding":    "UTF8",
}

// Conn is a logical replication connection streaming one slot. One goroutine
// owns it.
type Conn struct {
	conn *pgconn.PgConn
	// Receive sets the socket's read deadline itself, and only when it
	// changes, rather than giving pgconn a context with a deadline for
	// every message: that cost a context, a timer and a watcher per message,
	// a tenth of the daemon's CPU. The context Receive is given interrupts
	// a read through watched, which sets the deadline to now.
	deadline    time.Time
	deadlineSet bool // deadline is the socket's read deadline
	watched     context.Context
	unwatch     func()
}

// Message is what Receive returns: WAL data, or a keepalive.
type Message struct {
	// Data is one pgoutput message; nil for a keepalive. It is valid only
	// until the next Receive.
	Data []byte
	// WALStart is the position of Data.
	WALStart pglogrepl.LSN
	// ServerWALEnd is the server's current end of WAL.
	ServerWALEnd pglogrepl.LSN
	// ReplyRequested: the server wants a status update now.
	ReplyRequested bool
}

// Dial opens a replication connection to the database at dsn.
func Dial(ctx context.Context, dsn string) (*Conn, error) {
	conn, err := pg.ConnectReplication(ctx, dsn, pg.AppDaemon, SessionSettings)
	if err != nil {
		return nil, fmt.Errorf("replication connection: %w", err)
	}
	return &Conn{conn: conn}, nil
}

// SystemID returns the server's system identifier (IDENTIFY_SYSTEM): the
// same for a cluster and its physical replicas, different for any other.
func (c *Conn) SystemID(ctx context.Context) (string, error) {
	r, err := pglogrepl.IdentifySystem(ctx, c.conn)
	if err != nil {
		return "", fmt.Errorf("identify system: %w", err)
	}
	return r.SystemID, nil
}

// SlotPosition reads slot's confirmed position and wal_status on the
// replication connection itself (before Start: it takes no other
// connection). It returns ErrNoSlot when the slot is gone and
// ErrOtherDatabase when the slot of that name is another database's.
func (c *Conn) SlotPosition(ctx context.Context, slot string) (pglogrepl.LSN, string, error) {
	// A replication connection takes only the simple protocol: the name
	// goes in as a literal, quotes doubled.
	lit := "'" + strings.ReplaceAll(slot, "'", "''") + "'"
	rs, err := c.conn.Exec(ctx, `SELECT confirmed_flush_lsn::text, coalesce(wal_status, ''), database IS NOT DISTINCT FROM current_database()
		FROM pg_replication_slots WHERE slot_name = `+lit).ReadAll()
	if err != nil {
		return 0, "", fmt.Errorf("read slot %q: %w", slot, err)
	}
	if len(rs) != 1 || len(rs[0].Rows) == 0 {
		return 0, "", fmt.Errorf("%w: %q", ErrNoSlot, slot)
	}
	row := rs[0].Rows[0]
	if string(row[2]) != "t" {
		return 0, "", fmt.Errorf("replication slot %q (%w)", slot, ErrOtherDatabase)
	}
	var lsn pglogrepl.LSN
	if row[0] != nil {
		if lsn, err = pglogrepl.ParseLSN(string(row[0])); err != nil {
			return 0, "", fmt.Errorf("read slot %q: %w", slot, err)
		}
	}
	return lsn, string(row[1]), nil
}

// Start begins streaming slot from start (0: from the slot's confirmed
// position) with pgoutput, the publication, and logical messages.
func (c *Conn) Start(ctx context.Context, slot, publication string, start pglogrepl.LSN) error {
	err := pglogrepl.StartReplication(ctx, c.conn, slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{
			"proto_version '2'",
			"streaming 'on'",
			fmt.Sprintf("publication_names '%s'", quoteLiteralIdent(publication)),
			"messages 'true'",
		},
	})
	if err != nil {
		return fmt.Errorf("start replication on slot %q: %w", slot, err)
	}
	return nil
}

// quoteLiteralIdent quotes a publication name for the publication_names
// option, a comma-separated list of identifiers inside a string literal.
func quoteLiteralIdent(name string) string {
	q := `"`
	for _, r := range name {
		switch r {
		case '"':
			q += `""`
		case '\'':
			q += `''`
		default:
			q += string(r)
		}
	}
	return q + `"`
}

// ErrTimeout is returned by Receive when nothing arrived before the deadline.
var ErrTimeout = errors.New("no message before the deadline")

// Receive waits until deadline (zero: no deadline) for the next message, or
// until ctx is done.
func (c *Conn) Receive(ctx context.Context, deadline time.Time) (Message, error) {
	if ctx != c.watched {
		c.watch(ctx)
	}
	if !c.deadlineSet || !deadline.Equal(c.deadline) {
		if err := c.conn.Conn().SetReadDeadline(deadline); err != nil {
			return Message{}, fmt.Errorf("receive: %w", err)
		}
		c.deadline, c.deadlineSet = deadline, true
	}
	// After setting the deadline: a cancellation from before it would
	// otherwise be overwritten.
	if err := ctx.Err(); err != nil {
		return Message{}, fmt.Errorf("receive: %w", err)
	}
	raw, err := c.conn.ReceiveMessage(context.Background())
	if err != nil {
		if ctx.Err() != nil {
			return Message{}, fmt.Errorf("receive: %w", ctx.Err())
		}
		if pgconn.Timeout(err) {
			return Message{}, ErrTimeout
		}
		return Message{}, fmt.Errorf("receive: %w", err)
	}
	switch msg := raw.(type) {
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return Message{}, errors.New("receive: empty CopyData")
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				return Message{}, fmt.Errorf("parse keepalive: %w", err)
			}
			return Message{ServerWALEnd: ka.ServerWALEnd, ReplyRequested: ka.ReplyRequested}, nil
		case pglogrepl.XLogDataByteID:
			x, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				return Message{}, fmt.Errorf("parse XLogData: %w", err)
			}
			return Message{Data: x.WALData, WALStart: x.WALStart, ServerWALEnd: x.ServerWALEnd}, nil
		default:
			return Message{}, fmt.Errorf("receive: unknown CopyData message %q", msg.Data[0])
		}
	case *pgproto3.ErrorResponse:
		return Message{}, fmt.Errorf("receive: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone, *pgproto3.CommandComplete:
		// A walsender ends its stream this way when its server shuts down.
		return Message{}, errors.New("receive: the server ended the stream (is it shutting down?)")
	default:
		return Message{}, fmt.Errorf("receive: unexpected message %T", raw)
	}
}

// watch makes ctx interrupt reads: when it is done, the read deadline
// becomes now. It replaces the context watched before.
func (c *Conn) watch(ctx context.Context) {
	c.stopWatching()
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		c.conn.Conn().SetReadDeadline(time.Now())
	})
	c.deadlineSet = false // the watcher may move it: set it again before reading
	c.watched = ctx
	c.unwatch = func() {
		if !stop() {
			<-done // it ran, or is running: let it finish before going on
		}
	}
}

// stopWatching ends watch. The watcher may have moved the read deadline:
// the next Receive sets it again.
func (c *Conn) stopWatching() {
	if c.unwatch != nil {
		c.unwatch()
	}
	c.watched, c.unwatch, c.deadlineSet = nil, nil, false
}

// SendStatus acknowledges lsn as written, flushed and applied: the server may
// recycle the WAL before it.
func (c *Conn) SendStatus(ctx context.Context, lsn pglogrepl.LSN) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, c.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
		WALFlushPosition: lsn,
		WALApplyPosition: lsn,
		ClientTime:       time.Now(),
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

// Stop acknowledges lsn, ends the stream (CopyDone) and waits up to timeout
// for the server to end it too, so that the acknowledgement has been
// processed when the connection closes. Then it closes the connection.
func (c *Conn) Stop(ctx context.Context, lsn pglogrepl.LSN, timeout time.Duration) error {
	defer c.conn.Close(ctx)
	c.stopWatching()
	if err := c.SendStatus(ctx, lsn); err != nil {
		return err
	}
	if err := c.conn.Conn().SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("end stream: %w", err)
	}
	if _, err := pglogrepl.SendStandbyCopyDone(ctx, c.conn); err != nil {
		return fmt.Errorf("end stream: %w", err)
	}
	return nil
}

// Close ends the stream and closes the connection.
func (c *Conn) Close(ctx context.Context) error {
	c.stopWatching()
	return c.conn.Close(ctx)
}
