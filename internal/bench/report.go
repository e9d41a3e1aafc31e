package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

type results struct {
	started time.Time
	took    time.Duration
	machine struct {
		cpu, goVersion, pgVersion, walscribe     string
		cores                                    int
		ramBytes                                 int64
		sharedBuffers, fsync, syncCommit, maxWAL string
	}
	drain   []drainRound
	decoder []decoderResult
	app     []appResult
	latency struct {
		rate                   int
		tps, latencyMS, sqlMax float64
		entries                int64
		sqlQuantiles           []float64
		histQuantiles          []float64
	}
	memory struct {
		rows, peakRSS                int64
		updateSeconds, storedSeconds float64
	}
	lifecycle lifecycleRun
	read      readRun
}

// drainRound is one backlog drained three ways.
type drainRound struct {
	walBytes                      int64
	recvSeconds, recvWalsenderCPU float64
	// walscribe with its sink in another database, and in the source
	// database; with the integrity log on, its sink in another database
	other, same, integrity drainRun
	// verifySeconds is walscribe verify of the integrity run's trail.
	verifySeconds float64
}

// drainRun is walscribe draining the backlog.
type drainRun struct {
	seconds, cpu, walsenderCPU, sinkCPU float64
	peakRSS                             int64
}

type appResult struct {
	name string
	runs []oltpRun // one per -clients count, in order
	// roundsTPS are the TPS of every round, per client count.
	roundsTPS                    [][]float64
	updateSeconds, storedSeconds float64
	// walscribe only: CPU seconds during the pgbench run with the most
	// clients.
	cpu, walsenderCPU, sinkCPU float64
}

// oltpRun is one pgbench run.
type oltpRun struct {
	clients        int
	tps, latencyMS float64
}

// cpuInfo reads the CPU model and logical cores from /proc/cpuinfo and the
// memory from /proc/meminfo.
func cpuInfo() (model string, cores int, ram int64) {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			model = strings.TrimSpace(v)
		case "processor":
			cores++
		}
	}
	b, _ = os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			ram = kb << 10
		}
	}
	if model == "" {
		model = "unknown"
	}
	return model, cores, ram
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	if math.IsInf(s, 1) {
		return "> last bucket"
	}
	return fmt.Sprintf("%.1f ms", s*1000)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// markdown is the report: machine, command, tables.
