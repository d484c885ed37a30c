# cuelet — make help lists the targets.

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
# Units and tmpfiles of the local administrator, as for software installed
# under /usr/local; a distribution package would use /usr/lib/... instead.
UNITDIR     ?= /etc/systemd/system
TMPFILESDIR ?= /etc/tmpfiles.d
DOCDIR      ?= $(PREFIX)/share/doc/cuelet
MANDIR      ?= $(PREFIX)/share/man
# Generated man pages, one per command (make man), beside the binary.
MANBUILD    := bin/man/man1

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

.PHONY: help deps build man demo test chaos lint install bench bench-validate bench-export bench-agent bench-pods bench-proxy bench-dns bench-git goflags clean

# What building, running and testing cuelet need on Debian 12: podman with
# runc (podman would otherwise pull in crun, which fails on cgroups
# v1/hybrid machines), its network stack, nftables and iproute2,
# busybox-static (the test and example image is built from it), systemd
# (systemd-analyze verify), curl, and git (the git source runs git-upload-pack
# for file:// and local repositories; its tests make repositories with it).
# Go comes with the machine.
DEB_PACKAGES := make podman runc conmon catatonit netavark aardvark-dns containernetworking-plugins \
	iptables nftables iproute2 busybox-static systemd curl git

# The demo's podman: the one answering on the system socket (podman.socket
# under systemd), else one started with the project's containers.conf
# (runc, cgroupfs, file events: what works without systemd as PID 1).
DEMO_SOCK  := /run/podman/podman.sock
DEMO_URL   := unix://$(DEMO_SOCK)
DEMO_IMAGE := localhost/cuelet-busybox:latest
DEMO_LOG   := /var/log/cuelet-demo

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

deps: ## install the Debian packages that are missing (root)
	@missing=; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

build: ## build bin/cuelet
	$(GO_BUILD) -o bin/cuelet ./cmd/cuelet

man: ## generate the man pages, cuelet(1) and cuelet-COMMAND(1), into bin/man/man1 from the commands' help
	rm -rf $(MANBUILD)
	go run -ldflags '-X github.com/cuelet/cuelet/cmd/cuelet/cli.version=$(VERSION)' ./cmd/cuelet/mangen $(MANBUILD)

demo: deps build ## as root: install what is missing, build the example image, run the agent on manifests/examples in the foreground
	@test "$$(id -u)" -eq 0 || { echo "make demo: run as root (podman's system service, portals, nftables)" >&2; exit 1; }
	@if ! curl -fsS --unix-socket $(DEMO_SOCK) http://d/_ping >/dev/null 2>&1; then \
		mkdir -p $(dir $(DEMO_SOCK)) $(DEMO_LOG); \
		echo "starting podman system service on $(DEMO_URL) (log: $(DEMO_LOG)/podman.log)"; \
		CONTAINERS_CONF=$(CURDIR)/reconcile/podman/podmantest/containers.conf setsid podman \
			--cgroup-manager cgroupfs --events-backend file \
			system service --time 0 $(DEMO_URL) >$(DEMO_LOG)/podman.log 2>&1 & \
		for i in $$(seq 50); do curl -fsS --unix-socket $(DEMO_SOCK) http://d/_ping >/dev/null 2>&1 && break; sleep 0.2; done; \
	fi
	@# No registry is needed: the examples' image is busybox with its applets.
	@if ! podman --url $(DEMO_URL) image exists $(DEMO_IMAGE); then \
		rootfs=$$(mktemp -d) && mkdir -p $$rootfs/bin && cp /bin/busybox $$rootfs/bin/busybox && \
		for a in $$(/bin/busybox --list); do [ $$a = busybox ] || ln -s busybox $$rootfs/bin/$$a; done && \
		tar -C $$rootfs -cf - . | podman --url $(DEMO_URL) import --change 'ENV PATH=/bin' - $(DEMO_IMAGE) >/dev/null && \
		rm -rf $$rootfs && echo "built $(DEMO_IMAGE)"; \
	fi
	@echo
	@echo "cuelet is starting on manifests/examples. In another shell, try:"
	@echo "  bin/cuelet status                        # pods, services, units"
	@echo "  curl http://127.0.0.1:30080/             # the web service's external port"
	@echo "  curl http://10.96.0.20/                  # the web service's portal, round robin"
	@echo "  cat /run/cuelet/pods/web/services.env    # the service variables"
	@echo "Ctrl-C stops the agent; the pods and portals keep running."
	@echo
	exec bin/cuelet run --manifests manifests/examples --podman-url $(DEMO_URL) --log-format console $(ARGS)

