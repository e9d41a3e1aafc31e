package api

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// limiter gives each token a token bucket. Only valid tokens get one, so
// the map is as large as the number of tokens in use.
type limiter struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	buckets map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*rate.Limiter{}}
}

func (l *limiter) allow(token string) bool {
	l.mu.Lock()
	b := l.buckets[token]
	if b == nil {
		if len(l.buckets) >= 10000 {
			clear(l.buckets)
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[token] = b
	}
	l.mu.Unlock()
	return b.Allow()
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walscribe_api_requests_total",
			Help: "API requests, by operation and status code."}, []string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "walscribe_api_request_duration_seconds",
			Help: "Time to answer an API request, by operation.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}},
			[]string{"operation"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// observe counts a request; op is an operation of the spec (or "unknown",
// "openapi"), so the labels are bounded.
func (m *metrics) observe(op string, code int, d time.Duration) {
	m.requests.WithLabelValues(op, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(op).Observe(d.Seconds())
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return "api-" + hex.EncodeToString(b[:])
}

var _ http.ResponseWriter = (*statusRecorder)(nil)
