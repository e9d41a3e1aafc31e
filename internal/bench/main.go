// Command bench measures walscribe on this machine against a throwaway
// PostgreSQL it starts itself, and prints the figures as a table (and writes
// them to docs/BENCHMARKS.md with the machine's details):
//
//  1. drain rate of a backlog, beside pg_recvlogical draining the same
//     backlog to /dev/null (the decoding limit), and walscribe's CPU time;
//  2. the application's cost: pgbench TPS and latency, and a 200,000-row
//     UPDATE, with no audit, with walscribe attached, and with a classic
//     trigger-based audit;
//  3. commit-to-durable latency at a fixed transaction rate;
//  4. walscribe's peak memory through one huge transaction;
//  5. exports and cleanups of a trail;
//  6. the REST API's reads (list, filters, row history, actor, request,
//     summary) on a trail of -read entries, with walscribe storing writes
//     beside them.
//
// Usage (make bench does this, then the decoder micro-benchmarks):
//
//	go build -o bin/walscribe ./cmd/walscribe
//	go run ./internal/bench -bin bin/walscribe [-changes 100000 -huge 0 -duration 5s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	bin       string
	changes   int
	huge      int
	duration  time.Duration
	rate      int
	clients   []int
	updateRow int
	out       string
	pgBinDir  string
	steps     string
	repeat    int
	pprofDir  string
	// gomaxprocs is the GOMAXPROCS of every walscribe run (0: Go's default).
	gomaxprocs int
	lifecycle  int
	// read is the entries of the trail the API is read from.
	read int
}

// allSteps are the measurements, in the order they run.
const allSteps = "drain,app,memory,lifecycle,read,decoder"

// runs reports whether step is among -steps.
func (o options) runs(step string) bool {
	for _, s := range strings.Split(o.steps, ",") {
		if strings.TrimSpace(s) == step {
			return true
		}
	}
	return false
}

func main() {
	o := options{}
	flag.StringVar(&o.bin, "bin", "bin/walscribe", "the walscribe binary to measure (build it with: make build)")
	flag.IntVar(&o.changes, "changes", 1_000_000, "changes in the drain backlog (half inserts, then half updates)")
	flag.IntVar(&o.huge, "huge", 5_000_000, "rows in the one-transaction UPDATE of the memory test; 0 skips it")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long each pgbench run lasts (application cost and latency)")
	flag.IntVar(&o.rate, "rate", 2000, "transactions per second of the fixed-rate latency workload")
	clients := flag.String("clients", "1,4", "pgbench clients of the application-cost runs, comma-separated: one run per count (the latency run uses the largest)")
	flag.IntVar(&o.updateRow, "update-rows", 200_000, "rows in the application-cost table and its one-statement UPDATE")
	flag.StringVar(&o.out, "out", "docs/BENCHMARKS.md", "where to write the report; empty: print only")
	flag.StringVar(&o.pgBinDir, "pg-bindir", pgBinDir(), "where pg_recvlogical and pgbench are (PG_BINDIR)")
	flag.IntVar(&o.repeat, "repeat", 3, "rounds of the drain and application-cost measurements, each on fresh databases; the report shows the medians")
	flag.StringVar(&o.steps, "steps", allSteps, "the measurements to run, comma-separated (a partial run prints the others as not run)")
	flag.StringVar(&o.pprofDir, "pprof", "", "write CPU profiles of walscribe (drain, OLTP) into this directory, for go tool pprof")
	flag.IntVar(&o.lifecycle, "lifecycle", 1_000_000, "entries exported, then removed by each of the two cleanup paths; 0 skips it")
	flag.IntVar(&o.read, "read", 10_000_000, "entries seeded into the trail that the API's reads are timed on; 0 skips it")
	flag.IntVar(&o.gomaxprocs, "gomaxprocs", 0, "GOMAXPROCS of every walscribe run (0: Go's default, the machine's cores)")
	flag.Parse()
	for _, c := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -clients: %q is not a number of clients (1 or more)\n", c)
			os.Exit(2)
		}
		o.clients = append(o.clients, n)
	}
	for _, s := range strings.Split(o.steps, ",") {
		if !strings.Contains(","+allSteps+",", ","+strings.TrimSpace(s)+",") {
			fmt.Fprintf(os.Stderr, "bench: -steps: unknown step %q; the steps are %s\n", s, allSteps)
			os.Exit(2)
		}
	}
	if o.changes < 2 || o.updateRow < 1 || o.huge < 0 || o.duration < time.Second || o.rate < 1 || o.repeat < 1 || o.read < 0 || o.read > 0 && o.read < 1000 {
		fmt.Fprintln(os.Stderr, "bench: -changes must be at least 2, -update-rows at least 1, -huge 0 or more, -duration at least 1s, -rate and -repeat at least 1, -read 0 or at least 1000")
		os.Exit(2)
	}
	if _, err := os.Stat(o.bin); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v: build the binary first (make build) or pass -bin\n", err)
		os.Exit(2)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	began := time.Now()
	if o.gomaxprocs > 0 {
		daemonEnv = append(daemonEnv, "GOMAXPROCS="+strconv.Itoa(o.gomaxprocs))
	}
	r, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	r.took = time.Since(began)
	text := r.markdown(o)
	fmt.Println()
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench: write %s: %v\n", o.out, err)
			os.Exit(1)
		}
		fmt.Printf("\nwritten to %s\n", o.out)
	}
}

func pgBinDir() string {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/15/bin"
}

// logf prints progress to stderr, so that stdout holds the report only.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
