package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
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
// /dev/null), then by walscribe into audit.entries of another database, then
// by walscribe into audit.entries of the source database itself, one after
// the other, each from its own slot created at the same point.
func (b *bench) drain(ctx context.Context) error {
	for i := range b.o.repeat {
		logf("drain: round %d of %d", i+1, b.o.repeat)
		round, err := b.drainRound(ctx)
		if err != nil {
			return err
		}
		b.r.drain = append(b.r.drain, round)
	}
	return nil
}

// drainRound is one round of drain, on fresh databases.
func (b *bench) drainRound(ctx context.Context) (drainRound, error) {
	var r drainRound
	conn, dsn, err := b.createDB(ctx, "bench_drain")
	if err != nil {
		return r, err
	}
	defer func() {
		conn.Close(context.WithoutCancel(ctx))
		b.srv.DropDB("bench_drain")
	}()
	sinkConn, sinkDSN, err := b.createDB(ctx, "bench_drain_sink")
	if err != nil {
		return r, err
	}
	defer func() {
		sinkConn.Close(context.WithoutCancel(ctx))
		b.srv.DropDB("bench_drain_sink")
	}()
	integrityConn, integrityDSN, err := b.createDB(ctx, "bench_drain_integrity")
	if err != nil {
		return r, err
	}
	defer func() {
		integrityConn.Close(context.WithoutCancel(ctx))
		b.srv.DropDB("bench_drain_integrity")
	}()
	if _, err := conn.Exec(ctx, tableDDL); err != nil {
		return r, err
	}
	profile := b.o.pprofDir != ""
	same, sameMetrics, err := writeConfig(b.dir, daemonConfig{dsn: dsn, table: "public.accounts", profile: profile})
	if err != nil {
		return r, err
	}
	other, otherMetrics, err := writeConfig(b.dir, daemonConfig{dsn: dsn, table: "public.accounts", slot: "walscribe_other", sinkDSN: sinkDSN, profile: profile})
	if err != nil {
		return r, err
	}
	signer, err := signerKey(ctx, b.o.bin, b.dir)
	if err != nil {
		return r, err
	}
	withIntegrity, integrityMetrics, err := writeConfig(b.dir, daemonConfig{dsn: dsn, table: "public.accounts", slot: "walscribe_integrity",
		sinkDSN: integrityDSN, profile: profile, signer: signer})
	if err != nil {
		return r, err
	}
	for _, cfg := range []string{same, other, withIntegrity} {
		if err := setupDaemon(ctx, b.o.bin, cfg); err != nil {
			return r, err
		}
	}
	// The last slot starts where walscribe's do: nothing is written
	// between them.
	if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot('bench_recvlogical', 'pgoutput')`); err != nil {
		return r, err
	}

	inserts := int64(b.o.changes / 2)
	updates := int64(b.o.changes) - inserts
	logf("drain: writing a backlog of %d inserts then %d updates (%d rows per transaction), walscribe not running", inserts, updates, backlogTxnRows)
	began := time.Now()
	for lo := int64(1); lo <= inserts; lo += backlogTxnRows {
		if _, err := conn.Exec(ctx, insertRows, lo, min(lo+backlogTxnRows-1, inserts)); err != nil {
			return r, fmt.Errorf("write the backlog: %w", err)
		}
	}
	for lo := int64(1); lo <= updates; lo += backlogTxnRows {
		// updates beyond the inserted rows wrap around to the first ones
		from := (lo-1)%inserts + 1
		if _, err := conn.Exec(ctx, updateRows, from, min(from+backlogTxnRows-1, inserts, from+updates-lo)); err != nil {
			return r, fmt.Errorf("write the backlog: %w", err)
		}
	}
	var endLSN string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&endLSN); err != nil {
		return r, err
	}
	var walBytes int64
	if err := conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'walscribe'`).Scan(&walBytes); err != nil {
		return r, err
	}
	r.walBytes = walBytes
	logf("drain: backlog written in %s, %d MiB of WAL, ends at %s", time.Since(began).Round(time.Second), walBytes>>20, endLSN)
	// Something after the end, so that pg_recvlogical sees it pass --endpos.
	if _, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(false, 'bench', 'end')`); err != nil {
		return r, err
	}

	logf("drain: pg_recvlogical to /dev/null")
	stop := make(chan struct{})
	cpu := walsenderCPU(ctx, dsn, "bench_recvlogical", stop)
	began = time.Now()
	// The options walscribe streams with: the same decoding work.
	rl := exec.CommandContext(ctx, filepath.Join(b.o.pgBinDir, "pg_recvlogical"), "-d", dsn, "--start", "-S", "bench_recvlogical",
		"-P", "pgoutput", "-o", "proto_version=2", "-o", "streaming=on", "-o", "messages=true", "-o", "publication_names=walscribe",
		"-f", "/dev/null", "--endpos", endLSN, "--no-loop")
	out, err := rl.CombinedOutput()
	r.recvSeconds = time.Since(began).Seconds()
	close(stop)
	r.recvWalsenderCPU = <-cpu
	if err != nil {
		return r, fmt.Errorf("pg_recvlogical: %w\n%s", err, out)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot('bench_recvlogical')`); err != nil {
		return r, err
	}
	logf("drain: pg_recvlogical took %.1fs (%.0f changes/s)", r.recvSeconds, float64(b.o.changes)/r.recvSeconds)

	// The sink in another database first: its writes are not in the
	// source database's stream, where they would add to the next run's.
	if r.other, err = b.drainInto(ctx, "walscribe_other", other, otherMetrics, dsn, sinkConn, sinkDSN, r.recvSeconds, "drain-other"); err != nil {
		return r, err
	}
	if r.integrity, err = b.drainInto(ctx, "walscribe_integrity", withIntegrity, integrityMetrics, dsn, integrityConn, integrityDSN, r.recvSeconds, "drain-integrity"); err != nil {
		return r, err
	}
	logf("drain: walscribe verify of the %d entries", b.o.changes)
	began = time.Now()
	out, err = exec.CommandContext(ctx, b.o.bin, "verify", "--dsn", integrityDSN, "--key", signer+".pub", "--config", withIntegrity).CombinedOutput()
	r.verifySeconds = time.Since(began).Seconds()
	if err != nil {
		return r, fmt.Errorf("walscribe verify: %w\n%s", err, out)
	}
	logf("drain: verify took %.1fs: %s", r.verifySeconds, bytes.TrimSpace(out))
	r.same, err = b.drainInto(ctx, "walscribe", same, sameMetrics, dsn, conn, dsn, r.recvSeconds, "drain")
	return r, err
}

