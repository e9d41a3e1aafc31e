package watch

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
)

// open returns an opened evaluator with short waits between attempts,
// closed at the end of the test.
func open(t *testing.T, cfg Config, deps Deps) (*Evaluator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps.Registerer, deps.Log = reg, zap.NewNop()
	e, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.recordWait, e.webhookWait = 10*time.Millisecond, 10*time.Millisecond
	if err := e.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e, reg
}

func delivered(t *testing.T, reg *prometheus.Registry, watch, target, result string) float64 {
	t.Helper()
	return metricValue(t, reg, "walscribe_watch_deliveries_total", "watch", watch, "target", target, "result", result)
}

// fireOnce observes one entry a match watch fires on.
func fireOnce(e *Evaluator, id int64) {
	e.Observe(id, []*audit.Transaction{txn(t0, del("42"))})
}

func TestWebhookSigned(t *testing.T) {
	secret := "0123456789abcdef-secret"
	type got struct {
		header http.Header
		body   []byte
	}
	ch := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- got{r.Header.Clone(), b}
	}))
	defer srv.Close()
	e, reg := open(t, Config{WebhookSecret: secret, Rules: []Rule{{Name: "m", Kind: Match, Webhook: srv.URL + "/hook?token=x"}}}, Deps{})
	fireOnce(e, 7)
	var g got
	select {
	case g = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the webhook was not called")
	}
	ts := g.header.Get(HeaderTimestamp)
	sig, ok := strings.CutPrefix(g.header.Get(HeaderSignature), "sha256=")
	if !ok || !hmac.Equal([]byte(sig), []byte(Sign([]byte(secret), ts, g.body))) {
		t.Errorf("signature %q does not match the body", g.header.Get(HeaderSignature))
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)) > time.Minute {
		t.Errorf("timestamp %q", ts)
	}
	if g.header.Get(HeaderAlert) != "m:7" || g.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", g.header)
	}
	var a Alert
	if err := json.Unmarshal(g.body, &a); err != nil || a.Watch != "m" || a.EntryID != 7 || a.Kind != Match || !a.At.Equal(t0) {
		t.Errorf("body %s: %+v, %v", g.body, a, err)
	}
	if !strings.Contains(string(g.body), `"sample_ids":[7]`) || !strings.Contains(string(g.body), `"first_id":7`) {
		t.Errorf("body %s: want snake_case keys", g.body)
	}
	waitFor(t, func() bool { return delivered(t, reg, "m", "webhook", "ok") == 1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out")
}

func TestWebhookRetries(t *testing.T) {
	cases := []struct {
		name     string
		statuses []int // answered in turn; the last one from then on
		attempts int32
		result   string
	}{
		{"ok", []int{204}, 1, resultOK},
		{"a 503 then ok", []int{503, 200}, 2, resultOK},
		{"always 500: three attempts", []int{500}, 3, resultFailed},
		{"429 is retried", []int{429, 429, 200}, 3, resultOK},
		{"400 is not retried", []int{400}, 1, resultFailed},
		{"a redirect is not followed", []int{302}, 1, resultFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				w.Header().Set("Location", "/elsewhere")
				w.WriteHeader(c.statuses[min(i, len(c.statuses)-1)])
			}))
			defer srv.Close()
			e, reg := open(t, Config{Rules: []Rule{{Name: "m", Kind: Match, Webhook: srv.URL}}}, Deps{})
			fireOnce(e, 1)
			waitFor(t, func() bool { return delivered(t, reg, "m", "webhook", c.result) == 1 })
			if err := e.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := n.Load(); got != c.attempts {
				t.Errorf("%d attempts, want %d", got, c.attempts)
			}
		})
	}
}

