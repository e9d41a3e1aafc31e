package watch

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Delivery targets and results, the values of the deliveries metric's
// labels.
const (
	targetRecord  = "record"
	targetWebhook = "webhook"
	resultOK      = "ok"
	resultFailed  = "failed"
	resultDropped = "dropped"
)

// metricSet holds the collectors. Every label value is a configured
// watch's name or a constant: the series are bounded by the configuration.
type metricSet struct {
	alerts     *prometheus.CounterVec // watch
	breaches   *prometheus.GaugeVec   // watch
	groups     *prometheus.GaugeVec   // watch
	evicted    *prometheus.CounterVec // watch
	deliveries *prometheus.CounterVec // watch, target, result
}

// ruleMetrics are one watch's series, resolved once.
type ruleMetrics struct {
	alerts   prometheus.Counter
	breaches prometheus.Gauge
	groups   prometheus.Gauge
	evicted  prometheus.Counter
	delivery map[[2]string]prometheus.Counter // target, result
}

func newMetrics(reg prometheus.Registerer) (*metricSet, error) {
	m := &metricSet{
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walscribe_watch_alerts_total",
			Help: "Alerts fired by each watch: once per breach (alert on increase())."}, []string{"watch"}),
		breaches: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "walscribe_watch_breaches",
			Help: "Groups of each watch in breach now: over the threshold's count in its window, or within a cooldown."}, []string{"watch"}),
		groups: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "walscribe_watch_groups",
			Help: "Groups each windowed watch tracks (bounded by its max_groups)."}, []string{"watch"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walscribe_watch_groups_evicted_total",
			Help: "Groups forgotten while still counting, because the watch tracked max_groups groups: raise max_groups, or suspect a flood of made-up values."}, []string{"watch"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walscribe_watch_deliveries_total",
			Help: "Alert deliveries by target (record: the trail; webhook) and result (ok; failed after its attempts; dropped: the queue was full or walscribe stopping)."},
			[]string{"watch", "target", "result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.alerts, m.breaches, m.groups, m.evicted, m.deliveries} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register watch metrics: %w", err)
		}
	}
	return m, nil
}

// forRule resolves (and so shows, at zero) the series of one watch.
func (m *metricSet) forRule(name string, record, webhook bool) ruleMetrics {
	rm := ruleMetrics{
		alerts:   m.alerts.WithLabelValues(name),
		breaches: m.breaches.WithLabelValues(name),
		groups:   m.groups.WithLabelValues(name),
		evicted:  m.evicted.WithLabelValues(name),
		delivery: map[[2]string]prometheus.Counter{},
	}
	var targets []string
	if record {
		targets = append(targets, targetRecord)
	}
	if webhook {
		targets = append(targets, targetWebhook)
	}
	for _, t := range targets {
		for _, r := range []string{resultOK, resultFailed, resultDropped} {
			rm.delivery[[2]string{t, r}] = m.deliveries.WithLabelValues(name, t, r)
		}
	}
	return rm
}
