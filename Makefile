# crwrap — see README.md. Targets: build test test-unit test-root bench demo lint clean deps.
SHELL   := /bin/bash
GO      ?= go
OUT     := build/crwrap
CACHE   := build/cache
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
TAGS    := netgo osusergo seccomp
LDFLAGS := -X github.com/crwrap/crwrap/internal/version.Version=$(VERSION) -linkmode external -extldflags -static
# staticcheck for `make lint`: a release that supports this Go.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Shell scripts for `make lint` (shellcheck -x follows what they source).
SHELL_SCRIPTS = .ci/run $(shell find cmd examples images internal test -name '*.sh' | sort)
# Packages whose tests need no root, no CRIU and no Docker.
UNIT    := $(shell $(GO) list ./... 2>/dev/null | grep -v '/test/')

.PHONY: all build binary bundle deps test test-unit test-root bench demo lint clean
.PHONY: k8s-up k8s-down test-k8s

all: build

## deps: install the Debian packages building and testing need (idempotent, as root)
deps:
	bash test/deps.sh
	bash test/k8s/cluster/deps.sh

## build: build/crwrap laid out as /crwrap in the crwrap-base image
build: binary bundle
	install -D -m 0644 templates/config.json.tmpl $(OUT)/templates/config.json.tmpl

binary:
	CGO_ENABLED=1 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(OUT)/bin/crwrap ./cmd/crwrap

bundle:
	bash images/criu/bundle.sh $(OUT)/criu $(CACHE)/forky-root

## test: everything — unit, root (real CRIU, real containers) and pod (Docker) tests
test: deps build
	CRWRAP_BUILD=$(CURDIR)/$(OUT) $(GO) test -count=1 -timeout 60m ./... -p 1

test-unit:
	$(GO) test -count=1 $(UNIT)

test-root: build
	CRWRAP_BUILD=$(CURDIR)/$(OUT) $(GO) test -count=1 -timeout 40m -p 1 -v ./test/...

## bench: cold start vs restore, checkpoint time and size, concurrency (prints a table)
bench: build
	CRWRAP_BUILD=$(CURDIR)/$(OUT) $(GO) run ./test/bench $(BENCH_ARGS)

## demo: checkpoint the example app, restore it, print cold start vs restore time-to-ready
demo: deps build
	bash examples/demo.sh

## lint: go vet, gofmt, staticcheck (fetched through the Go module proxy) and shellcheck (installed
## from Debian when missing); the generated tool tables are checked by a unit test
lint:
	$(GO) vet ./...
	test -z "$$(gofmt -l cmd internal test examples templates)"
	$(GO) run $(STATICCHECK) ./...
	command -v shellcheck >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; }
	shellcheck -x $(SHELL_SCRIPTS)

clean:
	rm -rf $(OUT)

## k8s-up: start the single-node Kubernetes of the e2e tests (kubelet + its own containerd; the
## binaries are built once into build/cache/k8s-<version>); prints its kubeconfig
k8s-up:
	bash test/k8s/cluster/deps.sh
	bash test/k8s/cluster/up.sh

## k8s-down: stop that cluster and remove everything it made (safe to repeat)
k8s-down:
	bash test/k8s/cluster/down.sh

## test-k8s: examples/kubernetes end to end on that cluster (started and stopped unless it runs)
test-k8s: deps
	$(GO) test -count=1 -timeout 45m -v ./test/k8s/
