package cdc

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/internal/pg"
)

// replicationDSN is dsn with a short wal_sender_timeout, so that the server
// sends keepalives (and asks for replies) within a second.
func replicationDSN(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("wal_sender_timeout", "2s")
	u.RawQuery = q.Encode()
	return u.String()
}

func dial(t *testing.T, dsn string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, replicationDSN(t, dsn))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// change is one decoded pgoutput message, copied out of the receive buffer.
type change struct {
	walStart pglogrepl.LSN
	msg      pglogrepl.Message
	values   []string // Insert: the new tuple as text
}

// receiveUntil receives until stop returns true for a message, or fails the
// test after timeout, answering the server's requests for a status update
// with ack (the server ends a stream that stays silent past
// wal_sender_timeout). It returns the WAL data messages seen, decoded.
func receiveUntil(t *testing.T, c *Conn, ack pglogrepl.LSN, timeout time.Duration, stop func(Message, *change) bool) []change {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	var out []change
	for time.Now().Before(deadline) {
		m, err := c.Receive(ctx, time.Now().Add(200*time.Millisecond))
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		var ch *change
		if m.Data != nil {
			msg, err := pglogrepl.Parse(m.Data)
			if err != nil {
				t.Fatalf("parse pgoutput message %q: %v", m.Data[0], err)
			}
			ch = &change{walStart: m.WALStart, msg: msg}
			switch msg := msg.(type) {
			case *pglogrepl.InsertMessage:
				for _, col := range msg.Tuple.Columns {
					ch.values = append(ch.values, string(col.Data))
				}
			case *pglogrepl.LogicalDecodingMessage:
				msg.Content = append([]byte(nil), msg.Content...)
			}
			out = append(out, *ch)
		}
		if m.ReplyRequested {
			if err := c.SendStatus(ctx, ack); err != nil {
				t.Fatalf("SendStatus: %v", err)
			}
		}
		if stop(m, ch) {
			return out
		}
	}
	t.Fatalf("nothing ended the wait within %s; received %d messages", timeout, len(out))
	return nil
}

func isCommit(_ Message, ch *change) bool {
	if ch == nil {
		return false
	}
	_, ok := ch.msg.(*pglogrepl.CommitMessage)
	return ok
}

func TestDialSessionSettings(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	c := dial(t, src.dsn)
	for name, value := range SessionSettings {
		// The server's own spelling of the value, from a normal connection.
		var want string
		if err := src.conn.QueryRow(ctx, `SELECT set_config($1, $2, false)`, name, value).Scan(&want); err != nil {
			t.Fatalf("set %s: %v", name, err)
		}
		res, err := c.conn.Exec(ctx, `SHOW `+name).ReadAll()
		if err != nil {
			t.Fatalf("SHOW %s on the replication connection: %v", name, err)
		}
		if len(res) != 1 || len(res[0].Rows) != 1 {
			t.Fatalf("SHOW %s: unexpected result %v", name, res)
		}
		if got := string(res[0].Rows[0][0]); got != want {
			t.Errorf("replication connection: %s = %q, want %q", name, got, want)
		}
	}
}

