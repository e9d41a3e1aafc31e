// Command demo shows walscribe at work on a throwaway database: it starts a
// local PostgreSQL with logical replication, creates a small shop schema,
// runs `walscribe setup` and `walscribe run` (the real binary), sends sample
// traffic, and prints the audit trail as it grows. Ctrl-C at any point stops
// everything and removes every temporary file.
//
//	go build -o bin/walscribe ./cmd/walscribe
//	go run ./internal/demo -bin bin/walscribe [-duration 20s] [-keep]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	o := defaultOptions()
	flag.StringVar(&o.bin, "bin", o.bin, "the walscribe binary to run (build it with: go build -o bin/walscribe ./cmd/walscribe)")
	flag.DurationVar(&o.duration, "duration", o.duration, "how long to send traffic; 0 sends until Ctrl-C, then shows the summary")
	flag.BoolVar(&o.keep, "keep", false, "after the summary, keep PostgreSQL and walscribe running until Ctrl-C, to query the trail yourself")
	rate := flag.Float64("rate", 4, "transactions per second")
	flag.Parse()
	if *rate <= 0 || *rate > 1000 {
		fmt.Fprintln(os.Stderr, "demo: -rate must be above 0 and at most 1000")
		os.Exit(2)
	}
	o.interval = time.Duration(float64(time.Second) / *rate)
	o.out = os.Stdout

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopTraffic := make(chan struct{})
	o.stopTraffic = stopTraffic
	o.phase = new(phaseFlag)

	// The first Ctrl-C ends the traffic when it has no set duration (the
	// summary follows); any other stops everything and cleans up.
	sigs := make(chan os.Signal, 4)
	// SIGPIPE: the output is gone (as with `| head`); stop and clean up
	// rather than die on the next write.
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	go func() {
		softDone := false
		for sig := range sigs {
			if sig == syscall.SIGPIPE {
				cancel()
				continue
			}
			if !softDone && o.duration == 0 && o.phase.get() == phaseTraffic {
				softDone = true
				fmt.Fprintln(os.Stdout, "\n^C: stopping the traffic (press Ctrl-C again to quit at once)")
				close(stopTraffic)
				continue
			}
			fmt.Fprintf(os.Stdout, "\n%s: stopping walscribe and PostgreSQL...\n", sigName(sig))
			cancel()
		}
	}()

	_, err := run(ctx, o)
	signal.Stop(sigs)
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		if err != context.Canceled { // and something went wrong stopping
			fmt.Fprintln(os.Stderr, "\ndemo:", err)
		}
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "\ndemo:", err)
		os.Exit(1)
	}
}

func sigName(s os.Signal) string {
	if s == os.Interrupt {
		return "^C"
	}
	return s.String()
}
