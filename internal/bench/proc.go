package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// daemon is one `walscribe run` subprocess with its /metrics address.
type daemon struct {
	cmd     *exec.Cmd
	logPath string
	metrics string
	pprof   string
	done    chan struct{}
	err     error
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTick = 100

// daemonConfig is what a walscribe configuration of the benchmarks varies.
type daemonConfig struct {
	dsn, table string
	slot       string // "": the default
	sinkDSN    string // "": the source database
	profile    bool   // http.pprof
	// signer is the signer key file of the integrity log; "": integrity
	// off. Its checkpoints go to a directory beside it.
	signer string
}

// writeConfig writes a walscribe configuration into dir.
func writeConfig(dir string, c daemonConfig) (path, metricsAddr string, err error) {
	port, err := pgtest.FreePort()
	if err != nil {
		return "", "", err
	}
	metricsAddr = fmt.Sprintf("127.0.0.1:%d", port)
	name := strings.ReplaceAll(c.table, ".", "_") + fmt.Sprint(port)
	spool := filepath.Join(dir, "spool-"+name)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return "", "", err
	}
	yaml := fmt.Sprintf("source:\n  dsn: %q\n", c.dsn)
	if c.slot != "" {
		yaml += fmt.Sprintf("  slot: %s\n", c.slot)
	}
	if c.sinkDSN != "" {
		yaml += fmt.Sprintf("sink:\n  dsn: %q\n", c.sinkDSN)
	}
	yaml += fmt.Sprintf("tables:\n  - name: %s\nspool:\n  dir: %q\nhttp:\n  listen: %q\n", c.table, spool, metricsAddr)
	if c.profile {
		yaml += "  pprof: true\n" // only when asked: older binaries do not know the key
	}
	yaml += "log:\n  format: json\n"
	if c.signer != "" {
		checkpoints := filepath.Join(dir, "checkpoints-"+name)
		if err := os.MkdirAll(checkpoints, 0o700); err != nil {
			return "", "", err
		}
		yaml += fmt.Sprintf("integrity:\n  enabled: true\n  signer_key_file: %q\n  checkpoint_dir: %q\n", c.signer, checkpoints)
	}
	path = filepath.Join(dir, "walscribe-"+name+".yaml")
	return path, metricsAddr, os.WriteFile(path, []byte(yaml), 0o600)
}

// setupDaemon runs `walscribe setup`.
func setupDaemon(ctx context.Context, bin, cfg string) error {
	out, err := exec.CommandContext(ctx, bin, "setup", "--config", cfg).CombinedOutput()
	if err != nil {
		return fmt.Errorf("walscribe setup --config %s: %w\n%s", cfg, err, out)
	}
	return nil
}

// daemonEnv is added to the environment of every walscribe run (-gomaxprocs).
var daemonEnv []string

// startDaemon starts `walscribe run`, its log beside its configuration.
func startDaemon(bin, cfg, metricsAddr string) (*daemon, error) {
	logPath := strings.TrimSuffix(cfg, ".yaml") + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Env = append(os.Environ(), daemonEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s run: %w", bin, err)
	}
	d := &daemon{cmd: cmd, logPath: logPath, metrics: "http://" + metricsAddr + "/metrics", pprof: "http://" + metricsAddr + "/debug/pprof/profile", done: make(chan struct{})}
	go func() { d.err = cmd.Wait(); logf.Close(); close(d.done) }()
	return d, nil
}

// alive reports an error (with the end of the log) if the daemon exited.
func (d *daemon) alive() error {
	select {
	case <-d.done:
		b, _ := os.ReadFile(d.logPath)
		s := string(b)
		if len(s) > 3000 {
			s = s[len(s)-3000:]
		}
		return fmt.Errorf("walscribe run exited on its own (%v); the end of its log %s:\n%s", d.err, d.logPath, s)
	default:
		return nil
	}
}

// profile writes a CPU profile of the next d seconds to path, in the
// background; the channel reports the outcome. Does nothing when path is
// empty.
func (d *daemon) profile(seconds int, path string) <-chan error {
	out := make(chan error, 1)
	if path == "" {
		out <- nil
		return out
	}
	go func() {
		// The HTTP server comes up a moment after the process starts.
		var resp *http.Response
		var err error
		for range 100 {
			if resp, err = http.Get(fmt.Sprintf("%s?seconds=%d", d.pprof, seconds)); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			out <- fmt.Errorf("cpu profile: %w", err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			out <- fmt.Errorf("cpu profile: %s", resp.Status)
			return
		}
		f, err := os.Create(path)
		if err == nil {
			_, err = io.Copy(f, resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil {
			logf("cpu profile of walscribe written to %s (go tool pprof %s)", path, path)
		}
		out <- err
	}()
	return out
}

// stop sends SIGTERM and waits up to a minute, then kills it.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// cpuSeconds is a process's user+system CPU time so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTick, nil
}

// vmHWM is a process's peak resident set size in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// histogram is the cumulative buckets of one Prometheus histogram.
type histogram map[float64]float64

// scrapeHistogram reads the buckets of histogram name from /metrics.
func scrapeHistogram(url, name string) (histogram, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	h := histogram{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, `le="`)
		if !strings.HasPrefix(line, name+"_bucket{") || i < 0 {
			continue
		}
		rest := line[i+len(`le="`):]
		q := strings.IndexByte(rest, '"')
		b := strings.IndexByte(rest, '}')
		if q < 0 || b < q {
			continue
		}
		f := strings.Fields(rest[b+1:])
		if len(f) < 1 {
			continue
		}
		le, err1 := strconv.ParseFloat(rest[:q], 64)
		n, err2 := strconv.ParseFloat(f[0], 64)
		if err1 == nil && err2 == nil {
			h[le] = n
		}
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("%s has no %s", url, name)
	}
	return h, sc.Err()
}

// quantile estimates quantile q of the observations between two scrapes,
// interpolating linearly inside a bucket as Prometheus does. It returns
// NaN when nothing was observed, +Inf when q lies in the last bucket.
func quantile(before, after histogram, q float64) float64 {
	var les []float64
	for le := range after {
		les = append(les, le)
	}
	sort.Float64s(les)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	prevLE, prevN := 0.0, 0.0
	for _, le := range les {
		n := after[le] - before[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return le
			}
			if n == prevN {
				return le
			}
			return prevLE + (le-prevLE)*(rank-prevN)/(n-prevN)
		}
		prevLE, prevN = le, n
	}
	return math.Inf(1)
}

// signerKey creates, once per run, the key pair of the integrity log in
// dir with `walscribe keygen --signer`, and returns the signer key's file
// (the verifier's is beside it, with .pub).
func signerKey(ctx context.Context, bin, dir string) (string, error) {
	path := filepath.Join(dir, "signer.key")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	out, err := exec.CommandContext(ctx, bin, "keygen", "--signer", path, "--name", "bench.walscribe/log").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("walscribe keygen --signer: %w\n%s", err, out)
	}
	return path, nil
}