// drainInto runs walscribe with configuration cfg until it has stored the
// whole backlog in the sink database (sinkConn, sinkDSN), and measures it.
func (b *bench) drainInto(ctx context.Context, slot, cfg, metricsAddr, dsn string, sinkConn *pgx.Conn, sinkDSN string, recvSeconds float64, profileName string) (drainRun, error) {
	r := drainRun{}
	n := int64(b.o.changes)
	// Each run from a fresh checkpoint: the WAL the runs before wrote
	// (a million entries and their log each) must not make this one pay
	// for a checkpoint and its full-page writes.
	if _, err := sinkConn.Exec(ctx, `CHECKPOINT`); err != nil {
		return r, err
	}
	logf("drain: walscribe run, slot %s", slot)
	stop := make(chan struct{})
	cpu := walsenderCPU(ctx, dsn, slot, stop)
	scpu := sinkCPU(ctx, sinkDSN, stop)
	began := time.Now()
	d, err := startDaemon(b.o.bin, cfg, metricsAddr)
	if err != nil {
		return r, err
	}
	defer d.stop()
	// A profile of the first part of the drain (it must end before the
	// drain does), when asked for.
	prof := d.profile(max(1, int(recvSeconds)), b.profilePath(profileName))
	if err := lastID(ctx, sinkConn, d, n, time.Hour); err != nil {
		return r, err
	}
	r.seconds = time.Since(began).Seconds()
	close(stop)
	r.walsenderCPU = <-cpu
	r.sinkCPU = <-scpu
	if err := <-prof; err != nil {
		return r, err
	}
	if r.cpu, err = cpuSeconds(d.cmd.Process.Pid); err != nil {
		return r, err
	}
	if r.peakRSS, err = vmHWM(d.cmd.Process.Pid); err != nil {
		return r, err
	}
	var stored int64
	if err := sinkConn.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE table_name = 'accounts'`).Scan(&stored); err != nil {
		return r, err
	}
	if stored != n {
		return r, fmt.Errorf("audit.entries holds %d entries of accounts, want %d: the drain figure would be wrong", stored, n)
	}
	logf("drain: walscribe took %.1fs (%.0f entries/s), %.1f CPU seconds", r.seconds, float64(n)/r.seconds, r.cpu)
	return r, nil
}
