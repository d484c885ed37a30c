package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/gitsource"
	"github.com/cuelet/cuelet/netproxy"
	"github.com/cuelet/cuelet/netproxy/kernel"
	"github.com/cuelet/cuelet/reconcile/podman"
)

// Options are the settings of `cuelet plan`, `apply` and `run` (SPEC §4),
// parsed. Plan, Apply and Run build every part from them, in order.
type Options struct {
	ManifestDir string
	// Manifests are the node rules validation depends on, the portal
	// range among them.
	Manifests  manifests.Options
	AllowEmpty bool
	PodmanURL  string // "" for podman.DefaultURL
	StateDir   string
	RunDir     string
	// PortalLink and NftTable name what apply and run add to the node.
	PortalLink string
	NftTable   string
	// ProxyMode is the data path that serves the portals (SPEC §8); the
	// zero value is ProxyUserspace.
	ProxyMode ProxyMode

	// The rest is run's only.

	ExternalAddress netip.Addr // external ports listen on it
	Resync          time.Duration
	MetricsAddress  string
	// Reload delivers SIGHUP.
	Reload <-chan os.Signal
	// Version is logged when the agent starts.
	Version string
	// ResolvConf names the resolvers the DNS server forwards other names
	// to ("" for /etc/resolv.conf). The server runs on
	// Manifests.DNSAddress, when that is valid (SPEC §10).
	ResolvConf string
	// Git makes a git repository the manifest directory (SPEC §12):
	// ManifestDir is then the folder it publishes. nil: ManifestDir as is.
	Git *GitOptions
	// GitPath is the folder of the repository that ManifestDir holds,
	// with --git-url (NodeConfig.GitPath): run sets it from Git, plan
	// and apply, which read a one-shot fetch, are given it.
	GitPath string

	Log zerolog.Logger
}

// GitOptions are the git source's settings of Run.
type GitOptions struct {
	Source gitsource.Config
	// Period between fetches; SIGHUP (Options.Reload) fetches at once.
	Period time.Duration
}

// ProxyMode is how the portals are served (--proxy-mode, SPEC §8).
type ProxyMode string

// The proxy modes.
const (
	// ProxyUserspace serves the portals from the agent's own process:
	// they stop with it.
	ProxyUserspace ProxyMode = "userspace"
	// ProxyNftables serves them with DNAT rules in the kernel: they keep
	// serving while the agent is stopped or restarting.
	ProxyNftables ProxyMode = "nftables"
)

// ProxyModes are the valid modes, the default first.
var ProxyModes = []ProxyMode{ProxyUserspace, ProxyNftables}

// ParseProxyMode checks a --proxy-mode value.
func ParseProxyMode(s string) (ProxyMode, error) {
	for _, m := range ProxyModes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("--proxy-mode %q: want userspace or nftables", s)
}

// nodeConfig is the part of a node's configuration plan, apply and run
// share.
func (o *Options) nodeConfig(pm Podman) NodeConfig {
	return NodeConfig{
		ManifestDir: o.ManifestDir,
		Options:     o.Manifests,
		AllowEmpty:  o.AllowEmpty,
		StateDir:    o.StateDir,
		RunDir:      o.RunDir,
		Podman:      pm,
		GitPath:     o.GitPath,
		Log:         o.Log,
	}
}

// Plan says what Apply would do against the podman at o.PodmanURL,
// changing nothing.
func Plan(ctx context.Context, o Options) (*PlanResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the node's probes
	node, err := NewNode(ctx, o.nodeConfig(podman.New(o.PodmanURL)))
	if err != nil {
		return nil, err
	}
	return node.Plan(ctx)
}