func (r *results) markdown(o options) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	m := r.machine
	p("# Benchmarks")
	p("")
	p("Measured by `make bench` (the program `internal/bench`) against a throwaway PostgreSQL it starts itself. Every figure below comes from one run of it (the drain and the application cost: medians of its rounds); the targets are those of the project, printed beside the figures, not derived from them. What limits each figure, and what can be tuned: [performance.md](performance.md).")
	p("")
	p("## Machine")
	p("")
	p("| | |")
	p("|---|---|")
	p("| date | %s |", r.started.UTC().Format("2006-01-02 15:04 UTC"))
	p("| CPU | %s |", m.cpu)
	p("| logical cores | %d |", m.cores)
	p("| RAM | %.1f GiB |", float64(m.ramBytes)/(1<<30))
	p("| PostgreSQL | %s |", m.pgVersion)
	p("| server settings | shared_buffers %s, max_wal_size %s, fsync %s, synchronous_commit %s, wal_level logical; server, walscribe and pgbench on the same machine |", m.sharedBuffers, m.maxWAL, m.fsync, m.syncCommit)
	p("| Go | %s |", m.goVersion)
	p("| walscribe | %s |", m.walscribe)
	p("| run took | %s |", r.took.Round(time.Second))
	p("")
	p("Command:")
	p("")
	p("```")
	var cs []string
	for _, c := range o.clients {
		cs = append(cs, strconv.Itoa(c))
	}
	cmdline := fmt.Sprintf("go run ./internal/bench -bin %s -changes %d -huge %d -duration %s -rate %d -clients %s -update-rows %d -repeat %d", o.bin, o.changes, o.huge, o.duration, o.rate, strings.Join(cs, ","), o.updateRow, o.repeat)
	if o.steps != allSteps {
		cmdline += " -steps " + o.steps
	}
	if o.gomaxprocs > 0 {
		cmdline += " -gomaxprocs " + strconv.Itoa(o.gomaxprocs)
	}
	if o.runs("read") {
		cmdline += " -read " + strconv.Itoa(o.read)
	}
	p("%s", cmdline)
	p("```")
	p("")

	p("## 1. Drain rate")
	p("")
	if !o.runs("drain") {
		p("Not run (-steps %s).", o.steps)
		p("")
	} else {
		n := float64(o.changes)
		rounds := r.drain
		// The median round by the ratio of the default (same database),
		// so that every figure of a row comes from one run.
		d := medianBy(rounds, func(x drainRound) float64 { return x.recvSeconds / x.same.seconds })
		recvRate := n / d.recvSeconds
		p("A backlog of %d changes (half inserts, then half updates, %d rows per transaction; %d MiB of WAL) on a table with text, numeric, jsonb, arrays and timestamps, written while nothing reads the slots. Then, one after the other, each from its own slot created at the same point: `pg_recvlogical` (pgoutput with walscribe's options: proto_version 2, streaming, messages) to /dev/null, the decoding limit; `walscribe run` into `audit.entries` of another database of the same server; `walscribe run` into `audit.entries` of the source database itself (the default), where the walsender also decodes the sink's own writes, since they are in the same database's WAL. walscribe is timed from its start until `audit.checkpoints` covers the last entry. CPU is user+system from /proc: of the walsender, of walscribe itself, and of the server backend its sink writes through.", o.changes, backlogTxnRows, d.walBytes>>20)
		p("")
		p("%d rounds on fresh databases; the table shows the median round (by the default's ratio), the line after it every round.", len(rounds))
		p("")
		p("| | seconds | changes/s | ratio to pg_recvlogical (target ≥ 0.6) | walsender CPU s | walscribe CPU s | sink backend CPU s | walscribe peak RSS |")
		p("|---|---:|---:|---:|---:|---:|---:|---:|")
		p("| pg_recvlogical → /dev/null (decoding limit) | %.1f | %.0f | 1.00 | %.1f | n/a | n/a | n/a |", d.recvSeconds, recvRate, d.recvWalsenderCPU)
		for _, run := range []struct {
			name string
			r    drainRun
		}{{"walscribe → audit.entries, another database", d.other}, {"walscribe → audit.entries, same database (default)", d.same},
			{"walscribe → audit.entries, another database, integrity log on", d.integrity}} {
			if run.r.seconds == 0 {
				continue
			}
			rate := n / run.r.seconds
			p("| %s | %.1f | %.0f | %.2f | %.1f | %.1f | %.1f | %d MiB |", run.name, run.r.seconds, rate, rate/recvRate, run.r.walsenderCPU, run.r.cpu, run.r.sinkCPU, run.r.peakRSS>>20)
		}
		p("")
		per := func(x float64) float64 { return x / n * 1e6 }
		p("Per entry: pg_recvlogical's walsender %.1f µs; with the sink in another database walsender %.1f µs, walscribe %.1f µs, sink backend %.1f µs; in the same database walsender %.1f µs, walscribe %.1f µs, sink backend %.1f µs. walscribe's own CPU: %.2f s per 100,000 entries (same database).",
			per(d.recvWalsenderCPU), per(d.other.walsenderCPU), per(d.other.cpu), per(d.other.sinkCPU), per(d.same.walsenderCPU), per(d.same.cpu), per(d.same.sinkCPU), d.same.cpu/n*1e5)
		p("")
		var each []string
		for _, x := range rounds {
			each = append(each, fmt.Sprintf("pg_recvlogical %.0f/s, another database %.2f, same database %.2f", n/x.recvSeconds, x.recvSeconds/x.other.seconds, x.recvSeconds/x.same.seconds))
		}
		p("Every round (changes/s of pg_recvlogical, then walscribe's ratios): %s.", strings.Join(each, "; "))
		p("")
		if d.integrity.seconds > 0 {
			var rates []string
			var each []float64
			for _, x := range rounds {
				rates = append(rates, fmt.Sprintf("%.2f", x.other.seconds/x.integrity.seconds))
				each = append(each, x.other.seconds/x.integrity.seconds)
			}
			// The median of its own rounds' ratios: the round shown in the
			// table is the median by another ratio.
			slices.Sort(each)
			p("The integrity log (integrity.enabled, a checkpoint signed every second) drains at %.2f× the rate without it, both into another database (the median of its rounds; target ≥ 0.90; every round: %s). `walscribe verify` of those %d entries took %.1f s: %.1f s per million entries.",
				each[len(each)/2], strings.Join(rates, ", "), o.changes, d.verifySeconds, d.verifySeconds/n*1e6)
			p("")
		}
	}

	p("## 2. Application cost")
	p("")
	if !o.runs("app") {
		p("Not run (-steps %s).", o.steps)
		p("")
		p("## 3. Steady-state latency, commit to durable")
		p("")
		p("Not run (-steps %s).", o.steps)
		p("")
	} else {
		r.appMarkdown(&w, o)
	}
	p("## 4. Memory")
	p("")
	switch {
	case !o.runs("memory"):
		p("Not run (-steps %s).", o.steps)
	case r.memory.rows == 0:
		p("Skipped (-huge 0).")
	default:
		mm := r.memory
		p("One UPDATE of %d rows (int, text, numeric, text[], timestamptz) in one transaction while walscribe runs.", mm.rows)
		p("")
		p("| rows | UPDATE | stored after commit | entries/s | walscribe peak RSS (VmHWM) | target |")
		p("|---:|---:|---:|---:|---:|---|")
		p("| %d | %.1f s | %.1f s | %.0f | %d MiB | ≤ 150 MB |", mm.rows, mm.updateSeconds, mm.storedSeconds, float64(mm.rows)/mm.storedSeconds, mm.peakRSS>>20)
	}
	p("")
	p("## 5. Exports and cleanups")
	p("")
	switch lc := r.lifecycle; {
	case !o.runs("lifecycle"):
		p("Not run (-steps %s).", o.steps)
	case lc.entries == 0:
		p("Skipped (-lifecycle 0).")
	default:
		p("A trail of 2 × %d entries (about 900 bytes each, like the drain's updates) dated three months back, one table with `retention: 1d`, one without a period; `walscribe export` of the first table's month (JSON lines, one ZIP archive) into a directory and into an in-process S3 store (gofakes3, signatures checked, 16 MiB parts), then `walscribe cleanup` removing each table's entries: the first by dropping its month partition, the second with `--table --older-than` (batched DELETE, 50,000 entries a transaction). Every removal is recorded (prune records and pruned entries; integrity off).", lc.entries)
		p("")
		p("| | seconds | entries/s | walscribe peak RSS | WAL written |")
		p("|---|---:|---:|---:|---:|")
		p("| export to a directory (ZIP: %d MiB) | %.1f | %.0f | %d MiB | |", lc.zipBytes>>20, lc.dirSeconds, float64(lc.entries)/lc.dirSeconds, lc.dirRSS>>20)
		p("| export to S3 | %.1f | %.0f | %d MiB | |", lc.s3Seconds, float64(lc.entries)/lc.s3Seconds, lc.s3RSS>>20)
		p("| cleanup: a month partition of %d entries dropped | %.2f | | | %.1f MiB |", lc.entries, lc.dropSeconds, float64(lc.dropWAL)/(1<<20))
		p("| cleanup: %d entries deleted in batches | %.1f | %.0f | | %.0f MiB |", lc.entries, lc.delSeconds, float64(lc.entries)/lc.delSeconds, float64(lc.delWAL)/(1<<20))
	}
	p("")
	p("## 6. Reading the trail: the API")
	p("")
	switch {
	case !o.runs("read"):
		p("Not run (-steps %s).", o.steps)
	case r.read.entries == 0:
		p("Skipped (-read 0).")
	default:
		r.readMarkdown(&w)
	}
	p("")
	p("## 7. Decoder micro-benchmarks")
	p("")
	if !o.runs("decoder") {
		p("Not run (-steps %s).", o.steps)
		return w.String()
	}
	p("`go test -run '^$' -bench Decode -benchmem ./decoder`: one real pgoutput message for a row of 10 columns (bigint, text, varchar, numeric, int, two timestamptz, jsonb, text[], bool) decoded into an entry; an update carries the old row too (REPLICA IDENTITY FULL); `own_tx` adds its BEGIN and COMMIT; `with_rules` applies per-table rules (an excluded column, masked columns). Target: ≤ 2 µs per typical change.")
	p("")
	p("| benchmark | ns/change | bytes/change | allocations/change |")
	p("|---|---:|---:|---:|")
	for _, d := range r.decoder {
		p("| %s | %.0f | %.0f | %.0f |", d.name, d.nsPerOp, d.bytesPerOp, d.allocsPerOp)
	}
	return w.String()
}

