package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// readRun is what the read step measured.
type readRun struct {
	entries     int64   // seeded
	seedSeconds float64 // seeding, VACUUM ANALYZE included
	trailBytes  int64   // pg_total_relation_size of every leaf after the seed
	// writeRate is the rows per second the concurrent UPDATE workload
	// changed, sinkRate the entries per second the sink stored meanwhile
	// (those rows and the reads' own events).
	writeRate, sinkRate float64
	// caughtUp is how long after the writes stopped the sink had stored
	// the last of them; storedP99 the 99th percentile of captured_at -
	// committed_at of the stored writes entries.
	caughtUp, storedP99 float64
	stored              int64
	// countedDays and countSeconds: the days walscribe run counted into
	// the daily counts after its start, and how long that took.
	countedDays  int64
	countSeconds float64
	// ipIndexSeconds is how long the ip index took to build on the trail.
	ipIndexSeconds float64
	kinds          []readKind
}

// readKind is one kind of request and its timings.
type readKind struct {
	name, example string
	target        time.Duration // p99 target
	timings       []time.Duration
	rows          int64 // entries returned, summed (the summary: entries counted)
	counts        bool  // rows are entries counted, not returned
	failed        int
	firstFailure  string
}

// quantile is the nearest-rank quantile q of the timings.
func (k readKind) quantile(q float64) time.Duration {
	if len(k.timings) == 0 {
		return 0
	}
	s := slices.Clone(k.timings)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// The read step's fixed sizes.
const (
	readRequests    = 200 // measured requests of each kind
	readWarmup      = 20  // unmeasured requests of each kind before them
	readSummaries   = 10  // measured summaries
	readAccounts    = 100_000
	readBatchRows   = 100 // rows per UPDATE of the write workload
	readBatchPeriod = 100 * time.Millisecond
	readSeedDays    = 90
	readSeedChunk   = 1_000_000 // entries per INSERT of the seed
	readActors      = 5000
)

// readTables are the seeded trail's tables: most changes go to the first.
var readTables = []string{
	"public.orders", "public.order_items", "public.customers", "public.invoices", "public.payments",
	"public.products", "public.carts", "public.addresses", "public.shipments", "public.reviews",
	"billing.subscriptions", "billing.charges", "billing.refunds", "billing.plans", "billing.coupons",
	"crm.contacts", "crm.notes", "crm.tasks", "crm.deals", "crm.companies",
}

// seedEntries writes entries lo..hi: dense ids in committed_at order from
// $1 (the first's time), $2 apart; five entries per transaction and
// request; rows (about ten entries each over time) of 20 tables, skewed;
// ~5,000 actors, power-law (actor 1 has ~8% of the entries, the last a few
// in a million), 5% without one (jobs: no actor, ip or request); 75%
// updates (one or two changed columns), 20% inserts, 3% deletes, 2% events.
const seedEntries = `INSERT INTO audit.entries (id, commit_lsn, seq, xid, committed_at, captured_at, schema_name, table_name, action,
	pk, old, new, changed, actor_id, actor, ip, user_agent, request_id, db_user, client_addr, application_name, retention_class)
SELECT g, '0/1000000'::pg_lsn + q * 4096, (g - 1) % 5 + 1, 1000 + q, at, at + interval '40 ms', tb[1], tb[2], act,
	jsonb_build_object('id', r), CASE WHEN act IN ('update', 'delete') THEN d END,
	CASE act WHEN 'insert' THEN d WHEN 'update' THEN d || jsonb_build_object(col, CASE col WHEN 'status' THEN to_jsonb('shipped'::text)
			WHEN 'email' THEN to_jsonb('customer' || g || '@example.org') WHEN 'notes' THEN to_jsonb('call first'::text) ELSE to_jsonb(g % 1000) END,
			'updated_at', at)
		WHEN 'delete' THEN NULL ELSE jsonb_build_object('reason', 'support ticket ' || q % 1000, 'fields', jsonb_build_array('email', 'name')) END,
	CASE WHEN act = 'update' THEN CASE WHEN u5 < 0.8 THEN ARRAY[col, 'updated_at'] ELSE ARRAY[col] END END,
	actor::text, 'user' || actor || '@example.com',
	CASE WHEN actor IS NOT NULL THEN ('10.' || actor % 20 || '.' || actor / 20 % 256 || '.' || (1 + floor(u3 * 250))::int)::inet END,
	CASE WHEN actor IS NOT NULL THEN (ARRAY['Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0',
		'Mozilla/5.0 (Macintosh) Firefox/127.0', 'okhttp/4.12.0'])[1 + actor % 3] END,
	CASE WHEN actor IS NOT NULL THEN 'req-' || substr(md5(q::text), 1, 20) END,
	'app', '10.0.0.5'::inet, CASE WHEN actor IS NULL THEN 'worker' ELSE 'web' END, 'default'
FROM generate_series($3::bigint, $4::bigint) g
CROSS JOIN LATERAL (SELECT (g - 1) / 5 AS q, $1::timestamptz + (g - 1) * $2::interval AS at, 1 + floor(random() * $5::bigint)::bigint AS r,
	random() AS ua) e
CROSS JOIN LATERAL (SELECT (hashint8extended(q, 1) & 9007199254740991) / 9007199254740992.0 AS u1,
	(hashint8extended(q, 2) & 9007199254740991) / 9007199254740992.0 AS u2,
	(hashint8extended(q, 3) & 9007199254740991) / 9007199254740992.0 AS u3,
	(hashint8extended(g, 4) & 9007199254740991) / 9007199254740992.0 AS u4,
	(hashint8extended(g, 6) & 9007199254740991) / 9007199254740992.0 AS u5,
	(hashint8extended(r, 5) & 9007199254740991) / 9007199254740992.0 AS ut) h
CROSS JOIN LATERAL (SELECT CASE WHEN u1 < 0.05 THEN NULL ELSE least(floor(exp(u2 * ln($6::float8)))::int, $6::int) END AS actor,
	string_to_array(($7::text[])[1 + floor(ut * ut * 20)::int], '.') AS tb,
	CASE WHEN ua < 0.75 THEN 'update' WHEN ua < 0.95 THEN 'insert' WHEN ua < 0.98 THEN 'delete'
		ELSE (ARRAY['viewed', 'exported', 'login_failed'])[1 + floor((ua - 0.98) * 150)::int] END AS act,
	(ARRAY['status', 'status', 'status', 'amount', 'amount', 'quantity', 'quantity', 'email', 'email', 'notes'])[1 + floor(u4 * 10)::int] AS col) a
CROSS JOIN LATERAL (SELECT jsonb_build_object('id', r, 'status', (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + r % 4],
	'amount', round((r % 100000) * 1.37, 2), 'quantity', r % 12, 'updated_at', at - r % 1000 * interval '1 hour') AS d) x`

// read measures the REST API on a trail of -read entries seeded directly
// into audit.entries, with walscribe run storing a steady UPDATE workload
// beside it: the first page of the list (no filter, then each filter), a
// row's history, an actor's activity, a request, and the 30-day summary,
// one request after the other through HTTP, reads recorded as events.
func (b *bench) read(ctx context.Context) error {
	n := int64(b.o.read)
	if n == 0 {
		logf("read: skipped (-read 0)")
		return nil
	}
	const db = "bench_read"
	conn, dsn, err := b.createDB(ctx, db)
	if err != nil {
		return err
	}
	defer func() {
		conn.Close(context.WithoutCancel(ctx))
		b.srv.DropDB(db)
	}()
	if _, err := conn.Exec(ctx, tableDDL); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, insertRows, 1, readAccounts); err != nil {
		return err
	}
	cfg := filepath.Join(b.dir, "read.yaml")
	spool := filepath.Join(b.dir, "spool-read")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return err
	}
	// A generous statement timeout, so that a slow query is measured
	// rather than cut off; no rate limit worth the name.
	yaml := fmt.Sprintf(`source:
  dsn: %q
tables:
  - name: public.accounts
spool:
  dir: %q
http:
  listen: ""
log:
  format: json
api:
  rate_limit: 10000
  statement_timeout: 2m
`, dsn, spool)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return err
	}
	if err := setupDaemon(ctx, b.o.bin, cfg); err != nil {
		return err
	}
	r := &b.r.read
	r.entries = n
	first, step, err := b.seedTrail(ctx, conn, n)
	if err != nil {
		return err
	}
	// The slot setup made would have walscribe decode the seed's
	// gigabytes of WAL (nothing of it published) before the first change
	// it stores: start it after the seed instead.
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot('walscribe')`); err != nil {
		return err
	}
	if err := setupDaemon(ctx, b.o.bin, cfg); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE accounts`); err != nil {
		return err
	}
	// After the seed: the token's creation is an entry, numbered after it.
	var stdout, stderr bytes.Buffer
	tc := exec.CommandContext(ctx, b.o.bin, "token", "create", "--config", cfg, "--name", "bench reader", "--role", "viewer")
	tc.Stdout, tc.Stderr = &stdout, &stderr
	if err := tc.Run(); err != nil {
		return fmt.Errorf("walscribe token create: %w\n%s", err, stderr.String())
	}
	token := strings.TrimSpace(stdout.String())

	d, err := startDaemon(b.o.bin, cfg, "")
	if err != nil {
		return err
	}
	defer d.stop()
	if err := slotActive(ctx, conn, d, "walscribe"); err != nil {
		return err
	}
	// walscribe run counts the days before today into the daily counts
	// (shortly after its start); the summaries are measured on them.
	countStart := time.Now()
	if err := waitCounted(ctx, conn, d, readSeedDays); err != nil {
		return err
	}
	r.countSeconds = time.Since(countStart).Seconds()
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.daily_days`).Scan(&r.countedDays); err != nil {
		return err
	}
	logf("read: %d days counted by walscribe run in %.0f s", r.countedDays, r.countSeconds)
	api, err := startServe(ctx, b.o.bin, cfg)
	if err != nil {
		return err
	}
	defer api.stop()

	kinds, err := readKinds(ctx, conn, n, first, step)
	if err != nil {
		return err
	}
	var id0, id1 int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(last_id), 0) FROM audit.checkpoints`).Scan(&id0); err != nil {
		return err
	}
	wctx, stopWrites := context.WithCancel(ctx)
	writes := make(chan writeResult, 1)
	go func() { writes <- writeLoad(wctx, dsn) }()
	began := time.Now()
	c := &apiClient{base: api.url, token: token}
	for _, k := range kinds {
		logf("read: %s: %d requests (after %d unmeasured), e.g. %s", k.kind.name, k.n, k.warmup, k.path(0))
		if err := c.measure(ctx, k, api); err != nil {
			stopWrites()
			<-writes
			return err
		}
		rk := k.kind
		logf("read: %s: p50 %s, p99 %s, max %s, %.1f rows a request, %d failed", rk.name, msDur(rk.quantile(0.5)), msDur(rk.quantile(0.99)),
			msDur(slices.Max(rk.timings)), float64(rk.rows)/float64(max(1, len(rk.timings))), rk.failed)
		r.kinds = append(r.kinds, *rk)
	}
	// The ip filter again, with the index sink.ip_index makes setup create.
	for _, k := range kinds {
		if !strings.HasPrefix(k.kind.name, "list, ip=") {
			continue
		}
		began := time.Now()
		if _, err := conn.Exec(ctx, `CREATE INDEX IF NOT EXISTS entries_ip_idx ON audit.entries (ip) WHERE ip IS NOT NULL`); err != nil {
			stopWrites()
			<-writes
			return err
		}
		r.ipIndexSeconds = time.Since(began).Seconds()
		logf("read: the ip index (sink.ip_index) built in %.0f s", r.ipIndexSeconds)
		again := k
		again.kind = &readKind{name: k.kind.name + ", with sink.ip_index", target: k.kind.target, example: k.kind.example}
		if err := c.measure(ctx, again, api); err != nil {
			stopWrites()
			<-writes
			return err
		}
		rk := again.kind
		logf("read: %s: p50 %s, p99 %s, max %s, %.1f rows a request, %d failed", rk.name, msDur(rk.quantile(0.5)), msDur(rk.quantile(0.99)),
			msDur(slices.Max(rk.timings)), float64(rk.rows)/float64(max(1, len(rk.timings))), rk.failed)
		r.kinds = append(r.kinds, *rk)
	}
	stopWrites()
	w := <-writes
	elapsed := time.Since(began).Seconds()
	if w.err != nil {
		return fmt.Errorf("the write workload: %w", w.err)
	}
	if err := d.alive(); err != nil {
		return err
	}
	stopped := time.Now()
	if err := marker(ctx, conn, d, 10*time.Minute); err != nil {
		return err
	}
	r.caughtUp = time.Since(stopped).Seconds()
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(last_id), 0) FROM audit.checkpoints`).Scan(&id1); err != nil {
		return err
	}
	r.writeRate = float64(w.rows) / w.seconds
	r.sinkRate = float64(id1-id0) / (elapsed + r.caughtUp)
	// How long the workload's changes took to be stored while the reads ran.
	err = conn.QueryRow(ctx, `SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM captured_at - committed_at)), count(*)
		FROM audit.entries WHERE committed_at >= $1 AND committed_at < $2 AND schema_name = 'public' AND table_name = 'accounts'
		AND request_id LIKE 'bench-write-%'`, began, stopped).Scan(&r.storedP99, &r.stored)
	if err != nil {
		return err
	}
	logf("read: writes beside the reads: %.0f rows/s for %.0f s; the sink stored %.0f entries/s (p99 commit to stored %s); everything stored %.1f s after the writes stopped",
		r.writeRate, w.seconds, r.sinkRate, msDur(time.Duration(r.storedP99*float64(time.Second))), r.caughtUp)
	return nil
}

// seedTrail writes n entries into audit.entries over the last
// readSeedDays days, then a checkpoint that the sink continues from, and
// returns the first entry's time and the time between two entries.
func (b *bench) seedTrail(ctx context.Context, conn *pgx.Conn, n int64) (time.Time, time.Duration, error) {
	var now time.Time
	if err := conn.QueryRow(ctx, `SELECT date_trunc('second', now())`).Scan(&now); err != nil {
		return now, 0, err
	}
	first := now.Add(-readSeedDays * 24 * time.Hour)
	step := (readSeedDays*24*time.Hour - time.Minute) / time.Duration(max(1, n-1))
	var base int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.entries`).Scan(&base); err != nil {
		return now, 0, err
	}
	if base != 0 {
		return now, 0, fmt.Errorf("audit.entries holds %d entries before the seed; it must be empty", base)
	}
	logf("read: seeding %d entries over the last %d days", n, readSeedDays)
	began := time.Now()
	if _, err := conn.Exec(ctx, `SELECT audit.ensure_partitions($1, $2, ARRAY['default'])`, first, now); err != nil {
		return now, 0, err
	}
	for lo := int64(1); lo <= n; lo += readSeedChunk {
		hi := min(n, lo+readSeedChunk-1)
		if _, err := conn.Exec(ctx, seedEntries, first, step, lo, hi, max(1, n/10), readActors, readTables); err != nil {
			return now, 0, fmt.Errorf("seed entries %d..%d: %w", lo, hi, err)
		}
		logf("read: %d of %d entries written (%s)", hi, n, time.Since(began).Round(time.Second))
	}
	last := first.Add(time.Duration(n-1) * step)
	if _, err := conn.Exec(ctx, `INSERT INTO audit.checkpoints (slot, end_lsn, last_id, committed_at, entries) VALUES ('bench_seed', '0/0', $1, $2, 0)`, n, last); err != nil {
		return now, 0, err
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE audit.entries`); err != nil {
		return now, 0, err
	}
	r := &b.r.read
	r.seedSeconds = time.Since(began).Seconds()
	var heap int64
	err := conn.QueryRow(ctx, `SELECT sum(pg_total_relation_size(relid)), sum(pg_table_size(relid)) FROM pg_partition_tree('audit.entries') WHERE isleaf`).
		Scan(&r.trailBytes, &heap)
	if err != nil {
		return now, 0, err
	}
	logf("read: seeded in %.0f s; the trail takes %d MiB, %.0f bytes an entry: %.0f in the table, %.0f in its indexes", r.seedSeconds, r.trailBytes>>20,
		float64(r.trailBytes)/float64(n), float64(heap)/float64(n), float64(r.trailBytes-heap)/float64(n))
	return first, step, nil
}

// readRequest is one kind of request: its paths, drawn in advance.
type readRequest struct {
	kind       *readKind
	paths      []string
	n, warmup  int
	countField string // "entries" for the summary, else data's length
}

func (k readRequest) path(i int) string { return k.paths[i%len(k.paths)] }

// sample is what the parameters of the requests are drawn from: one
// seeded entry.
type sample struct {
	id                     int64
	table, pk              string
	actorID, requestID, ip *string
	changed                []string
}

// readKinds draws the requests of each kind from entries picked at random
// among the seeded ones: filters from the last 7 days (the list's default
// window), actors and requests from the last 30 (theirs), rows from all.
func readKinds(ctx context.Context, conn *pgx.Conn, n int64, first time.Time, step time.Duration) ([]readRequest, error) {
	rnd := rand.New(rand.NewPCG(1, 2))
	idAt := func(t time.Time) int64 { return min(n, max(1, int64(t.Sub(first)/step)+2)) }
	now := time.Now()
	week, month := idAt(now.Add(-7*24*time.Hour+time.Hour)), idAt(now.Add(-30*24*time.Hour+time.Hour))
	pick := func(lo int64, k int) []int64 {
		ids := make([]int64, k)
		for i := range ids {
			ids[i] = lo + rnd.Int64N(n-lo+1)
		}
		return ids
	}
	ids := append(append(pick(1, 400), pick(month, 1000)...), pick(week, 2000)...)
	rows, err := conn.Query(ctx, `SELECT id, schema_name || '.' || table_name, pk::text, actor_id, request_id, host(ip), changed
		FROM audit.entries WHERE id = ANY ($1) AND committed_at >= $2 AND committed_at <= $3`, ids, first, now)
	if err != nil {
		return nil, err
	}
	byID := map[int64]sample{}
	for rows.Next() {
		var s sample
		var pk *string
		if err := rows.Scan(&s.id, &s.table, &pk, &s.actorID, &s.requestID, &s.ip, &s.changed); err != nil {
			rows.Close()
			return nil, err
		}
		if pk != nil {
			s.pk = *pk
		}
		byID[s.id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var all, inMonth, inWeek []sample
	for i, id := range ids {
		s, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("seeded entry %d is not there", id)
		}
		switch {
		case i < 400:
			all = append(all, s)
		case i < 1400:
			inMonth = append(inMonth, s)
		default:
			inWeek = append(inWeek, s)
		}
	}
	// paths makes up to want paths from the samples for which f gives
	// query values (or a path suffix), skipping those it refuses.
	const want = readRequests + readWarmup
	paths := func(from []sample, f func(s sample) (string, bool)) []string {
		var out []string
		for _, s := range from {
			if p, ok := f(s); ok {
				out = append(out, p)
			}
			if len(out) == want {
				break
			}
		}
		return out
	}
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	list := "/api/v1/entries"
	kinds := []readRequest{
		{kind: &readKind{name: "list, no filter (last 7 days)"}, paths: []string{list}},
		{kind: &readKind{name: "list, table="}, paths: paths(inWeek, func(s sample) (string, bool) { return list + "?" + q("table", s.table), true })},
		{kind: &readKind{name: "list, action=delete"}, paths: []string{list + "?action=delete"}},
		{kind: &readKind{name: "list, actor_id="}, paths: paths(inWeek, func(s sample) (string, bool) {
			return list + "?" + q("actor_id", deref(s.actorID)), s.actorID != nil
		})},
		{kind: &readKind{name: "list, changed="}, paths: paths(inWeek, func(s sample) (string, bool) {
			if len(s.changed) == 0 {
				return "", false
			}
			return list + "?" + q("changed", s.changed[rnd.IntN(len(s.changed))]), true
		})},
		{kind: &readKind{name: "list, ip= (the /24 of an entry's address)"}, paths: paths(inWeek, func(s sample) (string, bool) {
			if s.ip == nil {
				return "", false
			}
			a, err := netip.ParseAddr(*s.ip)
			if err != nil {
				return "", false
			}
			p, _ := a.Prefix(24)
			return list + "?" + q("ip", p.String()), true
		})},
		{kind: &readKind{name: "row history"}, paths: paths(all, func(s sample) (string, bool) {
			return "/api/v1/history?" + q("table", s.table, "pk", s.pk), s.pk != ""
		})},
		{kind: &readKind{name: "actor activity (last 30 days)"}, paths: paths(inMonth, func(s sample) (string, bool) {
			return "/api/v1/actors/" + url.PathEscape(deref(s.actorID)) + "/activity", s.actorID != nil
		})},
		{kind: &readKind{name: "request (last 30 days)"}, paths: paths(inMonth, func(s sample) (string, bool) {
			return "/api/v1/requests/" + url.PathEscape(deref(s.requestID)), s.requestID != nil
		})},
		{kind: &readKind{name: "summary, 30 days"}, paths: []string{"/api/v1/summary?days=30"}, n: readSummaries, warmup: 1, countField: "entries"},
	}
	for i := range kinds {
		k := &kinds[i]
		if len(k.paths) == 0 {
			return nil, fmt.Errorf("%s: no seeded entry to draw its parameters from", k.kind.name)
		}
		if k.n == 0 {
			k.n, k.warmup = readRequests, readWarmup
		}
		k.kind.target = 50 * time.Millisecond
		if k.countField != "" {
			k.kind.target = time.Second
		}
		k.kind.example = k.paths[len(k.paths)-1]
		k.kind.counts = k.countField != ""
	}
	return kinds, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// apiClient sends requests to walscribe serve with a token.
type apiClient struct {
	base, token string
	http        http.Client
}

// measure sends k's requests one after the other and records their times.
func (c *apiClient) measure(ctx context.Context, k readRequest, api *serveProc) error {
	for i := range k.warmup + k.n {
		if err := api.alive(); err != nil {
			return err
		}
		path := k.path(i)
		took, rows, err := c.get(ctx, path, k.countField)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if i < k.warmup {
			continue
		}
		if err != nil {
			k.kind.failed++
			if k.kind.firstFailure == "" {
				k.kind.firstFailure = fmt.Sprintf("%s: %v", path, err)
				logf("read: %s failed: %v", path, err)
			}
			continue
		}
		k.kind.timings = append(k.kind.timings, took)
		k.kind.rows += rows
	}
	if len(k.kind.timings) == 0 {
		return fmt.Errorf("%s: every request failed; the first: %s", k.kind.name, k.kind.firstFailure)
	}
	return nil
}

// get sends one GET and times it until the body is read; rows is the
// length of the answer's data, or its field count when given.
func (c *apiClient) get(ctx context.Context, path, count string) (time.Duration, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	began := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body[:min(len(body), 300)]))
	}
	var page struct {
		Data    []json.RawMessage `json:"data"`
		Entries int64             `json:"entries"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	if count != "" {
		return took, page.Entries, nil
	}
	return took, int64(len(page.Data)), nil
}

