# nmos-certs: the two commands a newcomer needs are `make run` and `make test`.

GO          ?= go
BIN         ?= nmos-certs
PKG         := github.com/nmos-certs/nmos-certs
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X $(PKG)/appliance/app.Version=$(VERSION)
GOBIN       := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck
STATICCHECK_VERSION := v0.8.2

.PHONY: all build run test lint unit tools test-tools bench bench-tools fuzz clean deb deb-tools deb-test

all: build

## build: a static binary ./nmos-certs (CGO_ENABLED=0)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

## run: build and serve the embedded default on loopback (data in ./nmos-certs-data)
run: build
	./$(BIN) serve

## test: formatting, vet, staticcheck and every test with the race detector
## (installs the programs the tests run: openssl, dig, curl, promtool,
## prometheus and chromium)
test: lint test-tools unit

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# apt installs what is missing, as root or through sudo.
APT_INSTALL = sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq

test-tools:
	@missing=""; PATH="$$PATH:/usr/sbin"; \
	for pair in openssl:openssl dig:dnsutils curl:curl promtool:prometheus prometheus:prometheus chromium:chromium named:bind9; do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(APT_INSTALL) $$missing; \
	fi

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
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing; \
	fi

## deb: Debian packages dist/nmos-certs_<version>_{amd64,arm64}.deb (nfpm)
NFPM         := $(GOBIN)/nfpm
NFPM_VERSION := v2.45.2
# A Debian version that grows with every commit: 0.0~git<date>.<count>.<hash>.
DEB_VERSION  ?= $(shell git log -1 --date=format:%Y%m%d --format=0.0~git%cd.$$(git rev-list --count HEAD 2>/dev/null).%h 2>/dev/null || echo 0.0~dev)
DEB_ARCHS    ?= amd64 arm64

deb: deb-tools
	NFPM=$(NFPM) VERSION=$(VERSION) DEB_VERSION=$(DEB_VERSION) LDFLAGS='$(LDFLAGS)' bash image/deb/build.sh $(DEB_ARCHS)

deb-tools:
	@if ! $(GO) version -m $(NFPM) 2>/dev/null | grep -q 'nfpm/v2[[:space:]]*$(NFPM_VERSION)'; then \
		echo "installing nfpm $(NFPM_VERSION)"; \
		$(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION); \
	fi

## deb-test: the amd64 package in a fresh Debian 12 root (mmdebstrap):
## install, config check, ca init, upgrade from an older package with the
## CA and an edited config kept, remove and purge keep the CA; lintian.
## About 2 minutes; .ci/run runs it.
deb-test: DEB_ARCHS = amd64
deb-test: deb
	@missing=""; \
	for pair in mmdebstrap:mmdebstrap lintian:lintian; do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(APT_INSTALL) $$missing; fi
	NFPM=$(NFPM) VERSION=$(VERSION)-old DEB_VERSION=0.0~0old LDFLAGS='$(LDFLAGS:$(VERSION)=$(VERSION)-old)' bash image/deb/build.sh amd64 >/dev/null
	bash image/deb/test.sh dist/nmos-certs_0.0~0old_amd64.deb dist/nmos-certs_$(DEB_VERSION)_amd64.deb

-include image/os/image.mk

clean:
	rm -f $(BIN)
	rm -rf dist
