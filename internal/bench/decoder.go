package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// decoderResult is one line of the decoder micro-benchmarks.
type decoderResult struct {
	name                  string
	nsPerOp, bytesPerOp   float64
	allocsPerOp, mbPerSec float64
}

// decoder runs the decoder's Go benchmarks and keeps their figures.
func (b *bench) decoder(ctx context.Context) error {
	logf("decoder: go test -run '^$' -bench Decode -benchmem ./decoder")
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "Decode", "-benchmem", "-count", "1", "./decoder")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	b.r.decoder = parseBenchmarks(out)
	if len(b.r.decoder) == 0 {
		return fmt.Errorf("go test -bench printed no benchmark:\n%s", out)
	}
	return nil
}

// parseBenchmarks reads the result lines of go test -bench -benchmem.
func parseBenchmarks(out []byte) []decoderResult {
	var rs []decoderResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		r := decoderResult{name: f[0]}
		// Drop the GOMAXPROCS suffix: BenchmarkDecode/insert-2.
		if i := strings.LastIndexByte(r.name, '-'); i > 0 {
			if _, err := strconv.Atoi(r.name[i+1:]); err == nil {
				r.name = r.name[:i]
			}
		}
		r.name = strings.TrimPrefix(r.name, "BenchmarkDecode/")
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				r.nsPerOp = v
			case "B/op":
				r.bytesPerOp = v
			case "allocs/op":
				r.allocsPerOp = v
			case "MB/s":
				r.mbPerSec = v
			}
		}
		if r.nsPerOp > 0 {
			rs = append(rs, r)
		}
	}
	return rs
}
