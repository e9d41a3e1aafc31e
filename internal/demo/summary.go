package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// summary waits for the trail to catch up with the traffic, then shows what
// it holds, checks it against the tables, and shows how to query it. It
// returns an error when the trail is wrong, after printing everything.
func (d *demo) summary(ctx context.Context) error {
	st := d.shop.stats
	d.say("\n▸ traffic stopped after %d transactions: %d committed (%d of them with a savepoint rolled back), %d rolled back",
		st.txs, st.committed, st.savepoints, st.rolledBack)
	if st.committed > 0 {
		if err := d.waitCaughtUp(ctx, st.lastXid); err != nil {
			return err
		}
	}
	if err := d.showNew(ctx, 10); err != nil {
		return err
	}
	if err := d.printCounts(ctx); err != nil {
		return err
	}
	problems, err := d.printChecks(ctx)
	if err != nil {
		return err
	}
	problems = append(problems, d.printLogCheck()...)
	d.say("\n▸ walscribe status --config %s", d.cfgPath)
	out, statusErr := d.command(ctx, "status", "--config", d.cfgPath)
	for line := range strings.Lines(out) {
		d.say("    │ %s", strings.TrimRight(line, "\n"))
	}
	if statusErr != nil {
		problems = append(problems, fmt.Sprintf("walscribe status failed (%v): its output is above", statusErr))
	}
	// What an auditor asks for: a report, and an export with its hashes.
	for _, args := range [][]string{
		{"report", "--config", d.cfgPath, "--days", "1", "--top", "5"},
		{"export", "--config", d.cfgPath, "--days", "1", "--to", filepath.Join(d.rep.dir, "exports"), "--id", "demo"},
	} {
		d.say("\n▸ walscribe %s", strings.Join(args, " "))
		out, err := d.command(ctx, args...)
		for line := range strings.Lines(out) {
			d.say("    │ %s", strings.TrimRight(line, "\n"))
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("walscribe %s failed (%v): its output is above", args[0], err))
		}
	}
	problems = append(problems, d.showAPI(ctx)...)
	if err := d.printQueries(ctx); err != nil {
		return err
	}
	if len(problems) > 0 {
		return &trailError{problems}
	}
	return nil
}

// waitCaughtUp waits until the entries of the transaction with xid are in
// the trail: the sink stores transactions in commit order, so every earlier
// one is stored too.
func (d *demo) waitCaughtUp(ctx context.Context, xid int64) error {
	start := time.Now()
	const limit = 30 * time.Second
	for {
		var stored bool
		if err := d.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit.entries WHERE xid = $1)`, xid).Scan(&stored); err != nil {
			return fmt.Errorf("read audit.entries: %w", err)
		}
		if stored {
			d.say("▸ the trail has caught up: the last committed transaction (xid %d) is stored, %.1fs after the traffic stopped\n",
				xid, time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) > limit {
			var checkpoint string
			d.db.QueryRow(ctx, `SELECT coalesce(max(end_lsn)::text, 'none') FROM audit.checkpoints`).Scan(&checkpoint)
			return fmt.Errorf("the trail did not catch up within %s: the last committed transaction (xid %d) is not in audit.entries "+
				"(newest checkpoint %s); the end of the walscribe log:\n%s", limit, xid, checkpoint, d.daemon.tail(15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.daemon.done:
			return d.daemonDied()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// printCounts prints the number of entries by table and action.
func (d *demo) printCounts(ctx context.Context) error {
	rows, err := d.db.Query(ctx, `SELECT table_name, action, count(*) FROM audit.entries GROUP BY 1, 2`)
	if err != nil {
		return fmt.Errorf("count audit.entries: %w", err)
	}
	counts := map[[2]string]int{}
	actions := []string{"insert", "update", "delete", "truncate"}
	tables := slices.Clone(shopTables)
	var table, action string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&table, &action, &n}, func() error {
		counts[[2]string{table, action}] = n
		if !slices.Contains(actions, action) {
			actions = append(actions, action)
		}
		if !slices.Contains(tables, table) {
			tables = append(tables, table)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("count audit.entries: %w", err)
	}
	d.say("\n▸ audit.entries by table and action")
	head := fmt.Sprintf("    %-12s", "table")
	for _, a := range actions {
		head += fmt.Sprintf("  %8s", a)
	}
	d.say("%s  %8s", head, "total")
	colTotal := map[string]int{}
	grand := 0
	for _, t := range tables {
		line, sum := "", 0
		for _, a := range actions {
			c := counts[[2]string{t, a}]
			colTotal[a] += c
			sum += c
			line += fmt.Sprintf("  %8d", c)
		}
		grand += sum
		d.say("    %-12s%s  %8d", t, line, sum)
	}
	line := ""
	for _, a := range actions {
		line += fmt.Sprintf("  %8d", colTotal[a])
	}
	d.say("    %-12s%s  %8d", "all tables", line, grand)

	var median, maxLag *float64
	if err := d.db.QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM captured_at - committed_at)),
			max(extract(epoch FROM captured_at - committed_at))::float8 FROM audit.entries`).Scan(&median, &maxLag); err != nil {
		return fmt.Errorf("read capture delays: %w", err)
	}
	if median != nil && maxLag != nil {
		d.say("    from commit to stored in the trail: %s median, %s at most (captured_at - committed_at)",
			msString(*median), msString(*maxLag))
	}
	return nil
}

func msString(seconds float64) string {
	return fmt.Sprintf("%.0f ms", seconds*1000)
}

