package cdc

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Slot is the server's view of a replication slot.
type Slot struct {
	Name              string
	Active            bool
	ActivePID         *int32
	ConfirmedFlushLSN pglogrepl.LSN
	RestartLSN        pglogrepl.LSN
	CurrentLSN        pglogrepl.LSN // pg_current_wal_lsn() when read
	WALStatus         string        // reserved, extended, unreserved, lost
	SafeWALSize       *int64        // bytes that can still be written before the slot is lost; nil without max_slot_wal_keep_size
}

// LagBytes is how much WAL the slot has not confirmed.
func (s *Slot) LagBytes() int64 { return int64(s.CurrentLSN) - int64(s.ConfirmedFlushLSN) }

// RetainedBytes is how much WAL the server keeps for the slot.
func (s *Slot) RetainedBytes() int64 { return int64(s.CurrentLSN) - int64(s.RestartLSN) }

// ErrNoSlot means the slot does not exist.
var ErrNoSlot = errors.New("replication slot does not exist")

// ReadSlot reads the state of slot.
func ReadSlot(ctx context.Context, conn *pgx.Conn, slot string) (*Slot, error) {
	s := &Slot{Name: slot}
	var confirmed, restart, current, status *string
	err := conn.QueryRow(ctx, `SELECT active, active_pid, confirmed_flush_lsn::text, restart_lsn::text,
			pg_current_wal_lsn()::text, wal_status, safe_wal_size
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(
		&s.Active, &s.ActivePID, &confirmed, &restart, &current, &status, &s.SafeWALSize)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q (run `walscribe setup`)", ErrNoSlot, slot)
	}
	if err != nil {
		return nil, fmt.Errorf("read slot %q: %w", slot, err)
	}
	for _, f := range []struct {
		in  *string
		out *pglogrepl.LSN
	}{{confirmed, &s.ConfirmedFlushLSN}, {restart, &s.RestartLSN}, {current, &s.CurrentLSN}} {
		if f.in == nil {
			continue
		}
		if *f.out, err = pglogrepl.ParseLSN(*f.in); err != nil {
			return nil, fmt.Errorf("read slot %q: %w", slot, err)
		}
	}
	if status != nil {
		s.WALStatus = *status
	}
	return s, nil
}