test: deps ## install what is missing, then run every test: unit, command line scripts and, as root, the end-to-end tests against a real podman and netfilter
	go test -count=1 -timeout 30m ./...

# `make test` runs the short form of the campaign (agent/chaos) with the
# other tests; this is the long one that docs/performance.md reports.
chaos: ## the fault campaign in full: agent and podman killed, podman frozen, state dir full, symlink swaps, junk files, bad rollouts (root, podman; CUELET_CHAOS_ROUNDS=5: about 8 min)
	CUELET_CHAOS=full go test -count=1 -v -timeout 3h ./agent/chaos

lint: ## check formatting, go vet, staticcheck and go.mod tidiness
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	@# zerolog's Dur writes bare milliseconds (took=2318.647575); log
	@# durations as Go duration strings (Stringer, "2.319s") instead.
	@if grep -rn --include='*.go' '\.Dur(' .; then echo "log durations with Stringer, not Dur"; exit 1; fi
	go vet ./...
	go run $(STATICCHECK) ./...
	go mod tidy -diff

install: build man ## install binary, man pages, systemd unit, its settings file (if absent), tmpfiles entry, manifest folder, docs and examples under $(DESTDIR)
	install -d $(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(MANDIR)/man1
	install -m 0644 $(MANBUILD)/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -d -m 0755 $(DESTDIR)/etc/cuelet/manifests
	install -d -m 0700 $(DESTDIR)/var/lib/cuelet
	install -m 0755 bin/cuelet $(BINDIR)/cuelet
	sed -e 's|@BINDIR@|$(PREFIX)/bin|' -e 's|@DOCDIR@|$(DOCDIR)|' systemd/cuelet.service > $(DESTDIR)$(UNITDIR)/cuelet.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cuelet.service
	@# The administrator's settings survive reinstalls and upgrades.
	test -e $(DESTDIR)/etc/cuelet/cuelet.env || install -m 0644 systemd/cuelet.env $(DESTDIR)/etc/cuelet/cuelet.env
	install -m 0644 docs/operations.md $(DESTDIR)$(DOCDIR)/operations.md
	install -m 0644 systemd/cuelet.tmpfiles $(DESTDIR)$(TMPFILESDIR)/cuelet.conf
	cd manifests/examples && find . -name '*.cue' -exec install -D -m 0644 {} $(DESTDIR)$(DOCDIR)/examples/{} \;

bench: bench-validate bench-export bench-pods bench-agent bench-proxy bench-dns bench-git ## every benchmark below

bench-validate: build ## time cuelet validate against cue vet on 1,000 units (needs hyperfine)
	manifests/bench/run.sh

bench-export: ## time cuelet export and import of 1,000 units against cuelet validate of the same units, 3 runs, medians and ratios
	manifests/kube/bench/run.sh

bench-agent: ## time the running agent: a file write's overhead over podman, idle memory and CPU with 100 pods (root, podman)
	agent/bench/run.sh

bench-pods: ## time apply against podman kube play and no-op passes over 100 pods (root, podman)
	reconcile/bench/run.sh

bench-proxy: ## measure the proxy against haproxy and nginx on the shared harness (root)
	netproxy/bench/run.sh

# CoreDNS is the DNS benchmark's peer; Debian 12 has no package of it.
COREDNS_VERSION ?= v1.12.1

bench-dns: ## queries per second and p99 of the agent's DNS server against CoreDNS (hosts plugin), same load, loopback
	@command -v coredns >/dev/null || test -x "$$(go env GOPATH)/bin/coredns" || \
		GOFLAGS= go install github.com/coredns/coredns@$(COREDNS_VERSION)
	go test -run '^$$' -bench 'UDP$$' -benchtime 1x ./netproxy/dns

bench-git: ## a commit changing one unit of 1,000: git fetch to the agent's first podman call, against git fetch+checkout (root, podman, git)
	@echo "load before: $$(cut -d' ' -f1-3 /proc/loadavg) on $$(nproc) cores"
	go test -run '^$$' -bench 'GitCommitToPodman' -benchtime $${ITERATIONS:-20}x -timeout 30m ./agent/bench/
	go test -run '^$$' -bench 'FetchAndPublish' -benchtime $${ITERATIONS:-20}x -benchmem ./manifests/gitsource
	@echo "load after: $$(cut -d' ' -f1-3 /proc/loadavg)"

goflags: ## print the GOFLAGS the go commands need (the bench scripts read it)
	@echo $(GOFLAGS)

clean: ## remove build output
	rm -rf bin