// printChecks compares the trail with the database and prints the outcome.
// It returns one line per problem found.
func (d *demo) printChecks(ctx context.Context) ([]string, error) {
	var problems []string
	d.say("\n▸ checking the trail against the database")
	leaked, err := rolledBackEntries(ctx, d.db)
	if err != nil {
		return nil, err
	}
	st := d.shop.stats
	if len(leaked) == 0 {
		d.say("    ✓ rolled-back work is absent: %s and %s left no entry",
			plural(st.rolledBack, "rolled-back transaction"), plural(st.savepoints, "rolled-back savepoint"))
	} else {
		d.say("    ✗ %d entries hold values that only rolled-back work wrote:", len(leaked))
		for _, l := range leaked {
			d.say("        %s", l)
		}
		problems = append(problems, fmt.Sprintf("%d entries come from rolled-back work (listed above)", len(leaked)))
	}
	// The integrity log, as an auditor checks it.
	out, err := d.command(ctx, "verify", "--config", d.cfgPath, "--dsn", d.dsn, "--key", d.signer+".pub")
	last := strings.TrimSpace(out)
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	if err == nil {
		d.say("    ✓ walscribe verify --key %s.pub: %s", filepath.Base(d.signer), last)
	} else {
		d.say("    ✗ walscribe verify --key %s.pub (%v):", filepath.Base(d.signer), err)
		for line := range strings.Lines(out) {
			d.say("        %s", strings.TrimRight(line, "\n"))
		}
		problems = append(problems, "walscribe verify does not find the trail intact (its output is above)")
	}
	for _, t := range shopTables {
		c, err := replayTable(ctx, d.db, t)
		if err != nil {
			return nil, err
		}
		switch {
		case c.skipped != "":
			d.say("    - %s: not replayed (%s)", t, c.skipped)
		case len(c.mismatches) == 0:
			d.say("    ✓ %-12s its %s give back the table as it is now (%s compared)", t, plural(c.entries, "entry"), plural(c.rows, "row"))
		default:
			d.say("    ✗ %-12s its %s do not give back the table (%s compared):", t, plural(c.entries, "entry"), plural(c.rows, "row"))
			for _, m := range c.mismatches {
				d.say("        %s", clip(m, d.width()-8))
			}
			problems = append(problems, fmt.Sprintf("%s: %d rows differ from what the trail says (listed above)", t, len(c.mismatches)))
		}
	}
	return problems, nil
}

// printQueries shows how to query the trail, with ids from this run.
func (d *demo) printQueries(ctx context.Context) error {
	pk, table := `{"id": 1}`, "orders"
	err := d.db.QueryRow(ctx, `SELECT pk::text FROM audit.entries WHERE table_name = 'orders'
		GROUP BY pk ORDER BY count(*) DESC, min(id) LIMIT 1`).Scan(&pk)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read audit.entries: %w", err)
	}
	var xid int64
	err = d.db.QueryRow(ctx, `SELECT xid FROM audit.entries GROUP BY xid
		ORDER BY count(DISTINCT table_name) DESC, count(*) DESC, min(id) LIMIT 1`).Scan(&xid)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read audit.entries: %w", err)
	}
	psql := "psql"
	if _, err := exec.LookPath("psql"); err != nil {
		if p := filepath.Join(pgtest.BinDir, "psql"); isExecutable(p) {
			psql = p
		}
	}
	if d.o.keep {
		d.say("\n▸ query the trail yourself:")
	} else {
		d.say("\n▸ query the trail yourself (run the demo with -keep to keep the server up):")
	}
	d.say("    %s '%s'", psql, d.dsn)
	d.say(`
    -- the history of one row
    SELECT id, committed_at, action, changed, old, new
      FROM audit.entries
     WHERE schema_name = 'public' AND table_name = '%s' AND pk = '%s'
     ORDER BY id;

    -- who deleted orders, and when
    SELECT committed_at, xid, actor_id, actor, db_user, old
      FROM audit.entries
     WHERE schema_name = 'public' AND table_name = 'orders' AND action = 'delete'
     ORDER BY id;

    -- everything one transaction changed
    SELECT seq, table_name, action, pk, changed
      FROM audit.entries
     WHERE xid = %d
     ORDER BY seq;`, table, pk, xid)
	return nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&0o111 != 0
}

// printLogCheck reports the warnings and errors in the daemon's log so far.
// Errors are problems; warnings are shown.
func (d *demo) printLogCheck() []string {
	b, err := os.ReadFile(d.daemon.logPath)
	if err != nil {
		return []string{fmt.Sprintf("cannot read the walscribe log: %v", err)}
	}
	var warns, errs []string
	lines := 0
	for line := range strings.Lines(string(b)) {
		lines++
		fields := strings.Split(stripANSI(strings.TrimRight(line, "\n")), "\t")
		if len(fields) < 2 {
			continue
		}
		switch fields[1] {
		case "WARN":
			warns = append(warns, strings.Join(fields, " "))
		case "ERROR", "DPANIC", "PANIC", "FATAL":
			errs = append(errs, strings.Join(fields, " "))
		}
	}
	if len(warns)+len(errs) == 0 {
		d.say("    ✓ the walscribe log has no warnings or errors (%s)", plural(lines, "line"))
		return nil
	}
	mark := "!" // warnings only: shown, not a failure
	if len(errs) > 0 {
		mark = "✗"
	}
	d.say("    %s the walscribe log has %s and %s (%s):", mark, plural(len(errs), "error"), plural(len(warns), "warning"), d.daemon.logPath)
	for _, l := range append(errs, warns...)[:min(10, len(errs)+len(warns))] {
		d.say("        %s", clip(l, d.width()-8))
	}
	if len(errs) > 0 {
		return []string{fmt.Sprintf("walscribe logged %s (listed above)", plural(len(errs), "error"))}
	}
	return nil
}
