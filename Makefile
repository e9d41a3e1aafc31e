# walscribe — see README.md.
GO       ?= go
BIN      := bin/walscribe
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)

.PHONY: all build test test-short demo bench fuzz chaos huge vet fmt clean

all: build

## build: the walscribe binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/walscribe

## test: every test, against throwaway PostgreSQL servers the tests start themselves
## (screenshots of the browser tests go to artifacts/, or $$WALSCRIBE_ARTIFACTS)
WALSCRIBE_ARTIFACTS ?= $(CURDIR)/artifacts
test: vet
	WALSCRIBE_ARTIFACTS=$(WALSCRIBE_ARTIFACTS) $(GO) test -race -count=1 -timeout 20m ./...

## test-short: the tests without the slow crash/restart workloads
test-short:
	$(GO) test -short -count=1 ./...

## demo: a throwaway PostgreSQL, walscribe attached, sample traffic, the trail printed
demo: build
	$(GO) build -o bin/walscribe-demo ./internal/demo
	bin/walscribe-demo -bin $(BIN)

## bench: figures measured on this machine against a throwaway PostgreSQL (and the decoder's
## micro-benchmarks), printed and written to docs/BENCHMARKS.md.
## Quick run: make bench BENCH_FLAGS='-changes 100000 -huge 0 -duration 5s -repeat 1 -lifecycle 100000 -read 200000 -out ""'
## Profiles: BENCH_FLAGS='-pprof /tmp/prof' writes CPU profiles of walscribe for go tool pprof.
BENCH_FLAGS ?=
bench: build
	$(GO) run ./internal/bench -bin $(BIN) $(BENCH_FLAGS)

## fuzz: every fuzz test for FUZZTIME each (make test runs their seeds only); the
## sink's writes generated garbage into a real PostgreSQL. A short minimisation keeps
## the engine fuzzing rather than shrinking inputs for a minute at a time.
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzSinkStoresAnything$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 20x ./sink
	$(GO) test -run '^$$' -fuzz '^FuzzSanitize$$' -fuzztime $(FUZZTIME) ./jsonb
	$(GO) test -run '^$$' -fuzz '^FuzzAppendValue$$' -fuzztime $(FUZZTIME) ./decoder
	$(GO) test -run '^$$' -fuzz '^FuzzParseContext$$' -fuzztime $(FUZZTIME) ./decoder
	$(GO) test -run '^$$' -fuzz '^FuzzParseChange$$' -fuzztime $(FUZZTIME) ./decoder

## chaos: the chaos test with 100 faults (make test runs 12)
chaos:
	WALSCRIBE_CHAOS_CYCLES=100 $(GO) test -count=1 -run 'TestChaos' -v -timeout 60m ./cmd/walscribe

## huge: a 5,000,000-row UPDATE in one transaction; prints walscribe's peak memory
huge:
	WALSCRIBE_HUGE_ROWS=5000000 $(GO) test -count=1 -run 'TestHugeTransaction' -v -timeout 60m ./cmd/walscribe

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: run make fmt"; exit 1; }

fmt:
	gofmt -w .

clean:
	rm -rf bin
