package cdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pg"
)

// Slot is the server's view of a replication slot of this database. Slot
// names are server-wide, and a slot streams only its own database: every
// function here reads, creates and drops only the slot of the database it is
// connected to.
type Slot struct {
	Name              string
	Database          string
	Active            bool
	ActivePID         *int32
	ConfirmedFlushLSN pglogrepl.LSN
	RestartLSN        pglogrepl.LSN
	CurrentLSN        pglogrepl.LSN // pg_current_wal_lsn() when read (on a standby, the last WAL replayed)
	WALStatus         string        // reserved, extended, unreserved, lost
	SafeWALSize       *int64        // bytes that can still be written before the slot is lost; nil without max_slot_wal_keep_size
}

// LagBytes is how much WAL the slot has not confirmed.
func (s *Slot) LagBytes() int64 { return int64(s.CurrentLSN) - int64(s.ConfirmedFlushLSN) }

// RetainedBytes is how much WAL the server keeps for the slot.
func (s *Slot) RetainedBytes() int64 { return int64(s.CurrentLSN) - int64(s.RestartLSN) }

// ErrNoSlot means the slot does not exist.
var ErrNoSlot = errors.New("replication slot does not exist")

// ErrOtherDatabase means a slot of that name exists, but streams another
// database of the server. walscribe never touches it.
var ErrOtherDatabase = errors.New("the slot streams another database")

// ReadSlot reads the state of slot. It returns ErrNoSlot when there is none,
// and ErrOtherDatabase when the slot of that name is another database's.
func ReadSlot(ctx context.Context, conn *pgx.Conn, slot string) (*Slot, error) {
	s := &Slot{Name: slot}
	var confirmed, restart *pglogrepl.LSN
	var status, db *string
	var current string
	err := conn.QueryRow(ctx, `SELECT database::text, current_database()::text, active, active_pid,
			confirmed_flush_lsn, restart_lsn,
			CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
			wal_status, safe_wal_size
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(
		&db, &current, &s.Active, &s.ActivePID, &confirmed, &restart, &s.CurrentLSN, &status, &s.SafeWALSize)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q (run `walscribe setup`)", ErrNoSlot, slot)
	}
	if err != nil {
		return nil, fmt.Errorf("read slot %q: %w", slot, err)
	}
	if db == nil || *db != current {
		other := "none (a physical slot)"
		if db != nil {
			other = strconv.Quote(*db)
		}
		return nil, fmt.Errorf("replication slot %q belongs to database %s, not %q (%w): choose another source.slot", slot, other, current, ErrOtherDatabase)
	}
	s.Database = current
	if confirmed != nil {
		s.ConfirmedFlushLSN = *confirmed
	}
	if restart != nil {
		s.RestartLSN = *restart
	}
	if status != nil {
		s.WALStatus = *status
	}
	return s, nil
}

// EnsureSlot creates the permanent pgoutput slot unless it exists in this
// database. Creation waits for every transaction that holds an xid, in any
// database of the server, to finish; after timeout (default 1m) the server
// gives up waiting and EnsureSlot fails with a message saying how to find the
// transactions in the way. A slot of that name in another database is an
// error (ErrOtherDatabase).
func EnsureSlot(ctx context.Context, conn *pgx.Conn, slot string, timeout time.Duration) (created bool, err error) {
	_, err = ReadSlot(ctx, conn, slot)
	switch {
	case err == nil:
		return false, nil
	case !errors.Is(err, ErrNoSlot):
		return false, err
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	// The timeout is the server's, not a cancelled context: a client that
	// hangs up leaves the backend waiting, and it would create the slot
	// after setup has reported failure.
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', $1, true)`, strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)); err != nil {
		return false, fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		if pg.Is(err, pgerrcode.QueryCanceled) && ctx.Err() == nil { // the statement timeout
			return false, fmt.Errorf("create replication slot %q: still waiting after %s for open transactions to finish; find them with "+
				"SELECT pid, datname, usename, state, xact_start, query FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY xact_start; "+
				"(and prepared ones with SELECT gid, database, prepared FROM pg_prepared_xacts;) "+
				"then end them (SELECT pg_terminate_backend(pid); or ROLLBACK PREPARED 'gid';) or wait, and run setup again (--slot-timeout waits longer)", slot, timeout)
		}
		return false, fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	return true, nil
}

// DropSlot drops slot if it is this database's, and reports whether it did.
// A slot of that name in another database is left alone; a slot in use
// fails with SQLSTATE 55006 (pg.ObjectInUse).
func DropSlot(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	// One statement: the check and the drop cannot be split by a slot
	// dropped and recreated elsewhere in between.
	tag, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
		WHERE slot_name = $1 AND database = current_database()`, slot)
	if err != nil {
		if pg.Is(err, pgerrcode.UndefinedObject) { // dropped meanwhile
			return false, nil
		}
		return false, fmt.Errorf("drop replication slot %q: %w", slot, err)
	}
	return tag.RowsAffected() > 0, nil
}
