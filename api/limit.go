package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// limiter gives each token a token bucket and a bound on its requests in
// flight. Only valid tokens get one, so the map is as large as the number
// of tokens in use.
type limiter struct {
	mu       sync.Mutex
	rate     rate.Limit
	burst    int
	inFlight int // per token
	buckets  map[string]*bucket
}

type bucket struct {
	rate   *rate.Limiter
	flying int
}

// MaxInFlight is how many requests of one token may be answered at once:
// one token cannot take every connection of the pool.
const MaxInFlight = 4

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, inFlight: MaxInFlight, buckets: map[string]*bucket{}}
}

// acquire reports whether a request of token may start now; when it may,
// release must be called once it is answered.
func (l *limiter) acquire(token string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[token]
	if b == nil {
		if len(l.buckets) >= 10000 {
			for k, v := range l.buckets {
				if v.flying == 0 {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{rate: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[token] = b
	}
	if b.flying >= l.inFlight || !b.rate.Allow() {
		return nil, false
	}
	b.flying++
	return func() {
		l.mu.Lock()
		b.flying--
		l.mu.Unlock()
	}, true
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
		// A server made again on the same registry (walscribe run tries
		// again after a failure) counts on the collectors already there.
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(m.requests); errors.As(err, &are) {
			m.requests = are.ExistingCollector.(*prometheus.CounterVec)
		}
		if err := reg.Register(m.duration); errors.As(err, &are) {
			m.duration = are.ExistingCollector.(*prometheus.HistogramVec)
		}
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
