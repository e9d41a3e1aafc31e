package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// variant is one way of auditing the same table.
type variant struct {
	name    string
	context string // the pgbench script's context line, if any
}

// The variants, by name.
const (
	noAudit      = "no audit"
	withWS       = "walscribe"
	withLog      = "walscribe, integrity log on"
	decodingOnly = "logical decoding only"
	withTrigger  = "trigger audit"
)

// wsContext is the context line of the variants with walscribe's bridge.
const wsContext = `SELECT audit.set_context(actor_id => 'user-' || :id, request_id => 'req-' || :id);`

var variants = []variant{
	{name: noAudit},
	{name: withWS, context: wsContext},
	{name: withLog, context: wsContext},
	// walscribe's setup (bridge included) with pg_recvlogical reading the
	// slot to /dev/null instead of walscribe: what PostgreSQL's logical
	// decoding costs the application by itself, whatever the client.
	{name: decodingOnly, context: wsContext},
	{name: withTrigger, context: `SELECT set_config('audit.actor_id', 'user-' || :id, true), set_config('audit.request_id', 'req-' || :id, true);`},
}

// triggerAudit is the classic trigger-based audit.
const triggerAudit = `CREATE TABLE trigger_audit (
	id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), table_name text NOT NULL,
	action text NOT NULL, actor text, request_id text, old jsonb, new jsonb);
CREATE FUNCTION trigger_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO trigger_audit (table_name, action, actor, request_id, old, new)
	VALUES (TG_TABLE_NAME, lower(TG_OP), current_setting('audit.actor_id', true), current_setting('audit.request_id', true),
		CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END, CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
	RETURN NULL;
END $$;
CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE OR DELETE ON accounts
	FOR EACH ROW EXECUTE FUNCTION trigger_audit_row()`

// script is the pgbench transaction: context, an UPDATE and an INSERT.
func (b *bench) script(v variant) string {
	return fmt.Sprintf(`\set id random(1, %d)
BEGIN;
%s
UPDATE accounts SET balance = balance + 1, updated_at = now() WHERE id = :id;
INSERT INTO accounts VALUES (nextval('accounts_new_id'), 'New customer', 'new@example.com', 0,
  ARRAY['tier-0'], ARRAY[1, 2, 3], '{"plan": "free", "seats": 1}', now(), now(), true);
END;
`, b.o.updateRow, v.context)
}

// appCost runs the OLTP workload and the big UPDATE under each variant, in
// -repeat rounds that take the variants in turn, each on a fresh database;
// with walscribe attached, in the last round, it then measures the latency
// at a fixed rate.
func (b *bench) appCost(ctx context.Context) error {
	rounds := make([][]appResult, len(variants))
	for round := range b.o.repeat {
		logf("application cost: round %d of %d", round+1, b.o.repeat)
		for i, v := range variants {
			db := fmt.Sprintf("bench_app_%d", i)
			conn, dsn, err := b.createDB(ctx, db)
			if err != nil {
				return err
			}
			res, err := b.variant(ctx, v, conn, dsn, round == b.o.repeat-1)
			conn.Close(context.WithoutCancel(ctx))
			b.srv.DropDB(db)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			rounds[i] = append(rounds[i], res)
		}
	}
	for _, rs := range rounds {
		b.r.app = append(b.r.app, medianResult(rs))
	}
	return nil
}

