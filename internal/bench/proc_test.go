package main

import (
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/walscribe/walscribe/metrics"
)

// TestQuantileFromMetrics scrapes the real walscribe histogram from a
// promhttp handler and checks each estimated quantile lies in the bucket
// that holds the true quantile of the observations.
func TestQuantileFromMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "test")
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	m.CommitToDurable.Observe(100) // before the first scrape: must not count
	before, err := scrapeHistogram(srv.URL, "walscribe_commit_to_durable_seconds")
	if err != nil {
		t.Fatal(err)
	}
	var obs []float64
	for i := 1; i <= 1000; i++ {
		v := float64(i) / 10000 // 0.1 ms .. 100 ms
		obs = append(obs, v)
		m.CommitToDurable.Observe(v)
	}
	after, err := scrapeHistogram(srv.URL, "walscribe_commit_to_durable_seconds")
	if err != nil {
		t.Fatal(err)
	}
	// The histogram's own bucket bounds, as scraped.
	bounds := []float64{0}
	for le := range after {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	for _, tc := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p95", 0.95}, {"p99", 0.99}} {
		t.Run(tc.name, func(t *testing.T) {
			truth := obs[int(tc.q*float64(len(obs)))-1]
			got := quantile(before, after, tc.q)
			for i := 1; i < len(bounds); i++ {
				if truth > bounds[i-1] && truth <= bounds[i] {
					if got < bounds[i-1] || got > bounds[i] {
						t.Errorf("quantile %.2f = %g, want within the bucket (%g, %g] holding the true %g", tc.q, got, bounds[i-1], bounds[i], truth)
					}
					return
				}
			}
			t.Fatalf("true quantile %g outside the test's buckets", truth)
		})
	}
}

// TestProcReadings checks the /proc readings against what the kernel says
// about this process in other files.
func TestProcReadings(t *testing.T) {
	pid := os.Getpid()
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := 0; i < 300_000_000; i++ {
		x += i % 7
	}
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		t.Fatal(err)
	}
	if cpu1 <= cpu0 || x == 0 {
		t.Errorf("CPU seconds %g then %g after a busy loop, want an increase", cpu0, cpu1)
	}
	// The current RSS first: the peak read after it cannot be below it.
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	peak, err := vmHWM(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			rss, _ := strconv.ParseInt(f[1], 10, 64)
			if peak < rss<<10 {
				t.Errorf("peak RSS %d bytes below the current RSS %d KiB", peak, rss)
			}
		}
	}
}

// TestMedianBy: the median element by key, whatever the order, and the upper
// middle one of an even count.
func TestMedianBy(t *testing.T) {
	type round struct {
		name  string
		ratio float64
	}
	key := func(r round) float64 { return r.ratio }
	if got := medianBy([]round{{"a", 0.71}, {"b", 0.47}, {"c", 0.64}}, key); got.name != "c" {
		t.Errorf("median of 0.71, 0.47, 0.64 is round %s, want c (0.64)", got.name)
	}
	if got := medianBy([]round{{"a", 3}, {"b", 1}, {"c", 4}, {"d", 2}}, key); got.name != "a" {
		t.Errorf("median of 3, 1, 4, 2 is round %s, want a (3)", got.name)
	}
	if got := medianBy([]round{{"only", 1}}, key); got.name != "only" {
		t.Errorf("median of one round is %s", got.name)
	}
}
