package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"

	"github.com/walscribe/walscribe/migrations"
)

// lifecycleRun is what the lifecycle step measured.
type lifecycleRun struct {
	entries                 int64
	dirSeconds, s3Seconds   float64
	dirRSS, s3RSS           int64 // peak resident memory of walscribe export, bytes
	zipBytes                int64
	dropSeconds, delSeconds float64
	dropWAL, delWAL         int64 // WAL written by each
}

// lifecycle measures, on a trail of -lifecycle entries written three
// months ago, walscribe export into ZIP archives in a directory and in an
// in-process S3 store, then walscribe cleanup removing the same number of
// entries two ways: a month partition dropped whole, and the batched
// DELETE path (cleanup --table --older-than).
func (b *bench) lifecycle(ctx context.Context) error {
	n := int64(b.o.lifecycle)
	if n == 0 {
		logf("lifecycle: skipped (-lifecycle 0)")
		return nil
	}
	conn, dsn, err := b.createDB(ctx, "bench_lifecycle")
	if err != nil {
		return err
	}
	defer func() {
		conn.Close(context.WithoutCancel(ctx))
		b.srv.DropDB("bench_lifecycle")
	}()
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		return err
	}
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -3, 0)
	logf("lifecycle: writing 2 × %d entries dated %s (one table kept 1d, one without a period)", n, month.Format("2006-01"))
	began := time.Now()
	for _, q := range []string{
		`SELECT audit.ensure_partitions($1, $1, ARRAY['default', '1d'])`,
		// Rows like the drain benchmark's updates, about 900 bytes each.
		fmt.Sprintf(`INSERT INTO audit.entries (id, commit_lsn, seq, xid, committed_at, schema_name, table_name, action, pk, old, new, changed,
			actor_id, actor, ip, request_id, db_user, retention_class)
		SELECT g, ('0/' || to_hex(g * 256))::pg_lsn, 1, g, $1::timestamptz + g * interval '1 ms', 'bench', CASE WHEN g <= %[1]d THEN 'kept_1d' ELSE 'kept' END, 'update',
			jsonb_build_object('id', g), d || jsonb_build_object('balance', g * 1.5), d || jsonb_build_object('balance', g * 1.5 + 1), ARRAY['balance'],
			(g %% 100)::text, 'user ' || (g %% 100), '10.0.0.1', 'req-' || (g / 10), 'app', CASE WHEN g <= %[1]d THEN '1d' ELSE 'default' END
		FROM generate_series(1, %[2]d) g,
		LATERAL (SELECT jsonb_build_object('name', 'Customer ' || g, 'email', 'customer' || g || '@example.com', 'tags', jsonb_build_array('tier-' || g %% 3, 'region-' || g %% 5),
			'profile', jsonb_build_object('plan', 'pro', 'seats', g %% 50, 'address', jsonb_build_object('city', 'City ' || g %% 100, 'zip', lpad((g %% 99999)::text, 5, '0'))),
			'created_at', '2026-11-01T10:00:00.123456+00:00', 'active', true) d) x`, n, 2*n),
		fmt.Sprintf(`INSERT INTO audit.checkpoints (slot, end_lsn, last_id, committed_at, entries) VALUES ('walscribe', '1/0', %d, $1, %d)`, 2*n, 2*n),
		`VACUUM ANALYZE audit.entries`,
	} {
		args := []any{}
		if strings.Contains(q, "$1") {
			args = append(args, month)
		}
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("write the trail: %w", err)
		}
	}
	logf("lifecycle: written in %s", time.Since(began).Round(time.Second))

	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithV4Auth(map[string]string{"BENCHKEY": "bench-secret"}))
	ts := httptest.NewServer(faker.Server())
	defer ts.Close()
	if err := backend.CreateBucket(ctx, "bench"); err != nil {
		return err
	}
	cfg := filepath.Join(b.dir, "lifecycle.yaml")
	yaml := fmt.Sprintf(`source:
  dsn: %q
tables:
  - name: bench.kept_1d
    retention: 1d
  - name: bench.kept
http:
  listen: ""
log:
  format: json
export:
  s3:
    endpoint: %s
    region: us-east-1
    insecure: true
`, dsn, strings.TrimPrefix(ts.URL, "http://"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return err
	}
	r := &b.r.lifecycle
	r.entries = n
	window := []string{"--since", month.Format(time.DateOnly), "--until", month.AddDate(0, 1, 0).Format(time.DateOnly), "--table", "bench.kept_1d"}
	dir := filepath.Join(b.dir, "exports")
	logf("lifecycle: walscribe export of %d entries to a directory", n)
	if r.dirSeconds, r.dirRSS, err = b.timed(ctx, nil, append([]string{"export", "--config", cfg, "--to", dir, "--id", "bench-dir"}, window...)...); err != nil {
		return err
	}
	if st, err := os.Stat(filepath.Join(dir, "bench-dir", month.Format("2006-01")+".zip")); err == nil {
		r.zipBytes = st.Size()
	}
	logf("lifecycle: %.1f s, peak RSS %d MiB; walscribe export to S3", r.dirSeconds, r.dirRSS>>20)
	env := []string{"AWS_ACCESS_KEY_ID=BENCHKEY", "AWS_SECRET_ACCESS_KEY=bench-secret"}
	if r.s3Seconds, r.s3RSS, err = b.timed(ctx, env, append([]string{"export", "--config", cfg, "--to", "s3://bench/exports", "--id", "bench-s3"}, window...)...); err != nil {
		return err
	}
	logf("lifecycle: %.1f s, peak RSS %d MiB; walscribe cleanup (a month partition of %d entries dropped)", r.s3Seconds, r.s3RSS>>20, n)
	wal := func() pglogrepl.LSN {
		var l pglogrepl.LSN
		conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()`).Scan(&l)
		return l
	}
	w0 := wal()
	if r.dropSeconds, _, err = b.timed(ctx, nil, "cleanup", "--config", cfg); err != nil {
		return err
	}
	r.dropWAL = int64(wal() - w0)
	logf("lifecycle: %.1f s; walscribe cleanup --table --older-than (%d entries deleted in batches)", r.dropSeconds, n)
	w0 = wal()
	if r.delSeconds, _, err = b.timed(ctx, nil, "cleanup", "--config", cfg, "--table", "bench.kept", "--older-than", "1d"); err != nil {
		return err
	}
	r.delWAL = int64(wal() - w0)
	var left int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.entries WHERE schema_name = 'bench'`).Scan(&left); err != nil {
		return err
	}
	if left != 0 {
		return fmt.Errorf("after both cleanups %d bench entries are left", left)
	}
	logf("lifecycle: %.1f s", r.delSeconds)
	return nil
}

// timed runs walscribe with args (and env added), and returns its wall
// time and peak resident memory.
func (b *bench) timed(ctx context.Context, env []string, args ...string) (float64, int64, error) {
	cmd := exec.CommandContext(ctx, b.o.bin, args...)
	cmd.Env = append(append(os.Environ(), daemonEnv...), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("walscribe %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	secs := time.Since(began).Seconds()
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10
	}
	return secs, rss, nil
}