// TestStream follows one slot from start to restart: changes of published tables
// and logical messages arrive, keepalives arrive and ask for replies, a
// status update moves confirmed_flush_lsn, a second consumer is refused with
// 55006 while the first streams, and a later consumer resumes after the
// acknowledged position.
func TestStream(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	c := dial(t, src.dsn)
	if err := c.Start(ctx, src.slot, src.publication, 0); err != nil {
		t.Fatalf("Start: %v", err)
	}

	exec := func(sql ...string) {
		t.Helper()
		for _, q := range sql {
			if _, err := src.conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	exec(`INSERT INTO other VALUES (1)`,
		`BEGIN`,
		`INSERT INTO items VALUES (1, 'first')`,
		`SELECT pg_logical_emit_message(true, 'walscribe.test', 'hello')`,
		`COMMIT`)

	start := src.confirmedLSN(t)
	changes := receiveUntil(t, c, start, 10*time.Second, isCommit)
	var (
		kinds   []string
		rel     *pglogrepl.RelationMessage
		insert  *change
		message *pglogrepl.LogicalDecodingMessage
		commit  *pglogrepl.CommitMessage
	)
	for i, ch := range changes {
		kinds = append(kinds, ch.msg.Type().String())
		switch m := ch.msg.(type) {
		case *pglogrepl.RelationMessage:
			if m.RelationName != "items" {
				t.Errorf("relation %s.%s was streamed; only items is published", m.Namespace, m.RelationName)
			}
			rel = m
		case *pglogrepl.InsertMessage:
			insert = &changes[i]
			if ch.walStart == 0 {
				t.Errorf("insert arrived with WALStart 0")
			}
			if rel == nil || m.RelationID != rel.RelationID {
				t.Errorf("insert into relation %d before its Relation message", m.RelationID)
			}
		case *pglogrepl.LogicalDecodingMessage:
			message = m
		case *pglogrepl.CommitMessage:
			commit = m
		}
	}
	if insert == nil || message == nil || commit == nil {
		t.Fatalf("received %v, want an Insert, a logical Message and a Commit", kinds)
	}
	if got := strings.Join(insert.values, ","); got != "1,first" {
		t.Errorf("inserted row arrived as %q, want 1,first", got)
	}
	if message.Prefix != "walscribe.test" || string(message.Content) != "hello" || !message.Transactional {
		t.Errorf("logical message = %q %q transactional=%v, want walscribe.test hello transactional", message.Prefix, message.Content, message.Transactional)
	}
	if insert.walStart > commit.CommitLSN || commit.CommitLSN >= commit.TransactionEndLSN {
		t.Errorf("insert at %s, commit at %s, end %s: out of order", insert.walStart, commit.CommitLSN, commit.TransactionEndLSN)
	}
	end := commit.TransactionEndLSN

	t.Run("keepalive", func(t *testing.T) {
		receiveUntil(t, c, start, 5*time.Second, func(m Message, ch *change) bool {
			if ch == nil && m.ServerWALEnd < end {
				t.Errorf("keepalive reports server WAL end %s, before the commit's end %s", m.ServerWALEnd, end)
			}
			return ch == nil && m.ReplyRequested
		})
	})

	t.Run("receive timeout keeps the connection", func(t *testing.T) {
		timedOut := false
		for i := 0; i < 50 && !timedOut; i++ {
			m, err := c.Receive(ctx, time.Now().Add(20*time.Millisecond))
			switch {
			case errors.Is(err, ErrTimeout):
				timedOut = true
			case err != nil:
				t.Fatalf("Receive: %v", err)
			case m.ReplyRequested:
				if err := c.SendStatus(ctx, start); err != nil {
					t.Fatalf("SendStatus: %v", err)
				}
			}
		}
		if !timedOut {
			t.Fatal("Receive never reported ErrTimeout with a 20ms deadline")
		}
		// The connection still works after a timeout.
		receiveUntil(t, c, start, 5*time.Second, func(m Message, ch *change) bool { return ch == nil })
	})

	t.Run("status moves confirmed_flush_lsn", func(t *testing.T) {
		if got := src.confirmedLSN(t); got >= end {
			t.Fatalf("confirmed_flush_lsn is %s before any status update, want below %s", got, end)
		}
		if err := c.SendStatus(ctx, end); err != nil {
			t.Fatalf("SendStatus: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for src.confirmedLSN(t) != end && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := src.confirmedLSN(t); got != end {
			t.Errorf("confirmed_flush_lsn = %s after SendStatus(%s)", got, end)
		}
		slot, err := ReadSlot(ctx, src.conn, src.slot)
		if err != nil {
			t.Fatal(err)
		}
		var walsender int32
		if err := src.conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE backend_type = 'walsender' AND datname = current_database()`).Scan(&walsender); err != nil {
			t.Fatalf("find the walsender: %v", err)
		}
		if !slot.Active || slot.ActivePID == nil || *slot.ActivePID != walsender {
			t.Errorf("ReadSlot: active %v pid %v, want active with the walsender's pid %d", slot.Active, slot.ActivePID, walsender)
		}
		if slot.ConfirmedFlushLSN != end {
			t.Errorf("ReadSlot: ConfirmedFlushLSN = %s, want %s", slot.ConfirmedFlushLSN, end)
		}
	})

	t.Run("second consumer is refused", func(t *testing.T) {
		other := dial(t, src.dsn)
		err := other.Start(ctx, src.slot, src.publication, 0)
		if err == nil {
			t.Fatal("a second Start on an active slot succeeded")
		}
		if got := pg.SQLState(err); got != "55006" {
			t.Errorf("SQLState = %q, want 55006 (object in use): %v", got, err)
		}
		if !strings.Contains(err.Error(), src.slot) {
			t.Errorf("error does not name the slot: %v", err)
		}
	})

	t.Run("next consumer resumes after the acknowledged position", func(t *testing.T) {
		if err := c.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		next := dial(t, src.dsn)
		// The slot is released once the old walsender has exited: retry
		// while it is still active, as a standby would.
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := next.Start(ctx, src.slot, src.publication, 0)
			if err == nil {
				break
			}
			if !pg.ObjectInUse(err) || time.Now().After(deadline) {
				t.Fatalf("Start after the first consumer closed: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			next = dial(t, src.dsn)
		}
		exec(`INSERT INTO items VALUES (2, 'second')`)
		var inserts []string
		for _, ch := range receiveUntil(t, next, end, 10*time.Second, isCommit) {
			if _, ok := ch.msg.(*pglogrepl.InsertMessage); ok {
				inserts = append(inserts, strings.Join(ch.values, ","))
			}
		}
		if len(inserts) != 1 || inserts[0] != "2,second" {
			t.Errorf("after acknowledging %s, the next consumer received inserts %q, want only 2,second", end, inserts)
		}
	})
}

// TestReceiveDeadlinesAndCancel: a cancelled context interrupts a read that
// has a distant deadline, or none; after that, a deadline is a deadline again
// (not an immediate timeout), no deadline waits for the next message, and
// Stop still ends the stream.
func TestReceiveDeadlinesAndCancel(t *testing.T) {
	src := newSource(t)
	c := dial(t, src.dsn)
	if err := c.Start(context.Background(), src.slot, src.publication, 0); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ack := src.confirmedLSN(t)
	// receive is Receive answering the server's requests for a status
	// (it ends a stream that stays silent past wal_sender_timeout).
	receive := func(ctx context.Context, deadline time.Time) (Message, error) {
		m, err := c.Receive(ctx, deadline)
		if err == nil && m.ReplyRequested {
			err = c.SendStatus(ctx, ack)
		}
		return m, err
	}
	// interrupted receives until a cancel 300ms later and reports how long
	// that took and the error it ended with.
	interrupted := func(deadline time.Time) (time.Duration, error) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(300*time.Millisecond, cancel)
		began := time.Now()
		for {
			if _, err := receive(ctx, deadline); err != nil {
				return time.Since(began), err
			}
		}
	}
	for _, tc := range []struct {
		name     string
		deadline time.Time
	}{{"distant deadline", time.Now().Add(time.Hour)}, {"no deadline", time.Time{}}} {
		took, err := interrupted(tc.deadline)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: Receive ended with %v, want context.Canceled", tc.name, err)
		}
		if took > 2*time.Second {
			t.Fatalf("%s: the cancel took %s to interrupt Receive", tc.name, took)
		}
	}

	ctx := context.Background()
	t.Run("a deadline after a cancel", func(t *testing.T) {
		// The server sends a keepalive about every second: some of these
		// receives time out, and each must have waited for its deadline.
		timeouts := 0
		for range 10 {
			began := time.Now()
			_, err := receive(ctx, began.Add(300*time.Millisecond))
			if errors.Is(err, ErrTimeout) {
				timeouts++
				if took := time.Since(began); took < 250*time.Millisecond {
					t.Fatalf("timed out after %s, before the 300ms deadline", took)
				}
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if timeouts == 0 {
			t.Fatal("no receive timed out in 10 tries: the deadline is not tested")
		}
	})
	t.Run("no deadline after a deadline", func(t *testing.T) {
		if _, err := receive(ctx, time.Time{}); err != nil {
			t.Fatalf("Receive without a deadline: %v, want the next keepalive", err)
		}
	})
	t.Run("stop after a cancel", func(t *testing.T) {
		if _, err := interrupted(time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		began := time.Now()
		if err := c.Stop(ctx, ack, 5*time.Second); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if took := time.Since(began); took > 4*time.Second {
			t.Fatalf("Stop took %s", took)
		}
	})
}
