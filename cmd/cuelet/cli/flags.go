package cli

import (
	"flag"
	"net/netip"
	"strings"
	"time"

	"github.com/cuelet/cuelet/manifests"
)

// SPEC §4 defaults.
const (
	defaultManifests     = "/etc/cuelet/manifests"
	defaultPodmanURL     = "unix:///run/podman/podman.sock"
	defaultStateDir      = "/var/lib/cuelet"
	defaultRunDir        = "/run/cuelet"
	defaultPortalCIDR    = "10.96.0.0/16"
	defaultExternalAddr  = "0.0.0.0"
	defaultProxyMode     = "userspace"
	defaultResync        = 30 * time.Second
	defaultMetricsAddr   = "127.0.0.1:9808"
	defaultLogLevel      = "info"
	allowedHostPathsFlag = "allowed-host-paths"
)

// NodeRules are the node settings that validation depends on; validate
// takes them so that it rejects what the agent would (SPEC §7).
//
// The node's name and labels are here too: they decide which pods run on
// the node (SPEC §11), and plan and export must see what the agent would.
type NodeRules struct {
	AllowedHostPaths pathList
	PortalCIDR       netip.Prefix
	NodeName         nodeName
	NodeLabels       nodeLabels
	// hostname is os.Hostname unless a test says otherwise.
	hostname func() (string, error)
}

// Register adds --allowed-host-paths, --portal-cidr, --node-name and
// --node-labels.
func (n *NodeRules) Register(fs *flag.FlagSet) {
	fs.Var(&n.AllowedHostPaths, allowedHostPathsFlag, "`prefixes` (comma-separated, repeatable) under which hostPath volumes may lie; none by default")
	n.PortalCIDR = netip.MustParsePrefix(defaultPortalCIDR)
	fs.TextVar(&n.PortalCIDR, "portal-cidr", n.PortalCIDR, "`range` of portal (service) IP addresses")
	fs.Var(&n.NodeName, "node-name", "this node's `name`, its "+manifests.HostnameLabel+" label (default: the host name)")
	n.NodeLabels = nodeLabels{}
	fs.Var(n.NodeLabels, "node-labels", "this node's `labels`, KEY=VALUE (comma-separated, repeatable); a pod's nodeSelector must match them")
}

// Options turns the flags into what the manifests package needs.
func (n *NodeRules) Options() (manifests.Options, error) {
	labels, err := n.labels()
	if err != nil {
		return manifests.Options{}, err
	}
	return manifests.Options{AllowedHostPaths: n.AllowedHostPaths, PortalCIDR: n.PortalCIDR, NodeLabels: labels}, nil
}

// AgentFlags are the flags shared by plan, apply and run (SPEC §4).
type AgentFlags struct {
	Manifests string
	NodeRules
	PodmanURL       string
	StateDir        string
	RunDir          string
	ExternalAddress string
	ProxyMode       string
	Resync          time.Duration
	MetricsAddress  string
	LogFormat       string
	LogLevel        string
	AllowEmpty      bool
	// PortalLink and NftTable name what the agent adds to the node; only
	// tests and a second agent on one host need other names.
	PortalLink string
	NftTable   string
	Git        GitFlags // --git-*: the manifests come from a repository (SPEC §12)
}

// Register adds every agent flag with its default; the defaults that
// depend on the environment ($CONTAINER_HOST, a terminal) come from env.
func (a *AgentFlags) Register(fs *flag.FlagSet, env *Env) {
	registerManifests(fs, &a.Manifests)
	a.Git.Register(fs)
	a.NodeRules.Register(fs)
	podman := defaultPodmanURL
	if h := env.Getenv("CONTAINER_HOST"); h != "" {
		podman = h
	}
	fs.StringVar(&a.PodmanURL, "podman-url", podman, "podman API `url` ($CONTAINER_HOST, else the system socket)")
	fs.StringVar(&a.StateDir, "state-dir", defaultStateDir, "`folder` for state kept across restarts")
	fs.StringVar(&a.RunDir, "run-dir", defaultRunDir, "`folder` for runtime files (env files, API socket)")
	fs.StringVar(&a.ExternalAddress, "external-address", defaultExternalAddr, "`address` external ports listen on")
	fs.StringVar(&a.ProxyMode, "proxy-mode", defaultProxyMode, "how portals are served: userspace")
	fs.DurationVar(&a.Resync, "resync", defaultResync, "`interval` of full resyncs")
	fs.StringVar(&a.MetricsAddress, "metrics-address", defaultMetricsAddr, "`address` of /metrics, /healthz and /readyz")
	format := "json"
	if env.StderrIsTerminal {
		format = "console"
	}
	fs.StringVar(&a.LogFormat, "log-format", format, "json or console (console when stderr is a terminal)")
	fs.StringVar(&a.LogLevel, "log-level", defaultLogLevel, "debug, info, warn or error")
	fs.BoolVar(&a.AllowEmpty, "allow-empty", false, "delete managed pods even when the manifest directory holds no unit")
	fs.StringVar(&a.PortalLink, "portal-link", "cuelet0", "`interface` that holds the portal addresses")
	fs.StringVar(&a.NftTable, "nft-table", "cuelet", "nftables `table` (family ip) that keeps the portal range on the node")
}

func registerManifests(fs *flag.FlagSet, dir *string) {
	fs.StringVar(dir, "manifests", defaultManifests, "manifest `folder`")
}

// pathList is a comma-separated list flag that may also be repeated.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(s string) error {
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			*p = append(*p, e)
		}
	}
	return nil
}
