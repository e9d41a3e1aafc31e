package main

import (
	"context"
	"fmt"
	"time"
)

// memory updates -huge rows in one transaction while walscribe runs and
// records the daemon's peak resident memory.
func (b *bench) memory(ctx context.Context) error {
	if b.o.huge == 0 {
		logf("memory: skipped (-huge 0)")
		return nil
	}
	conn, dsn, err := b.createDB(ctx, "bench_huge")
	if err != nil {
		return err
	}
	defer func() {
		conn.Close(context.WithoutCancel(ctx))
		b.srv.DropDB("bench_huge")
	}()
	logf("memory: loading %d rows", b.o.huge)
	for _, q := range []string{
		`CREATE TABLE big (id int PRIMARY KEY, name text, amount numeric(12,2), tags text[], at timestamptz)`,
		fmt.Sprintf(`INSERT INTO big SELECT g, 'name ' || g, g * 1.5, ARRAY['a', 'b'], now() FROM generate_series(1, %d) g`, b.o.huge),
		`VACUUM ANALYZE big`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	cfg, metricsAddr, err := writeConfig(b.dir, daemonConfig{dsn: dsn, table: "public.big"})
	if err != nil {
		return err
	}
	if err := setupDaemon(ctx, b.o.bin, cfg); err != nil {
		return err
	}
	d, err := startDaemon(b.o.bin, cfg, metricsAddr)
	if err != nil {
		return err
	}
	defer d.stop()
	if err := slotActive(ctx, conn, d, "walscribe"); err != nil {
		return err
	}
	r := &b.r.memory
	r.rows = int64(b.o.huge)
	logf("memory: UPDATE of %d rows in one transaction", b.o.huge)
	began := time.Now()
	if _, err := conn.Exec(ctx, `UPDATE big SET amount = amount + 1`); err != nil {
		return err
	}
	r.updateSeconds = time.Since(began).Seconds()
	committed := time.Now()
	if err := lastID(ctx, conn, d, r.rows, time.Hour); err != nil {
		return err
	}
	r.storedSeconds = time.Since(committed).Seconds()
	if r.peakRSS, err = vmHWM(d.cmd.Process.Pid); err != nil {
		return err
	}
	logf("memory: stored %.1fs after the commit, peak RSS %d MiB", r.storedSeconds, r.peakRSS>>20)
	return nil
}
