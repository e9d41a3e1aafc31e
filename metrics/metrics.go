// Package metrics defines walscribe's Prometheus metrics. cmd owns the
// registry; the daemon and the sink update the collectors. Label values
// are bounded: tables, actions, kinds of error, never actors or rows.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the collectors.
type Metrics struct {
	EntriesWritten    *prometheus.CounterVec // schema, table, action
	ChangesDecoded    prometheus.Counter
	Transactions      prometheus.Counter
	Batches           prometheus.Counter
	BatchEntries      prometheus.Histogram
	BatchDuration     prometheus.Histogram
	CommitToDurable   prometheus.Histogram
	LagBytes          prometheus.Gauge
	LagSeconds        prometheus.Gauge
	AcknowledgedLSN   prometheus.Gauge
	SlotRetainedBytes prometheus.Gauge
	SlotWALStatus     *prometheus.GaugeVec // status
	SlotActive        prometheus.Gauge
	UnguardedTables   prometheus.Gauge
	Reconnects        prometheus.Counter
	Errors            *prometheus.CounterVec // kind
	ContextEntries    *prometheus.CounterVec // with_actor
	Gaps              prometheus.Counter
	Spills            prometheus.Counter
	Streaming         prometheus.Gauge
	SinkUp            prometheus.Gauge
	// Integrity: the Merkle log (integrity.enabled).
	IntegrityViolations  prometheus.Counter
	IntegrityCheckpoints prometheus.Counter
	IntegrityTreeSize    prometheus.Gauge
	// RetentionRemoved counts the entries the scheduled cleanups removed.
	RetentionRemoved prometheus.Counter
}

// New registers the collectors on reg, with the Go and process collectors
// and walscribe_build_info.
func New(reg prometheus.Registerer, version string) *Metrics {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{
		EntriesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walscribe_entries_written_total",
			Help: "Audit entries committed to the sink, by table and action."}, []string{"schema", "table", "action"}),
		ChangesDecoded: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_changes_decoded_total",
			Help: "Entries decoded from the replication stream (before the sink; replays included)."}),
		Transactions: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_transactions_total",
			Help: "Source transactions decoded."}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_batches_total",
			Help: "Sink transactions committed."}),
		BatchEntries: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "walscribe_batch_entries",
			Help: "Entries per sink transaction.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		BatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "walscribe_batch_duration_seconds",
			Help: "Time to write and commit one sink transaction.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		CommitToDurable: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "walscribe_commit_to_durable_seconds",
			Help: "From a source transaction's commit to its entries committed in the sink.", Buckets: durableBuckets}),
		LagBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_lag_bytes",
			Help: "WAL the server has written past what the sink holds while anything waits to be stored, or past what the walsender has read for walscribe when that is over 16 MiB behind; 0 when caught up."}),
		LagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_lag_seconds",
			Help: "Age of the oldest committed source change not yet in the sink; 0 when caught up."}),
		AcknowledgedLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_acknowledged_lsn",
			Help: "The position acknowledged to the server (stored in the sink), as a number."}),
		SlotRetainedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_slot_retained_wal_bytes",
			Help: "WAL the server keeps for the slot."}),
		SlotWALStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "walscribe_slot_wal_status",
			Help: "1 for the slot's wal_status (reserved, extended, unreserved, lost, missing)."}, []string{"status"}),
		SlotActive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_slot_active",
			Help: "1 when a process streams the slot."}),
		UnguardedTables: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_unguarded_tables",
			Help: "Published tables whose context trigger is missing, disabled or not ENABLE ALWAYS: their changes lack who made them (walscribe setup repairs it)."}),
		Reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_reconnects_total",
			Help: "Replication sessions started again after a break."}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walscribe_errors_total",
			Help: "Errors, by kind: stream, sink, decode, catalog, gap, data (a transaction the sink stored only after changing its values), no_context (a row change without the bridge's context), invalid_context, retention (a scheduled cleanup failed), export (a scheduled export failed)."}, []string{"kind"}),
		ContextEntries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walscribe_context_entries_total",
			Help: "Entries written, by whether the application named an actor (context coverage)."}, []string{"with_actor"}),
		Gaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_gaps_total",
			Help: "Gaps recorded in the trail (lost, dropped or moved slots)."}),
		Spills: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_spilled_transactions_total",
			Help: "Transactions too large for memory, kept in a file until their commit."}),
		Streaming: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_streaming",
			Help: "1 while a replication session streams."}),
		SinkUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_sink_up",
			Help: "1 when the last sink write succeeded."}),
		IntegrityViolations: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_integrity_violations_total",
			Help: "Times the stored head of the integrity log differed from the daemon's own: the audit tables were altered."}),
		IntegrityCheckpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_integrity_checkpoints_total",
			Help: "Signed checkpoints of the integrity log stored."}),
		IntegrityTreeSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_integrity_tree_size",
			Help: "Entries in the integrity log (its tree size)."}),
		RetentionRemoved: prometheus.NewCounter(prometheus.CounterOpts{Name: "walscribe_retention_removed_entries_total",
			Help: "Expired entries removed by the daemon's scheduled cleanups (retention.schedule), each on the record."}),
	}
	for _, c := range []prometheus.Collector{m.EntriesWritten, m.ChangesDecoded, m.Transactions, m.Batches, m.BatchEntries,
		m.BatchDuration, m.CommitToDurable, m.LagBytes, m.LagSeconds, m.AcknowledgedLSN, m.SlotRetainedBytes, m.SlotWALStatus,
		m.SlotActive, m.UnguardedTables, m.Reconnects, m.Errors, m.ContextEntries, m.Gaps, m.Spills, m.Streaming, m.SinkUp,
		m.IntegrityViolations, m.IntegrityCheckpoints, m.IntegrityTreeSize, m.RetentionRemoved} {
		f(c)
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "walscribe_build_info", Help: "The running version.",
		ConstLabels: prometheus.Labels{"version": version}})
	info.Set(1)
	f(info)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, k := range []string{"stream", "sink", "decode", "invalid_context", "checkpoint_dir", "leaf_hash"} {
		m.Errors.WithLabelValues(k)
	}
	m.ContextEntries.WithLabelValues("true")
	m.ContextEntries.WithLabelValues("false")
	return m
}

// Discard returns metrics registered nowhere, for tests and tools.
func Discard() *Metrics { return New(prometheus.NewRegistry(), "") }

// SetWALStatus sets the slot's wal_status gauge.
func (m *Metrics) SetWALStatus(status string) {
	for _, s := range []string{"reserved", "extended", "unreserved", "lost", "missing"} {
		v := 0.0
		if s == status {
			v = 1
		}
		m.SlotWALStatus.WithLabelValues(s).Set(v)
	}
}

// durableBuckets are the bounds of walscribe_commit_to_durable_seconds:
// fine where a healthy daemon is (tens to hundreds of milliseconds, the
// batch wait included), so that quantiles such as p99 ≤ 250ms can be read
// from them, then coarse up to the minutes of a backlog.
var durableBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
	1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}
