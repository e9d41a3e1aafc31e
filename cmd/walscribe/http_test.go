package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/daemon"
	"github.com/walscribe/walscribe/internal/faultproxy"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/sink"
)

// scrape returns the sum of each metric's samples, by name.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}

func readyz(t *testing.T, base string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// TestMetricsAndHealth scrapes a running walscribe: the counters move with
// a workload, the lag gauges fall to zero when it has caught up, and
// /readyz turns not ready while the source is unreachable and ready again
// after.
func TestMetricsAndHealth(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	proxy, err := faultproxy.Start(fmt.Sprintf("%s:%d", srv.Host, srv.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	viaProxy := strings.Replace(dsn, fmt.Sprintf(":%d/", srv.Port), fmt.Sprintf(":%d/", proxy.Addr().Port), 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr
	yaml := strings.Replace(configFor(viaProxy, "public.t"), "listen: \"\"", "listen: "+addr, 1)
	cfg := writeConfig(t, yaml)
	setUp(t, cfg)
	startRun(t, cfg, nil)
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		eventually(t, what, 45*time.Second, cond)
	}
	waitUntil("ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	before := scrape(t, base)
	for _, name := range []string{"walscribe_build_info", "walscribe_streaming", "walscribe_sink_up"} {
		if before[name] != 1 {
			t.Errorf("%s = %v, want 1", name, before[name])
		}
	}
	conn := pgtest.Connect(t, dsn)
	ctx := context.Background()
	for i := range 50 {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT audit.set_context(actor_id => 'u')`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO t VALUES ($1, 'x')`, i); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `UPDATE t SET v = 'y'`); err != nil {
		t.Fatal(err)
	}
	waitUntil("100 entries counted", func() bool {
		return scrape(t, base)["walscribe_entries_written_total"]-before["walscribe_entries_written_total"] >= 100
	})
	after := scrape(t, base)
	for name, least := range map[string]float64{
		"walscribe_transactions_total":              51,
		"walscribe_batches_total":                   1,
		"walscribe_commit_to_durable_seconds_count": 51,
		"walscribe_context_entries_total":           100,
		"walscribe_acknowledged_lsn":                1,
	} {
		if got := after[name] - before[name]; got < least && name != "walscribe_acknowledged_lsn" {
			t.Errorf("%s moved by %v, want at least %v", name, got, least)
		}
	}
	if after["walscribe_acknowledged_lsn"] <= before["walscribe_acknowledged_lsn"] {
		t.Error("walscribe_acknowledged_lsn did not move")
	}
	waitUntil("the lag to fall to zero", func() bool {
		m := scrape(t, base)
		return m["walscribe_lag_bytes"] == 0 && m["walscribe_lag_seconds"] == 0
	})

	proxy.Cut()
	waitUntil("not ready while the source is down", func() bool {
		code, _ := readyz(t, base)
		return code == http.StatusServiceUnavailable
	})
	_, body := readyz(t, base)
	if reason, _ := body["reason"].(string); !strings.Contains(reason, "source") {
		t.Errorf("/readyz reason %q does not name the source", reason)
	}
	proxy.Restore()
	waitUntil("ready again", func() bool {
		code, _ := readyz(t, base)
		return code == http.StatusOK
	})
	if scrape(t, base)["walscribe_reconnects_total"] < 1 {
		t.Error("walscribe_reconnects_total did not count the reconnect")
	}
	// status asks the daemon too: it is running, ready, and its last error
	// is the break.
	out, code := walscribe(t, "status", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("status: %s", out)
	}
	var st struct {
		Daemon struct {
			Reachable, Ready bool
			LastError        string `json:"last_error"`
		} `json:"daemon"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if !st.Daemon.Reachable || !st.Daemon.Ready || !strings.Contains(st.Daemon.LastError, "stream") {
		t.Errorf("status of the daemon: %+v", st.Daemon)
	}
	if out, _ := walscribe(t, "status", "--config", cfg); !strings.Contains(out, "walscribe run") || !strings.Contains(out, "last error") {
		t.Errorf("status output lacks the daemon's state:\n%s", out)
	}
}

// TestPprofOnlyWhenAsked: the profiler is served under /debug/pprof/ with
// http.pprof, and not at all without it.
func TestPprofOnlyWhenAsked(t *testing.T) {
	d := daemon.New(daemon.Config{SourceDSN: "postgres://localhost/none"}, sink.NewPostgres(sink.Config{}, zap.NewNop()), zap.NewNop())
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("pprof=", on), func(t *testing.T) {
			srv := httptest.NewServer(newHTTP(prometheus.NewRegistry(), d, on))
			defer srv.Close()
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
				resp, err := http.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				want := http.StatusNotFound
				if on {
					want = http.StatusOK
				}
				if resp.StatusCode != want {
					t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
				}
			}
			resp, err := http.Get(srv.URL + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET /healthz: %s", resp.Status)
			}
		})
	}
}
