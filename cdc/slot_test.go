package cdc

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// source is a test database with a published table "items", an unpublished
// table "other", and a slot named after the database (slot names are
// server-wide; databases are not shared between tests).
type source struct {
	dsn         string
	slot        string
	publication string
	conn        *pgx.Conn // superuser connection to the database
}

func newSource(t *testing.T) *source {
	t.Helper()
	ctx := context.Background()
	dsn := srv.NewDB(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	s := &source{dsn: dsn, slot: strings.TrimPrefix(u.Path, "/"), publication: "walscribe"}
	pgtest.Exec(t, dsn,
		`CREATE TABLE items (id int PRIMARY KEY, name text)`,
		`CREATE TABLE other (id int PRIMARY KEY)`)
	s.conn = pgtest.Connect(t, dsn)
	tables := []Table{{Schema: "public", Name: "items", Key: "tables[0].name"}}
	if _, err := SetReplicaIdentityFull(ctx, s.conn, tables); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsurePublication(ctx, s.conn, s.publication, tables); err != nil {
		t.Fatal(err)
	}
	created, err := EnsureSlot(ctx, s.conn, s.slot, 10*time.Second)
	if err != nil || !created {
		t.Fatalf("EnsureSlot = %v, %v; want a new slot", created, err)
	}
	return s
}

// currentLSN is the server's pg_current_wal_lsn().
func (s *source) currentLSN(t *testing.T) pglogrepl.LSN {
	t.Helper()
	return s.lsn(t, `SELECT pg_current_wal_lsn()::text`)
}

// confirmedLSN is the slot's confirmed_flush_lsn as the server reports it.
func (s *source) confirmedLSN(t *testing.T) pglogrepl.LSN {
	t.Helper()
	return s.lsn(t, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, s.slot)
}

func (s *source) lsn(t *testing.T, sql string, args ...any) pglogrepl.LSN {
	t.Helper()
	var text string
	if err := s.conn.QueryRow(context.Background(), sql, args...).Scan(&text); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func TestReadSlotMissing(t *testing.T) {
	conn := pgtest.Connect(t, srv.NewDB(t))
	_, err := ReadSlot(context.Background(), conn, "no_such_slot")
	if !errors.Is(err, ErrNoSlot) {
		t.Fatalf("ReadSlot of a missing slot: %v, want ErrNoSlot", err)
	}
	for _, s := range []string{"no_such_slot", "walscribe setup"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}
}

// TestReadSlotLag: with nobody consuming, the lag grows by at least the WAL
// written meanwhile, and the confirmed position stays where the server has it.
func TestReadSlotLag(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)

	before, err := ReadSlot(ctx, src.conn, src.slot)
	if err != nil {
		t.Fatal(err)
	}
	if before.Active || before.ActivePID != nil {
		t.Errorf("slot active = %v (pid %v) with no consumer", before.Active, before.ActivePID)
	}
	if got, want := before.ConfirmedFlushLSN, src.confirmedLSN(t); got != want || got == 0 {
		t.Errorf("ConfirmedFlushLSN = %s, server says %s", got, want)
	}
	if before.LagBytes() < 0 || before.RetainedBytes() < before.LagBytes() {
		t.Errorf("LagBytes = %d, RetainedBytes = %d; want 0 <= lag <= retained", before.LagBytes(), before.RetainedBytes())
	}
	if before.WALStatus != "reserved" {
		t.Errorf("WALStatus = %q, want reserved", before.WALStatus)
	}
	if before.SafeWALSize != nil {
		t.Errorf("SafeWALSize = %d without max_slot_wal_keep_size, want nil", *before.SafeWALSize)
	}

	start := src.currentLSN(t)
	pgtest.Exec(t, src.dsn, `INSERT INTO items SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g`)
	end := src.currentLSN(t)

	after, err := ReadSlot(ctx, src.conn, src.slot)
	if err != nil {
		t.Fatal(err)
	}
	if after.ConfirmedFlushLSN != before.ConfirmedFlushLSN {
		t.Errorf("ConfirmedFlushLSN moved from %s to %s with nobody consuming", before.ConfirmedFlushLSN, after.ConfirmedFlushLSN)
	}
	if grew, written := after.LagBytes()-before.LagBytes(), int64(end-start); grew < written || written <= 0 {
		t.Errorf("LagBytes grew by %d while %d bytes of WAL were written", grew, written)
	}
	if after.RetainedBytes() < after.LagBytes() {
		t.Errorf("RetainedBytes = %d < LagBytes = %d", after.RetainedBytes(), after.LagBytes())
	}
}

// TestSlotOfAnotherDatabase: slot names are server-wide, and
// pg_drop_replication_slot drops another database's logical slot when
// asked; ReadSlot, EnsureSlot and DropSlot never touch it.
func TestSlotOfAnotherDatabase(t *testing.T) {
	ctx := context.Background()
	src := newSource(t) // its slot is named after its database
	conn := pgtest.Connect(t, srv.NewDB(t))
	if _, err := ReadSlot(ctx, conn, src.slot); !errors.Is(err, ErrOtherDatabase) || !strings.Contains(err.Error(), "belongs to database") {
		t.Errorf("ReadSlot of another database's slot: %v, want ErrOtherDatabase", err)
	}
	if created, err := EnsureSlot(ctx, conn, src.slot, 10*time.Second); created || !errors.Is(err, ErrOtherDatabase) {
		t.Errorf("EnsureSlot over another database's slot = %v, %v; want ErrOtherDatabase", created, err)
	}
	if dropped, err := DropSlot(ctx, conn, src.slot); dropped || err != nil {
		t.Errorf("DropSlot of another database's slot = %v, %v; want false, nil", dropped, err)
	}
	if _, err := ReadSlot(ctx, src.conn, src.slot); err != nil {
		t.Fatalf("the slot is gone from its own database: %v", err)
	}
	// From its own database it goes.
	if dropped, err := DropSlot(ctx, src.conn, src.slot); !dropped || err != nil {
		t.Errorf("DropSlot in its own database = %v, %v; want true, nil", dropped, err)
	}
	if _, err := ReadSlot(ctx, src.conn, src.slot); !errors.Is(err, ErrNoSlot) {
		t.Errorf("after DropSlot: %v, want ErrNoSlot", err)
	}
}