// Apply runs one sync pass: it takes the node (see claimNode), keeps the
// portals on it and makes podman's pods what the valid units say. The
// portals are served only while Run runs. Problems of the pass are in the
// report; the error is for a node that cannot be worked on at all.
func Apply(ctx context.Context, o Options) (*Report, error) {
	network, release, err := claimNode(o)
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the node's probes
	cfg := o.nodeConfig(podman.New(o.PodmanURL))
	cfg.Network = network
	node, err := NewNode(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return node.Sync(ctx), nil
}

// Run runs the agent until ctx is done: it takes the node, serves the
// portals with the data path of o.ProxyMode, and syncs on manifest
// changes, podman events, probe changes, SIGHUP and every o.Resync. Pods
// keep running when it returns, and so do the portal addresses and the
// guard; the portals stop in userspace mode and keep serving the last
// endpoints in nftables mode, whose rules the next agent adopts.
func Run(ctx context.Context, o Options) error {
	network, release, err := claimNode(o)
	if err != nil {
		return err
	}
	defer release()

	registry := prometheus.NewRegistry()
	proxy, err := newDataPath(o, registry)
	if err != nil {
		return err
	}
	git, err := startGit(ctx, &o, registry)
	if err != nil {
		return err
	}
	components := []func(context.Context) error{proxy.Run, git.Run}
	var names Names
	var dnsStatus *DNSStatus
	if o.Manifests.DNSAddress.IsValid() {
		dnsStatus = &DNSStatus{Address: netip.AddrPortFrom(o.Manifests.DNSAddress, 53).String(), Domain: o.Manifests.ClusterDomain}
		server, serve, err := NewDNS(DNSConfig{
			Address: o.Manifests.DNSAddress, Domain: o.Manifests.ClusterDomain, ResolvConf: o.ResolvConf, Registerer: registry, Log: o.Log,
		})
		if err != nil {
			return err
		}
		names = server
		components = append(components, serve)
	}
	var fetch func(context.Context)
	if git != nil {
		fetch = git.FetchNow // SIGHUP fetches before its pass
	}
	pm := podman.New(o.PodmanURL)
	a := New(Config{
		ManifestDir:    o.ManifestDir,
		KeepFile:       manifests.IsManifest,
		RunDir:         o.RunDir,
		MetricsAddress: o.MetricsAddress,
		Resync:         o.Resync,
		Reload:         o.Reload,
		Fetch:          fetch,
		Registry:       registry,
		Components:     components,
		Source:         git.Status,
		Version:        o.Version,
		PodmanVersion:  pm.APIVersion,
		ProxyMode:      o.ProxyMode,
		DNS:            dnsStatus,
		Log:            o.Log,
	}, pm)
	cfg := o.nodeConfig(pm)
	cfg.Network = network
	cfg.Proxy = proxy
	cfg.Names = names
	cfg.StepRollouts = true
	// A probe that changes state changes endpoints: sync at once.
	cfg.OnProbeChange = a.Kick
	// A new revision is a whole tree swapped at once: no burst to wait
	// out (the watcher's kick for the swap only joins this pass, or adds
	// one that finds nothing to do).
	git.OnPublish(a.KickNow)
	cfg.Progress = a.Progress
	node, err := NewNode(ctx, cfg)
	if err != nil {
		return err
	}
	o.Log.Info().Str("action", "start").Str("version", o.Version).Str("manifests", o.ManifestDir).
		Str("podman", o.PodmanURL).Str("proxy_mode", string(o.ProxyMode)).Msg("cuelet agent starting")
	err = a.Run(ctx, node)
	o.Log.Info().Str("action", "stop").Msg("cuelet agent stopped; pods keep running")
	return err
}

// dataPath serves the portals in one proxy mode: the node hands it the
// services, and it runs beside the agent's loops.
type dataPath interface {
	Proxy
	Run(ctx context.Context) error
}

// newDataPath makes the data path of o.ProxyMode.
func newDataPath(o Options, reg prometheus.Registerer) (dataPath, error) {
	switch o.ProxyMode {
	case ProxyUserspace, "":
		// An nftables agent's rules outlive it (SPEC §8); left in place
		// they would take the connections before the listeners see them.
		if err := kernel.Remove(kernelConfig(o, nil)); err != nil {
			return nil, fmt.Errorf("remove the rules of --proxy-mode nftables: %w", err)
		}
		return netproxy.New(netproxy.Config{
			Logger: o.Log, Registerer: reg, ExternalAddress: o.ExternalAddress, PortalCIDR: o.Manifests.PortalCIDR,
		})
	case ProxyNftables:
		// Nothing of the userspace mode outlives its agent: its
		// listeners went with the process.
		return kernel.New(kernelConfig(o, reg))
	}
	return nil, fmt.Errorf("--proxy-mode %q: want userspace or nftables", o.ProxyMode)
}

// kernelConfig is the kernel data path's configuration: the agent's
// table, which it shares with the portal guard.
func kernelConfig(o Options, reg prometheus.Registerer) kernel.Config {
	return kernel.Config{
		PortalCIDR: o.Manifests.PortalCIDR, ExternalAddress: o.ExternalAddress, TableName: o.NftTable,
		Logger: o.Log, Registerer: reg,
	}
}

// startGit makes the git source of o.Git (nil without one: a nil
// GitSource runs nothing and reports nothing) and fetches once, so that
// the first pass reads the remote's revision; a failing first fetch is
// logged and the agent goes on with the revision an earlier run
// published, if any. It points o at the published folder and tags every
// log event with the revision.
func startGit(ctx context.Context, o *Options, reg prometheus.Registerer) (*GitSource, error) {
	if o.Git == nil {
		return nil, nil
	}
	src, err := gitsource.New(o.Git.Source)
	if err != nil {
		return nil, err
	}
	gs := NewGitSource(GitConfig{Source: src, Period: o.Git.Period, Registerer: reg, Log: o.Log})
	gs.Sync(ctx) // bounded by its FetchTimeout
	o.ManifestDir, o.GitPath = gs.ManifestDir(), o.Git.Source.Path
	o.Log = o.Log.Hook(gs.Hook())
	return gs, nil
}

// claimNode is what apply and run do before they touch the node: take the
// state lock, so that no other cuelet works on it at once, and open the
// portal programming (netlink, nftables). release undoes both.
func claimNode(o Options) (network *netproxy.Node, release func(), err error) {
	unlock, err := lockState(o.StateDir)
	if err != nil {
		return nil, nil, err
	}
	n, err := netproxy.NewNode(netproxy.NodeConfig{
		CIDR: o.Manifests.PortalCIDR, LinkName: o.PortalLink, TableName: o.NftTable, Logger: o.Log,
	})
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("portals need root (CAP_NET_ADMIN): %w", err)
	}
	return n, func() { n.Close(); unlock() }, nil
}

// lockState takes <state-dir>/cuelet.lock, so that two agents (or an agent
// and an apply) never reconcile one node at once. The lock goes with the
// process; its new holder removes the temp files of writes the last one
// did not finish (removeStaleTemps).
func lockState(stateDir string) (release func(), err error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	p := filepath.Join(stateDir, "cuelet.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: another cuelet works on this node (%v)", p, err)
	}
	if err := removeStaleTemps(stateDir); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
