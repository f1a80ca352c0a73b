# nmos-certs: the two commands a newcomer needs are `make run` and `make test`.

GO          ?= go
BIN         ?= nmos-certs
PKG         := github.com/nmos-certs/nmos-certs
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X $(PKG)/appliance/app.Version=$(VERSION)
GOBIN       := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck
STATICCHECK_VERSION := v0.8.2

.PHONY: all build run test lint unit tools bench bench-tools fuzz clean

all: build

## build: a static binary ./nmos-certs (CGO_ENABLED=0)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

## run: build and serve the embedded default on loopback (data in ./nmos-certs-data)
run: build
	./$(BIN) serve

## test: formatting, vet, staticcheck and every test with the race detector
test: lint unit

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

tools:
	@if ! $(STATICCHECK) -version 2>/dev/null | grep -q '$(STATICCHECK_VERSION:v%=%)'; then \
		echo "installing staticcheck $(STATICCHECK_VERSION)"; \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi

## fuzz: each fuzz target for FUZZTIME (30s) in turn: request bodies and
## CSRs (est), CSR subjects (ca/policy), DNS queries (plugins/nmoscerts), OCSP requests (ocsp),
## configuration files (appliance/config). `make test` runs their seeds.
FUZZTIME ?= 30s
FUZZ_TARGETS := est:FuzzDecodeBody ca/policy:FuzzSubject plugins/nmoscerts:FuzzServeDNS ocsp:FuzzParseRequest ocsp:FuzzDecodeGET appliance/config:FuzzLoad
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) ./$${t%%:*}/; \
	done

## bench: every benchmark (Go hot paths, EST vs globalsign estserver, OCSP vs
## cfssl ocspserve, DNS-SD vs stock CoreDNS, CRL, scale, footprint); prints
## the tables and writes docs/benchmarks.md. Not part of `make test`;
## about 12 minutes on 2 cores.
bench: bench-tools
	bash bench/report.sh

bench-tools:
	@missing=""; \
	for pair in wrk:wrk dnsperf:dnsperf dig:dnsutils jq:jq curl:curl; do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing; \
	fi

clean:
	rm -f $(BIN)