// medianBy returns the element of xs whose key is the median (the upper one
// of an even count).
func medianBy[T any](xs []T, key func(T) float64) T {
	sorted := slices.Clone(xs)
	slices.SortFunc(sorted, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return sorted[len(sorted)/2]
}

// medianResult sums up a variant's rounds: for each client count the run
// with the median TPS (its latency with it), the median UPDATE and storing
// times, and the CPU figures of the round whose run with the most clients
// had the median TPS.
func medianResult(rs []appResult) appResult {
	out := appResult{name: rs[0].name}
	pick := func(i int) appResult {
		return medianBy(rs, func(r appResult) float64 { return r.runs[i].tps })
	}
	for i := range rs[0].runs {
		out.runs = append(out.runs, pick(i).runs[i])
		out.roundsTPS = append(out.roundsTPS, nil)
		for _, r := range rs {
			out.roundsTPS[i] = append(out.roundsTPS[i], r.runs[i].tps)
		}
	}
	m := pick(len(rs[0].runs) - 1)
	out.cpu, out.walsenderCPU, out.sinkCPU = m.cpu, m.walsenderCPU, m.sinkCPU
	out.updateSeconds = medianBy(rs, func(r appResult) float64 { return r.updateSeconds }).updateSeconds
	out.storedSeconds = medianBy(rs, func(r appResult) float64 { return r.storedSeconds }).storedSeconds
	return out
}

// variant measures one variant on a fresh database; with latency, it also
// runs the latency measurement when the variant is walscribe.
func (b *bench) variant(ctx context.Context, v variant, conn *pgx.Conn, dsn string, latency bool) (appResult, error) {
	res := appResult{name: v.name}
	if _, err := conn.Exec(ctx, tableDDL); err != nil {
		return res, err
	}
	if _, err := conn.Exec(ctx, insertRows, 1, b.o.updateRow); err != nil {
		return res, err
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE accounts`); err != nil {
		return res, err
	}
	var d *daemon
	switch v.name {
	case withWS, withLog, decodingOnly:
		dc := daemonConfig{dsn: dsn, table: "public.accounts", profile: b.o.pprofDir != ""}
		if v.name == withLog {
			var err error
			if dc.signer, err = signerKey(ctx, b.o.bin, b.dir); err != nil {
				return res, err
			}
		}
		cfg, metricsAddr, err := writeConfig(b.dir, dc)
		if err != nil {
			return res, err
		}
		if err := setupDaemon(ctx, b.o.bin, cfg); err != nil {
			return res, err
		}
		if v.name == decodingOnly {
			stop, err := b.recvlogical(ctx, dsn)
			if err != nil {
				return res, err
			}
			defer stop()
		} else {
			if d, err = startDaemon(b.o.bin, cfg, metricsAddr); err != nil {
				return res, err
			}
			defer d.stop()
		}
		if err := slotActive(ctx, conn, d, "walscribe"); err != nil {
			return res, err
		}
	case withTrigger:
		if _, err := conn.Exec(ctx, triggerAudit); err != nil {
			return res, err
		}
	}
	if _, err := conn.Exec(ctx, `CHECKPOINT`); err != nil {
		return res, err
	}

	for i, clients := range b.o.clients {
		last := i == len(b.o.clients)-1
		run, err := b.oltp(ctx, v, dsn, d, clients, last, &res)
		if err != nil {
			return res, err
		}
		res.runs = append(res.runs, run)
		if d != nil {
			if err := marker(ctx, conn, d, 10*time.Minute); err != nil {
				return res, err
			}
		}
	}

	logf("application cost, %s: UPDATE of %d rows", v.name, b.o.updateRow)
	began := time.Now()
	if _, err := conn.Exec(ctx, `UPDATE accounts SET balance = balance + 1, updated_at = now() WHERE id <= $1`, b.o.updateRow); err != nil {
		return res, err
	}
	res.updateSeconds = time.Since(began).Seconds()
	if d == nil {
		return res, nil
	}
	if err := marker(ctx, conn, d, 30*time.Minute); err != nil {
		return res, err
	}
	res.storedSeconds = time.Since(began).Seconds()
	if !latency || v.name != withWS {
		return res, nil
	}
	return res, b.latency(ctx, v, conn, dsn, d)
}

// oltp runs pgbench with clients clients. With walscribe attached (d) and
// measure set, it also records the CPU time walscribe, its walsender and
// its sink's backend spent, and profiles walscribe when asked to.
func (b *bench) oltp(ctx context.Context, v variant, dsn string, d *daemon, clients int, measure bool, res *appResult) (oltpRun, error) {
	logf("application cost, %s: pgbench -T %s -c %d", v.name, b.o.duration, clients)
	measure = measure && d != nil
	var prof <-chan error
	var walsender, sink <-chan float64
	stop := make(chan struct{})
	var cpu0 float64
	if measure {
		prof = d.profile(int(b.o.duration.Seconds())-1, b.profilePath("oltp"))
		walsender, sink = walsenderCPU(ctx, dsn, "walscribe", stop), sinkCPU(ctx, dsn, stop)
		var err error
		if cpu0, err = cpuSeconds(d.cmd.Process.Pid); err != nil {
			return oltpRun{}, err
		}
	}
	pb, err := b.pgbench(ctx, dsn, v, clients, "-T", strconv.Itoa(int(b.o.duration.Seconds())))
	close(stop)
	if err != nil {
		return oltpRun{}, err
	}
	if measure {
		// CPU seconds spent during the run by walscribe and by the two
		// server processes serving it.
		cpu1, err := cpuSeconds(d.cmd.Process.Pid)
		if err != nil {
			return oltpRun{}, err
		}
		res.cpu, res.walsenderCPU, res.sinkCPU = cpu1-cpu0, <-walsender, <-sink
		if err := <-prof; err != nil {
			return oltpRun{}, err
		}
	}
	return oltpRun{clients: clients, tps: pb.tps, latencyMS: pb.latencyMS}, nil
}

// recvlogical streams the walscribe slot to /dev/null with pg_recvlogical,
// with the options walscribe uses, until stop is called.
func (b *bench) recvlogical(ctx context.Context, dsn string) (stop func(), err error) {
	cmd := exec.Command(filepath.Join(b.o.pgBinDir, "pg_recvlogical"), "-d", dsn, "--start", "-S", "walscribe",
		"-P", "pgoutput", "-o", "proto_version=2", "-o", "streaming=on", "-o", "messages=true",
		"-o", "publication_names=walscribe", "-f", "/dev/null")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pg_recvlogical: %w", err)
	}
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}, nil
}

// latency runs a fixed-rate workload with walscribe attached and reads the
// commit-to-durable latency from the entries and from the daemon's histogram.
func (b *bench) latency(ctx context.Context, v variant, conn *pgx.Conn, dsn string, d *daemon) error {
	r := &b.r.latency
	r.rate = b.o.rate
	before, herr := scrapeHistogram(d.metrics, "walscribe_commit_to_durable_seconds")
	var t0, t1 time.Time
	if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t0); err != nil {
		return err
	}
	logf("latency: pgbench -R %d -T %s with walscribe attached", b.o.rate, b.o.duration)
	pb, err := b.pgbench(ctx, dsn, v, slices.Max(b.o.clients), "-T", strconv.Itoa(int(b.o.duration.Seconds())), "-R", strconv.Itoa(b.o.rate))
	if err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t1); err != nil {
		return err
	}
	r.tps, r.latencyMS = pb.tps, pb.latencyMS
	if err := marker(ctx, conn, d, 10*time.Minute); err != nil {
		return err
	}
	err = conn.QueryRow(ctx, `SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
		(ORDER BY extract(epoch FROM captured_at - committed_at)), max(extract(epoch FROM captured_at - committed_at))
		FROM audit.entries WHERE schema_name = 'public' AND table_name = 'accounts' AND committed_at BETWEEN $1 AND $2`, t0, t1).
		Scan(&r.entries, &r.sqlQuantiles, &r.sqlMax)
	if err != nil {
		return err
	}
	if herr == nil {
		if after, err := scrapeHistogram(d.metrics, "walscribe_commit_to_durable_seconds"); err == nil {
			r.histQuantiles = []float64{quantile(before, after, 0.5), quantile(before, after, 0.95), quantile(before, after, 0.99)}
		}
	}
	if len(r.histQuantiles) == 0 {
		r.histQuantiles = []float64{math.NaN(), math.NaN(), math.NaN()}
	}
	return nil
}

// pgbenchResult is what pgbench reports.
type pgbenchResult struct{ tps, latencyMS float64 }

var (
	tpsRe     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	latencyRe = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

func (b *bench) pgbench(ctx context.Context, dsn string, v variant, clients int, args ...string) (pgbenchResult, error) {
	script := filepath.Join(b.dir, "pgbench.sql")
	if err := os.WriteFile(script, []byte(b.script(v)), 0o600); err != nil {
		return pgbenchResult{}, err
	}
	jobs := min(clients, runtime.NumCPU())
	args = append([]string{"-n", "-f", script, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(jobs)}, args...)
	out, err := exec.CommandContext(ctx, filepath.Join(b.o.pgBinDir, "pgbench"), append(args, dsn)...).CombinedOutput()
	if err != nil {
		return pgbenchResult{}, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	t, l := tpsRe.FindSubmatch(out), latencyRe.FindSubmatch(out)
	if t == nil || l == nil {
		return pgbenchResult{}, fmt.Errorf("pgbench printed no tps or latency:\n%s", out)
	}
	var r pgbenchResult
	r.tps, _ = strconv.ParseFloat(string(t[1]), 64)
	r.latencyMS, _ = strconv.ParseFloat(string(l[1]), 64)
	return r, nil
}
