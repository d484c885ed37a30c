# cuelet — make help lists the targets.

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
# Units and tmpfiles of the local administrator, as for software installed
# under /usr/local; a distribution package would use /usr/lib/... instead.
UNITDIR     ?= /etc/systemd/system
TMPFILESDIR ?= /etc/tmpfiles.d
DOCDIR      ?= $(PREFIX)/share/doc/cuelet

# The podman bindings need these tags; without cgo the binary runs on any
# Linux of the same architecture.
TAGS    := remote exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper containers_image_openpgp
# Every go command run by make (test, vet, staticcheck) needs the tags too.
comma := ,
empty :=
space := $(empty) $(empty)
export GOFLAGS := -tags=$(subst $(space),$(comma),$(TAGS))
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/cuelet/cuelet/cmd/cuelet/cli.version=$(VERSION)

# A fresh Debian machine has Go in /usr/local/go but not on PATH.
export PATH := $(PATH):/usr/local/go/bin

# Linters run from their own module, so they stay out of go.mod.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

GO_BUILD := CGO_ENABLED=0 go build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)'

.PHONY: help build test lint install bench bench-agent bench-pods bench-proxy clean

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build bin/cuelet
	$(GO_BUILD) -o bin/cuelet ./cmd/cuelet

test: ## run every test: unit, command line scripts and, as root, the end-to-end tests against a real podman and netfilter
	go test -count=1 -timeout 30m ./...

lint: ## check formatting, go vet, staticcheck and go.mod tidiness
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	go vet ./...
	go run $(STATICCHECK) ./...
	go mod tidy -diff

install: build ## install binary, systemd unit, tmpfiles entry, manifest folder and examples under $(DESTDIR)
	install -d $(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DOCDIR)/examples
	install -d -m 0755 $(DESTDIR)/etc/cuelet/manifests
	install -d -m 0700 $(DESTDIR)/var/lib/cuelet
	install -m 0755 bin/cuelet $(BINDIR)/cuelet
	sed 's|@BINDIR@|$(PREFIX)/bin|' systemd/cuelet.service > $(DESTDIR)$(UNITDIR)/cuelet.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cuelet.service
	install -m 0644 systemd/cuelet.tmpfiles $(DESTDIR)$(TMPFILESDIR)/cuelet.conf
	cd examples && find . -name '*.cue' -exec install -D -m 0644 {} $(DESTDIR)$(DOCDIR)/examples/{} \;

bench: ## time cuelet validate against cue vet on 1,000 units
	bench/validate/run.sh

bench-agent: ## time the running agent: a file write's overhead over podman, idle memory and CPU with 100 pods (root, podman)
	bench/agent/run.sh

bench-pods: ## time apply against podman kube play and no-op passes over 100 pods (root, podman)
	bench/pods.sh

bench-proxy: ## measure the proxy against haproxy and nginx on the shared harness (root)
	bench/proxy/run.sh

clean: ## remove build output
	rm -rf bin