// appMarkdown writes sections 2 and 3: the application's cost and the
// latency.
func (r *results) appMarkdown(w *strings.Builder, o options) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("The same table with %d rows, four ways: no audit; walscribe attached (REPLICA IDENTITY FULL, publication, slot, context bridge trigger, `walscribe run` running and storing); the same set-up with `pg_recvlogical` reading the slot to /dev/null instead of walscribe (what PostgreSQL's logical decoding costs by itself, with nothing stored); a classic trigger audit (an AFTER row trigger inserting `to_jsonb(OLD)`, `to_jsonb(NEW)`, the actor and the request id into a table). pgbench runs for %s with a transaction of: the context, actor and request id (`SELECT audit.set_context(actor_id => …, request_id => …)` with walscribe's bridge, `SELECT set_config('audit.actor_id', …), set_config('audit.request_id', …)` for the trigger, nothing without audit), an UPDATE of a random row and an INSERT; once per client count. Then one UPDATE of all %d rows.", o.updateRow, o.duration, o.updateRow)
	p("")
	head, rule := "| variant |", "|---|"
	for _, c := range o.clients {
		head += fmt.Sprintf(" TPS, %d client%s | avg latency | vs no audit |", c, plural(c))
		rule += "---:|---:|---:|"
	}
	p("%d rounds, each taking the variants in turn on fresh databases; the table shows the medians, the lines after it every round's TPS.", o.repeat)
	p("")
	p("%s UPDATE %d rows | vs no audit |", head, o.updateRow)
	p("%s---:|---:|", rule)
	find := func(name string) appResult {
		for _, a := range r.app {
			if a.name == name {
				return a
			}
		}
		return appResult{}
	}
	base, ws, trig, dec, wl := find(noAudit), find(withWS), find(withTrigger), find(decodingOnly), find(withLog)
	tps := func(a appResult, i int) float64 {
		if i < len(a.runs) {
			return a.runs[i].tps
		}
		return 0
	}
	for _, a := range r.app {
		line := "| " + a.name + " |"
		for i, run := range a.runs {
			line += fmt.Sprintf(" %.0f | %.2f ms | %s |", run.tps, run.latencyMS, ratio(run.tps, tps(base, i)))
		}
		p("%s %.2f s | %s |", line, a.updateSeconds, ratio(a.updateSeconds, base.updateSeconds))
	}
	p("")
	for i, c := range o.clients {
		var each []string
		for _, a := range r.app {
			if i < len(a.roundsTPS) {
				var xs []string
				for _, x := range a.roundsTPS[i] {
					xs = append(xs, fmt.Sprintf("%.0f", x))
				}
				each = append(each, a.name+" "+strings.Join(xs, ", "))
			}
		}
		p("- TPS of every round, %d client%s: %s.", c, plural(c), strings.Join(each, "; "))
	}
	p("")
	p("Targets: the UPDATE with walscribe within 1.2× of no audit (measured %s) and at least 2.5× faster than the trigger audit (measured: the trigger audit takes %s as long); OLTP TPS with walscribe at least that of the trigger audit:", ratio(ws.updateSeconds, base.updateSeconds), ratio(trig.updateSeconds, ws.updateSeconds))
	p("")
	for i, c := range o.clients {
		p("- %d client%s: walscribe %s the trigger audit's TPS; logical decoding alone (pg_recvlogical) %s; walscribe %s of logical decoding alone.", c, plural(c), ratio(tps(ws, i), tps(trig, i)), ratio(tps(dec, i), tps(trig, i)), ratio(tps(ws, i), tps(dec, i)))
	}
	p("")
	for i, c := range o.clients {
		p("- %d client%s: with the integrity log on, %s of walscribe's TPS without it (target ≥ 0.90).", c, plural(c), ratio(tps(wl, i), tps(ws, i)))
	}
	p("")
	p("walscribe had stored the %d entries of the UPDATE %.1f s after it started (%.1f s with the integrity log on).", o.updateRow, ws.storedSeconds, wl.storedSeconds)
	if n := len(ws.runs); n > 0 {
		last := ws.runs[n-1]
		p("During the %s pgbench run with walscribe and %d clients (%d cores: %.0f CPU seconds to share), walscribe used %.1f CPU seconds, its walsender %.1f and the sink's backend %.1f: %.0f, %.0f and %.0f µs per transaction.",
			o.duration, last.clients, r.machine.cores, o.duration.Seconds()*float64(r.machine.cores), ws.cpu, ws.walsenderCPU, ws.sinkCPU,
			ws.cpu/(last.tps*o.duration.Seconds())*1e6, ws.walsenderCPU/(last.tps*o.duration.Seconds())*1e6, ws.sinkCPU/(last.tps*o.duration.Seconds())*1e6)
	}
	p("")

	l := r.latency
	p("## 3. Steady-state latency, commit to durable")
	p("")
	p("pgbench -R %d -T %s -c %d (same script, walscribe attached): %.0f TPS achieved, average latency %.2f ms, %d entries. From the entries: `captured_at - committed_at` (captured_at is the start of the sink transaction that stored them, so slightly before durable). From the daemon: `walscribe_commit_to_durable_seconds` (histogram, interpolated within buckets).", l.rate, o.duration, slices.Max(o.clients), l.tps, l.latencyMS, l.entries)
	p("")
	p("| | p50 | p95 | p99 | max | target p99 |")
	p("|---|---:|---:|---:|---:|---|")
	if len(l.sqlQuantiles) == 3 {
		p("| entries (SQL) | %s | %s | %s | %s | ≤ 250 ms |", ms(l.sqlQuantiles[0]), ms(l.sqlQuantiles[1]), ms(l.sqlQuantiles[2]), ms(l.sqlMax))
	}
	if len(l.histQuantiles) == 3 {
		p("| walscribe_commit_to_durable_seconds | %s | %s | %s | | ≤ 250 ms |", ms(l.histQuantiles[0]), ms(l.histQuantiles[1]), ms(l.histQuantiles[2]))
	}
	p("")
}