// serveProc is a walscribe serve subprocess and its base URL.
type serveProc struct {
	*daemon
	url string
}

// startServe starts walscribe serve on a free port, its log beside its
// configuration, and waits until it answers.
func startServe(ctx context.Context, bin, cfg string) (*serveProc, error) {
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := strings.TrimSuffix(cfg, ".yaml") + "-serve.log"
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfg, "--listen", addr)
	cmd.Env = append(os.Environ(), daemonEnv...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	d := &serveProc{daemon: &daemon{cmd: cmd, logPath: logPath, done: make(chan struct{})}, url: "http://" + addr}
	go func() { d.err = cmd.Wait(); lf.Close(); close(d.done) }()
	err = waitFor(ctx, d.daemon, 30*time.Second, "walscribe serve to answer", func() (bool, error) {
		resp, err := http.Get(d.url + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// writeResult is what the write workload did.
type writeResult struct {
	rows    int64
	seconds float64
	err     error
}

// writeLoad updates readBatchRows rows of accounts every
// readBatchPeriod, each batch one transaction with its actor and request
// id, until ctx is done.
func writeLoad(ctx context.Context, dsn string) writeResult {
	var res writeResult
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		res.err = err
		return res
	}
	defer conn.Close(context.WithoutCancel(ctx))
	t := time.NewTicker(readBatchPeriod)
	defer t.Stop()
	began := time.Now()
	for i := int64(0); ; i++ {
		select {
		case <-ctx.Done():
			res.seconds = time.Since(began).Seconds()
			return res
		case <-t.C:
		}
		lo := 1 + i*readBatchRows%readAccounts
		var rows int64
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT audit.set_context(actor_id => $1, request_id => $2)`, fmt.Sprint(1+i%readActors), fmt.Sprintf("bench-write-%d", i)); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance + 1, updated_at = now() WHERE id BETWEEN $1 AND $2`, lo, lo+readBatchRows-1)
			rows = tag.RowsAffected()
			return err
		})
		switch {
		case err == nil:
			res.rows += rows
		case ctx.Err() == nil:
			res.err = err
			res.seconds = time.Since(began).Seconds()
			return res
		}
	}
}

func msDur(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// waitCounted waits until walscribe run has counted the days days before
// today (at most 30 minutes).
func waitCounted(ctx context.Context, conn *pgx.Conn, d *daemon, days int) error {
	today := time.Now().UTC().Truncate(24 * time.Hour)
	deadline := time.Now().Add(30 * time.Minute)
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.daily_days WHERE day >= $1::date AND day < $2::date`,
			today.AddDate(0, 0, -days).Format(time.DateOnly), today.Format(time.DateOnly)).Scan(&n); err != nil {
			return err
		}
		if n >= days {
			return nil
		}
		if err := d.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("walscribe run counted %d of the %d days before today in 30 minutes", n, days)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
