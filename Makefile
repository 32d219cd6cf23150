GO      ?= go
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run demo deps test unit e2e fuzz vet clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/dnsagent ./cmd/agent

# Starts the agent on the sample configuration: file backend, zones under ./var/zones,
# listening on 127.0.0.1:5358, transferring from a primary at 127.0.0.1:5354.
run: build
	mkdir -p var/zones
	bin/dnsagent --config etc/agent.conf

# Shows the main job in under a minute (after `make test` or `make deps` installed named):
# a private BIND primary on loopback, the agent on the file backend, a CREATE as Designate
# sends it, the zone file, a change on the primary, a NOTIFY, the IXFR in the log and
# /zones/NAME; then everything it started is stopped (scripts/demo.sh).
demo: build
	./scripts/demo.sh bin/dnsagent

# Installs the Debian packages the tests need: bind9 (test primary, bind9 backend),
# pdns-server, pdns-backend-mysql and mariadb-server (powerdns backend), knot-dnsutils,
# knot, knot-dnssecutils and nsd (other primaries; consumers of the file backend's files).
deps:
	./scripts/deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }

# Everything: unit tests, end-to-end tests against private named, pdns_server and MariaDB,
# and a short run of each fuzz target.
test: deps vet build
	GO=$(GO) ./scripts/gotest.sh -race -count=1 -timeout 12m ./...
	$(MAKE) fuzz FUZZTIME=40000x

# FUZZTIME is a duration (60s) or a count of inputs (40000x). make test counts: with a
# duration, Go 1.26's fuzzing can fail a clean run with "context deadline exceeded" when
# its deadline meets a worker still running an input (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzRequest$$' -fuzztime=$(FUZZTIME) ./service
	$(GO) test -run='^$$' -fuzz='^FuzzIXFRDecoder$$' -fuzztime=$(FUZZTIME) ./transfer

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /tests)

e2e: deps build
	$(GO) test -count=1 -timeout 10m ./tests/...

clean:
	rm -rf bin var

# Benchmarks against BIND's and PowerDNS's own secondaries (tracker issue 8; bench/README.md).
# Needs what `make deps` installs; everything runs on loopback with private servers.
.PHONY: bench bench-quick bench-pinned bench-deps
# dnsdist, the passthrough peer: only the benchmarks need it.
bench-deps:
	./scripts/bench-deps.sh
bench bench-quick bench-pinned: bench-deps
bench:
	DNSAGENT_BENCH=1 $(GO) test -run '^TestBenchTable$$' -count=1 -v -timeout 90m ./bench \
		-args -sizes=10000,100000,1000000 -runs=3 -out=$(CURDIR)/bench/RESULTS.md \
		-baseline=$(CURDIR)/bench/RESULTS.md

bench-quick:
	DNSAGENT_BENCH=1 $(GO) test -run '^TestBenchTable$$' -count=1 -v -timeout 5m ./bench \
		-args -sizes=10000 -runs=3 -baseline=$(CURDIR)/bench/RESULTS.md

# The passthrough alone with the relays (the agent, dnsdist) on the last CPU and the load
# generator and named on the others (bench/README.md, Passthrough). Needs 2 CPUs or more.
bench-pinned:
	@test "$$(nproc)" -ge 2 || { echo "bench-pinned needs at least 2 CPUs"; exit 1; }
	DNSAGENT_BENCH=1 taskset -c 0-$$(($$(nproc) - 2)) $(GO) test -run '^TestBenchPassthrough$$' \
		-count=1 -v -timeout 15m ./bench -args -runs=7 -relay-cpus=$$(($$(nproc) - 1))
