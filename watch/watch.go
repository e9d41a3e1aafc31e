package watch

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
)

// DefaultQueueSize is the default of Config.QueueSize.
const DefaultQueueSize = 1024

// Config is the watches and how their alerts are delivered.
type Config struct {
	// Rules are the watches (the configuration file's watches list).
	Rules []Rule
	// QueueSize bounds the alerts waiting for each target (the trail, the
	// webhooks); alerts beyond it are dropped and counted. Default 1024.
	QueueSize int
	// WebhookSecret signs the webhook requests of rules that set no
	// webhook_secret: at least 16 characters. Default "" (unsigned).
	WebhookSecret string
}

// Validate reports every problem of the configuration, one per line, each
// naming its key and saying how to fix it: watches[i].<key> for the rules,
// watch_queue_size and watch_webhook_secret for the rest (the keys cmd
// maps them from); nil when there is none.
func (c *Config) Validate() error {
	var errs []error
	for _, p := range Problems("watches", c.Rules) {
		errs = append(errs, p)
	}
	if c.QueueSize < 0 {
		errs = append(errs, Problem{"watch_queue_size", fmt.Sprintf("%d: use 0 for the default (1024) or more", c.QueueSize)})
	}
	if c.WebhookSecret != "" && len(c.WebhookSecret) < minSecret {
		errs = append(errs, Problem{"watch_webhook_secret", fmt.Sprintf("too short (%d characters): use at least 16 random characters, e.g. $(openssl rand -hex 32)", len(c.WebhookSecret))})
	}
	return errors.Join(errs...)
}

// Recorder writes an entry of walscribe's own into the trail: the
// PostgreSQL sink's Record (sink.(*Postgres).Record), on a sink of its own —
// not the one the daemon writes batches with.
type Recorder interface {
	Record(ctx context.Context, table, action string, detail any) (int64, error)
}

// Deps are what an Evaluator uses besides its Config; every one may be
// left zero.
type Deps struct {
	// Log is named "watch"; nil logs nothing.
	Log *zap.Logger
	// Registerer takes the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Recorder records alerts in the trail; nil records none.
	Recorder Recorder
	// HTTPClient posts to webhooks; nil: a client of the evaluator's own,
	// which follows no redirects.
	HTTPClient *http.Client
	// Now is the wall clock (alerts' FiredAt, signatures); nil: time.Now.
	Now func() time.Time
}

// rule is a compiled watch.
type rule struct {
	Rule   // normalized
	f      filter
	sched  *schedule           // outside_hours
	tr     *tracker            // with a window (threshold) or a cooldown
	perTx  map[groupKey]*Alert // without: the groups fired by the transaction being observed
	limit  int64
	window time.Duration // shown in alerts
	secret []byte
	m      ruleMetrics
	active bool  // the transaction being observed is one the watch looks at
	slot   int64 // its bucket, with a tracker
}

// Evaluator evaluates the watches over the entries stored, and delivers
// their alerts. Observe may be called from one goroutine at a time; the
// other methods from any.
type Evaluator struct {
	log       *zap.Logger
	rules     []*rule
	byName    map[string]*rule
	rec       Recorder
	client    *http.Client
	now       func() time.Time
	seed      maphash.Seed
	queueSize int
	// Waits between attempts (tests shorten them) and between updates of
	// the gauges.
	recordWait, webhookWait, sweepEvery time.Duration

	mu        sync.Mutex
	opened    bool
	closed    bool
	tables    map[tableKey][]int
	lastTable tableKey
	lastRules []int
	lastOK    bool
	scratch   []int
	clock     time.Time // the newest commit time observed
	clockWall time.Time // when it was observed
	pending   []*Alert  // fired by the batch being observed
	skipped   *Alert    // marks a group fired whose alert was dropped
	dropLog   map[string]time.Time
	dropCount map[string]int

	recordQ, hookQ chan *Alert
	stopSweep      chan struct{}
	workCtx        context.Context
	cancelWork     context.CancelFunc
	wg             sync.WaitGroup
}