// readMarkdown writes section 6: the API's reads.
func (r *results) readMarkdown(w *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	rd := r.read
	p("A trail of %d entries (%.1f GiB with its indexes, %.0f bytes an entry) written straight into `audit.entries` by set-based INSERTs, %.0f s with VACUUM ANALYZE, over the last %d days: dense ids in commit order; 20 tables in 3 schemas, skewed; rows of about ten entries each; 75%% updates (one or two changed columns), 20%% inserts, 3%% deletes, 2%% events; %d actor ids with a power-law spread (the busiest has 8%% of the entries), 5%% of entries without an actor; five entries a request.",
		rd.entries, float64(rd.trailBytes)/(1<<30), float64(rd.trailBytes)/float64(rd.entries), rd.seedSeconds, readSeedDays, readActors)
	p("")
	p("`walscribe serve` (api.pool_size default; api.rate_limit raised to 10000, api.statement_timeout to 2m, so that a slow query is timed rather than cut off) answers one request at a time over HTTP with a viewer token, recording every read as an event through `log_event`. Meanwhile `walscribe run` stores a steady UPDATE workload on a tracked table: %.0f rows/s in %d-row transactions with an actor and a request id; the sink stored %.0f entries/s (those rows and the reads' events), 99%% of the rows within %s of their commit, and everything %.1f s after the writes stopped.",
		rd.writeRate, readBatchRows, rd.sinkRate, ms(rd.storedP99), rd.caughtUp)
	p("")
	p("Each kind's parameters are drawn from entries picked at random: filters from the last 7 days (the list's default window), actors and requests from the last 30 days (theirs), rows from the whole trail; %d measured requests of each kind follow %d unmeasured ones (the summary: %d after one). Times are the client's, from sending the request to reading the whole body. Targets: p99 ≤ 50 ms for a first page, ≤ 1 s for the 30-day summary.",
		readRequests, readWarmup, readSummaries)
	p("")
	if rd.ipIndexSeconds > 0 {
		p("After the others, the index `sink.ip_index: true` makes setup create (a partial B-tree on `ip`; off by default, as it costs every entry written) was built on the trail (%.0f s) and the ip filter measured again.", rd.ipIndexSeconds)
		p("")
	}
	p("Before the measurements, `walscribe run` counted the %d days before today into the daily counts (`audit.daily_counts`, what a summary of whole days reads) in %.0f s; a summary reads the rest of its window (today so far, and the part of its first day) from the entries.", rd.countedDays, rd.countSeconds)
	p("")
	p("| request | requests | p50 | p99 | max | entries a response | target p99 | met |")
	p("|---|---:|---:|---:|---:|---:|---|---|")
	for _, k := range rd.kinds {
		met := "yes"
		if k.quantile(0.99) > k.target || k.failed > 0 {
			met = "**no**"
		}
		rows := fmt.Sprintf("%.1f", float64(k.rows)/float64(max(1, len(k.timings))))
		if k.counts {
			rows = fmt.Sprintf("%.0f counted", float64(k.rows)/float64(max(1, len(k.timings))))
		}
		if k.failed > 0 {
			rows += fmt.Sprintf(" (%d failed)", k.failed)
		}
		target := fmt.Sprintf("≤ %d ms", k.target.Milliseconds())
		if k.target >= time.Second {
			target = fmt.Sprintf("≤ %.0f s", k.target.Seconds())
		}
		p("| %s: `%s` | %d | %s | %s | %s | %s | %s | %s |", k.name, strings.ReplaceAll(k.example, "|", "%7C"), len(k.timings),
			msDur(k.quantile(0.5)), msDur(k.quantile(0.99)), msDur(slices.Max(k.timings)), rows, target, met)
	}
}