func TestWebhookTimeout(t *testing.T) {
	release := make(chan struct{})
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.ReadAll(r.Body) // so that the server notices the client going
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	e, reg := open(t, Config{Rules: []Rule{{Name: "m", Kind: Match, Webhook: srv.URL, WebhookTimeout: 100 * time.Millisecond}}}, Deps{})
	began := time.Now()
	fireOnce(e, 1)
	waitFor(t, func() bool { return delivered(t, reg, "m", "webhook", "failed") == 1 })
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("three attempts of 100ms took %s", d)
	}
	if n.Load() != webhookAttempts {
		t.Errorf("%d attempts, want %d", n.Load(), webhookAttempts)
	}
}

// A webhook that hangs fills its queue; Observe never waits, the alerts
// past the queue are dropped and counted, and the trail still gets every
// one.
func TestWebhookQueueFull(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		mu.Lock()
		seen = append(seen, r.Header.Get(HeaderAlert))
		mu.Unlock()
	}))
	defer srv.Close()
	rec := &fakeRecorder{}
	e, reg := open(t, Config{QueueSize: 2, Rules: []Rule{{Name: "m", Kind: Match, Webhook: srv.URL, WebhookTimeout: time.Minute}}}, Deps{Recorder: rec})
	fireOnce(e, 1)
	waitFor(t, func() bool { return len(e.hookQ) == 0 && len(rec.got()) == 1 }) // the first is under way
	var waited time.Duration
	for id := int64(2); id <= 6; id++ {
		began := time.Now()
		fireOnce(e, id)
		waited = max(waited, time.Since(began))
		waitFor(t, func() bool { return len(rec.got()) == int(id) })
	}
	if waited > time.Second {
		t.Errorf("Observe took %s with a hanging webhook", waited)
	}
	if v := delivered(t, reg, "m", "webhook", "dropped"); v != 3 {
		t.Errorf("webhook dropped = %v, want 3", v)
	}
	close(release)
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != "m:1 m:2 m:3" {
		t.Errorf("webhook got %v, want m:1 m:2 m:3", seen)
	}
	if v := delivered(t, reg, "m", "webhook", "ok"); v != 3 {
		t.Errorf("webhook ok = %v, want 3", v)
	}
	if v := delivered(t, reg, "m", "record", "ok"); v != 6 {
		t.Errorf("record ok = %v, want 6", v)
	}
}

func TestRecorderFailureIsBounded(t *testing.T) {
	rec := &fakeRecorder{err: errors.New("the sink is down")}
	e, reg := open(t, Config{Rules: []Rule{{Name: "m", Kind: Match}}}, Deps{Recorder: rec})
	fireOnce(e, 1)
	waitFor(t, func() bool { return delivered(t, reg, "m", "record", "failed") == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.calls != recordAttempts {
		t.Errorf("%d attempts, want %d", rec.calls, recordAttempts)
	}
}

// Close delivers what is queued, and within its deadline only.
func TestClose(t *testing.T) {
	rec := &fakeRecorder{}
	e, reg := open(t, Config{Rules: []Rule{{Name: "m", Kind: Match}}}, Deps{Recorder: rec})
	for id := int64(1); id <= 5; id++ {
		fireOnce(e, id)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.got()) != 5 {
		t.Fatalf("%d alerts recorded by Close, want 5", len(rec.got()))
	}
	fireOnce(e, 6)
	if v := delivered(t, reg, "m", "record", "dropped"); v != 1 {
		t.Errorf("an alert after Close: dropped = %v, want 1", v)
	}

	stuck := &fakeRecorder{block: make(chan struct{})}
	e2, reg2 := open(t, Config{Rules: []Rule{{Name: "m", Kind: Match}}}, Deps{Recorder: stuck})
	fireOnce(e2, 1)
	fireOnce(e2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e2.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close past its deadline: %v", err)
	}
	if f, d := delivered(t, reg2, "m", "record", "failed"), delivered(t, reg2, "m", "record", "dropped"); f+d != 2 {
		t.Errorf("failed %v + dropped %v, want 2", f, d)
	}
	if v := testutil.ToFloat64(e2.byName["m"].m.alerts); v != 2 {
		t.Errorf("alerts_total = %v, want 2", v)
	}
}
