package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

// tableDDL is the audited table: text, numeric, jsonb, arrays, timestamps.
const tableDDL = `CREATE TABLE accounts (
	id         bigint PRIMARY KEY,
	name       text NOT NULL,
	email      text,
	balance    numeric(14,2) NOT NULL,
	tags       text[],
	scores     int[],
	profile    jsonb,
	created_at timestamptz NOT NULL,
	updated_at timestamptz,
	active     boolean);
CREATE SEQUENCE accounts_new_id START 10000000000`

// insertRows inserts accounts $1..$2.
const insertRows = `INSERT INTO accounts SELECT g, 'Customer ' || g, 'customer' || g || '@example.com',
	(g % 100000) * 1.37, ARRAY['tier-' || (g % 5), 'region-' || (g % 7)], ARRAY[g % 10, g % 100, g % 1000]::int[],
	jsonb_build_object('plan', 'pro', 'seats', g % 50, 'address',
		jsonb_build_object('city', 'City ' || (g % 300), 'zip', lpad((g % 99999)::text, 5, '0'))),
	now() - (g % 1000) * interval '1 hour', now(), g % 3 <> 0
	FROM generate_series($1::bigint, $2::bigint) g`

// updateRows updates accounts $1..$2.
const updateRows = `UPDATE accounts SET balance = balance + 1, updated_at = now(),
	profile = jsonb_set(profile, '{seats}', to_jsonb((profile->>'seats')::int + 1))
	WHERE id BETWEEN $1 AND $2`

// backlogTxnRows is the rows per transaction of the backlog.
const backlogTxnRows = 1000

// drain measures how fast a backlog is drained by pg_recvlogical (to
// /dev/null) and by walscribe (into audit.entries), one after the other.
func (b *bench) drain(ctx context.Context) error {
	conn, dsn, err := b.createDB(ctx, "bench_drain")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, tableDDL); err != nil {
		return err
	}
	cfg, metricsAddr, err := writeConfig(b.dir, dsn, "public.accounts", b.o.pprofDir != "")
	if err != nil {
		return err
	}
	if err := setupDaemon(ctx, b.o.bin, cfg); err != nil {
		return err
	}
	// The second slot starts where walscribe's does: nothing is written
	// between the two.
	if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot('bench_recvlogical', 'pgoutput')`); err != nil {
		return err
	}

	inserts := int64(b.o.changes / 2)
	updates := int64(b.o.changes) - inserts
	logf("drain: writing a backlog of %d inserts then %d updates (%d rows per transaction), walscribe not running", inserts, updates, backlogTxnRows)
	began := time.Now()
	for lo := int64(1); lo <= inserts; lo += backlogTxnRows {
		if _, err := conn.Exec(ctx, insertRows, lo, min(lo+backlogTxnRows-1, inserts)); err != nil {
			return fmt.Errorf("write the backlog: %w", err)
		}
	}
	for lo := int64(1); lo <= updates; lo += backlogTxnRows {
		// updates beyond the inserted rows wrap around to the first ones
		from := (lo-1)%inserts + 1
		if _, err := conn.Exec(ctx, updateRows, from, min(from+backlogTxnRows-1, inserts, from+updates-lo)); err != nil {
			return fmt.Errorf("write the backlog: %w", err)
		}
	}
	var endLSN string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&endLSN); err != nil {
		return err
	}
	var walBytes int64
	if err := conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'walscribe'`).Scan(&walBytes); err != nil {
		return err
	}
	r := &b.r.drain
	r.changes = int64(b.o.changes)
	r.walBytes = walBytes
	logf("drain: backlog written in %s, %d MiB of WAL, ends at %s", time.Since(began).Round(time.Second), walBytes>>20, endLSN)
	// Something after the end, so that pg_recvlogical sees it pass --endpos.
	if _, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(false, 'bench', 'end')`); err != nil {
		return err
	}

	logf("drain: pg_recvlogical to /dev/null")
	stop := make(chan struct{})
	cpu := walsenderCPU(ctx, dsn, "bench_recvlogical", stop)
	began = time.Now()
	rl := exec.CommandContext(ctx, filepath.Join(b.o.pgBinDir, "pg_recvlogical"), "-d", dsn, "--start", "-S", "bench_recvlogical",
		"-P", "pgoutput", "-o", "proto_version=1", "-o", "publication_names=walscribe", "-f", "/dev/null",
		"--endpos", endLSN, "--no-loop")
	out, err := rl.CombinedOutput()
	r.recvSeconds = time.Since(began).Seconds()
	close(stop)
	r.recvWalsenderCPU = <-cpu
	if err != nil {
		return fmt.Errorf("pg_recvlogical: %w\n%s", err, out)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot('bench_recvlogical')`); err != nil {
		return err
	}
	logf("drain: pg_recvlogical took %.1fs (%.0f changes/s)", r.recvSeconds, float64(r.changes)/r.recvSeconds)

	logf("drain: walscribe run into audit.entries")
	stop = make(chan struct{})
	cpu = walsenderCPU(ctx, dsn, "walscribe", stop)
	scpu := sinkCPU(ctx, dsn, stop)
	began = time.Now()
	d, err := startDaemon(b.o.bin, cfg, metricsAddr)
	if err != nil {
		return err
	}
	defer d.stop()
	// A profile of the first part of the drain (it must end before the
	// drain does), when asked for.
	prof := d.profile(max(1, int(r.recvSeconds)), b.profilePath("drain"))
	if err := lastID(ctx, conn, d, r.changes, time.Hour); err != nil {
		return err
	}
	r.wsSeconds = time.Since(began).Seconds()
	close(stop)
	r.wsWalsenderCPU = <-cpu
	r.wsSinkCPU = <-scpu
	if err := <-prof; err != nil {
		return err
	}
	if r.wsCPU, err = cpuSeconds(d.cmd.Process.Pid); err != nil {
		return err
	}
	if r.wsPeakRSS, err = vmHWM(d.cmd.Process.Pid); err != nil {
		return err
	}
	var stored int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE table_name = 'accounts'`).Scan(&stored); err != nil {
		return err
	}
	if stored != r.changes {
		return fmt.Errorf("audit.entries holds %d entries of accounts, want %d: the drain figure would be wrong", stored, r.changes)
	}
	logf("drain: walscribe took %.1fs (%.0f entries/s), %.1f CPU seconds", r.wsSeconds, float64(r.changes)/r.wsSeconds, r.wsCPU)
	d.stop()
	conn.Close(ctx)
	b.srv.DropDB("bench_drain")
	return nil
}