// New compiles the watches; it checks cfg first (see Config.Validate). It
// does no network or database I/O (time zones are read from the system's
// zone database); Open starts the delivery.
func New(cfg Config, deps Deps) (*Evaluator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Evaluator{
		log: deps.Log, rec: deps.Recorder, client: deps.HTTPClient, now: deps.Now, seed: maphash.MakeSeed(),
		queueSize: cfg.QueueSize, byName: map[string]*rule{}, tables: map[tableKey][]int{},
		recordWait: time.Second, webhookWait: time.Second, sweepEvery: time.Second,
		skipped: &Alert{}, dropLog: map[string]time.Time{}, dropCount: map[string]int{}, stopSweep: make(chan struct{}),
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	e.log = e.log.Named("watch")
	if e.now == nil {
		e.now = time.Now
	}
	if e.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		e.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if e.queueSize == 0 {
		e.queueSize = DefaultQueueSize
	}
	e.recordQ, e.hookQ = make(chan *Alert, e.queueSize), make(chan *Alert, e.queueSize)
	for _, r := range cfg.Rules {
		r = r.Normalized()
		f, err := newFilter(r)
		if err != nil {
			return nil, err
		}
		c := &rule{Rule: r, f: f, m: m.forRule(r.Name, e.rec != nil, r.Webhook != "")}
		switch {
		case r.Kind == Threshold:
			c.limit, c.window = int64(r.Count), r.Window
			c.tr = newTracker(c.limit, r.Window, r.MaxGroups)
		case r.Cooldown > 0:
			c.window = r.Cooldown
			c.tr = newTracker(0, r.Cooldown, r.MaxGroups)
		default:
			c.perTx = map[groupKey]*Alert{}
		}
		if r.Kind == OutsideHours {
			if c.sched, err = newSchedule(r.Hours, r.Days, r.TimeZone); err != nil {
				return nil, err
			}
		}
		c.secret = []byte(orDefault(r.WebhookSecret, cfg.WebhookSecret))
		e.rules = append(e.rules, c)
		e.byName[r.Name] = c
	}
	return e, nil
}

// Observe evaluates a batch the sink has committed: its transactions in
// the order written, their entries numbered from firstID (the id the sink
// gave the batch's first entry). Transactions without entries, and records
// of the rules, hold no entries and take no ids. A spilled transaction is
// read again from its file (so Observe must be called before the sink
// closes it). Observe does no network or database I/O and never waits for
// a delivery: alerts go to queues. It allocates nothing for entries no
// watch looks at.
func (e *Evaluator) Observe(firstID int64, batch []*audit.Transaction) {
	if len(e.rules) == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id := firstID
	advanced := false
	for _, tx := range batch {
		n := int64(tx.Len())
		if n == 0 || tx.Rules != nil {
			continue
		}
		if tx.CommittedAt.After(e.clock) {
			e.clock, advanced = tx.CommittedAt, true
		}
		if e.beginTx(tx) {
			if tx.Spilled != nil {
				e.observeSpilled(tx, id)
			} else {
				for i := range tx.Entries {
					e.entry(tx, &tx.Entries[i], id+int64(i))
				}
			}
			e.endTx()
		}
		id += n
	}
	if advanced {
		e.clockWall = e.now()
	}
	e.endBatch()
}

func (e *Evaluator) observeSpilled(tx *audit.Transaction, firstID int64) {
	if err := tx.Spilled.Rewind(); err != nil {
		e.log.Error("a spilled transaction could not be read again: the watches skip it", zap.Uint32("xid", tx.Xid), zap.Error(err))
		return
	}
	for id := firstID; ; id++ {
		en, err := tx.Spilled.Next()
		if err != nil {
			e.log.Error("a spilled transaction could not be read again: the watches skip the rest of it", zap.Uint32("xid", tx.Xid), zap.Error(err))
			return
		}
		if en == nil {
			return
		}
		e.entry(tx, en, id)
	}
}

// beginTx sets which watches look at tx (outside_hours: committed outside
// the hours) and its bucket; it reports whether any does.
func (e *Evaluator) beginTx(tx *audit.Transaction) bool {
	some := false
	for _, r := range e.rules {
		r.active = r.sched == nil || !r.sched.inside(tx.CommittedAt)
		if r.tr != nil {
			r.slot = r.tr.slot(tx.CommittedAt)
		}
		some = some || r.active
	}
	return some
}

// entry evaluates one entry, id.
func (e *Evaluator) entry(tx *audit.Transaction, en *audit.Entry, id int64) {
	for _, i := range e.tableRules(en.Schema, en.Table) {
		r := e.rules[i]
		if !r.active || !r.f.matchEntry(en) {
			continue
		}
		k := keyOf(r.By, en, e.seed)
		if r.tr != nil {
			e.tracked(r, tx, en, id, k)
		} else {
			e.perTransaction(r, tx, en, id, k)
		}
	}
}

// tracked counts an entry of a windowed watch, and fires when its group's
// count passes the limit while the group is armed.
func (e *Evaluator) tracked(r *rule, tx *audit.Transaction, en *audit.Entry, id int64, k groupKey) {
	g, created := r.tr.get(k, r.slot)
	if created {
		g.label = labelOf(r.By, en)
	}
	g.advance(r.slot)
	if g.breached && g.total <= r.limit {
		g.breached = false // the breach is over: re-armed
		r.tr.inBreach--
	}
	g.add(id)
	switch {
	case !g.breached && g.total > r.limit:
		g.breached = true
		r.tr.inBreach++
		if a := e.fire(r, tx, en, id, g.label); a != nil {
			a.FirstID = g.first()
			a.Sample = g.sample(a.FirstID)
			a.Count = g.total
			a.g, g.alert = g, a
		}
	case g.alert != nil:
		g.alert.Count, g.alert.LastID = g.total, id
	}
}

// overflowKey is the group of a transaction's entries past max_groups
// groups, for a watch without a window.
var overflowKey = groupKey{a: "\x00more groups"}

// perTransaction counts an entry of a watch without a window: the first of
// its group in the transaction fires.
func (e *Evaluator) perTransaction(r *rule, tx *audit.Transaction, en *audit.Entry, id int64, k groupKey) {
	a, ok := r.perTx[k]
	if !ok && len(r.perTx) >= r.MaxGroups {
		k = overflowKey
		a, ok = r.perTx[k]
	}
	if !ok {
		label := "(more groups)"
		if k != overflowKey {
			label = labelOf(r.By, en)
		}
		if a = e.fire(r, tx, en, id, label); a == nil {
			a = e.skipped
		}
		r.perTx[k.owned()] = a
	}
	if a == e.skipped {
		return
	}
	a.Count++
	a.LastID = id
	if len(a.Sample) < sampleSize {
		a.Sample = append(a.Sample, id)
	}
}

// fire counts an alert and returns it to be filled in and delivered at the
// end of the batch; nil when the batch already fired as many as a queue
// holds (it is counted as dropped).
func (e *Evaluator) fire(r *rule, tx *audit.Transaction, en *audit.Entry, id int64, label string) *Alert {
	r.m.alerts.Inc()
	if len(e.pending) >= e.queueSize {
		e.dropped(r, "")
		return nil
	}
	a := &Alert{ID: alertID(r.Name, id), Watch: r.Name, Kind: r.Kind, Description: r.Description, By: r.By, Group: label,
		Limit: r.limit, Window: r.window, EntryID: id, FirstID: id, LastID: id,
		Table: en.Schema + "." + en.Table, Action: string(en.Action), Xid: tx.Xid, At: tx.CommittedAt, FiredAt: e.now()}
	e.pending = append(e.pending, a)
	return a
}

func (e *Evaluator) endTx() {
	for _, r := range e.rules {
		if r.perTx != nil && len(r.perTx) > 0 {
			clear(r.perTx)
		}
	}
}

// endBatch hands the batch's alerts to the queues and forgets the groups
// whose window has passed.
func (e *Evaluator) endBatch() {
	for i, a := range e.pending {
		if a.g != nil {
			if a.g.alert == a {
				a.g.alert = nil
			}
			a.g = nil
		}
		e.enqueue(a)
		e.pending[i] = nil
	}
	e.pending = e.pending[:0]
	if cap(e.pending) > 4*DefaultQueueSize {
		e.pending = nil
	}
	for _, r := range e.rules {
		if r.tr == nil {
			continue
		}
		r.tr.expire(r.tr.slot(e.clock))
		if r.tr.evicted > 0 {
			r.m.evicted.Add(float64(r.tr.evicted))
			r.tr.evicted = 0
		}
	}
}

// sweep sets the gauges: the groups tracked, and those in breach as of
// now, which is the newest commit time observed moved on by the time
// since (a watch stays in breach on an idle database only until its
// window has passed).
func (e *Evaluator) sweep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock
	if !now.IsZero() {
		now = now.Add(max(0, e.now().Sub(e.clockWall)))
	}
	for _, r := range e.rules {
		if r.tr == nil {
			continue
		}
		r.m.groups.Set(float64(len(r.tr.groups)))
		r.m.breaches.Set(float64(r.tr.breaches(r.tr.slot(now))))
	}
}
