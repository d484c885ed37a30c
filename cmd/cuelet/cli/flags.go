package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/pflag"

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
	defaultClusterDomain = "cluster.local"
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
	DNSAddress       dnsAddress
	// ClusterDomain is the domain of service names, <service>.svc.<domain>;
	// pods search svc.<domain> first.
	ClusterDomain string
	NodeName      nodeName
	NodeLabels    nodeLabels
	// hostname is os.Hostname unless a test says otherwise.
	hostname func() (string, error)
}

// Register adds --allowed-host-paths, --portal-cidr, --dns-address,
// --cluster-domain (pods are created with the DNS settings, so the plan
// depends on them), --node-name and --node-labels.
func (n *NodeRules) Register(fs *pflag.FlagSet) {
	fs.Var(&n.AllowedHostPaths, allowedHostPathsFlag, "`prefixes` (comma-separated, repeatable) under which hostPath volumes may lie; none by default")
	n.PortalCIDR = netip.MustParsePrefix(defaultPortalCIDR)
	fs.TextVar(&n.PortalCIDR, "portal-cidr", n.PortalCIDR, "`range` of portal (service) IP addresses")
	fs.StringVar(&n.ClusterDomain, "cluster-domain", defaultClusterDomain, "`domain` of service names in DNS: <service>.svc.<domain>")
	fs.Var(&n.DNSAddress, "dns-address", "`address` of the node's DNS server for service names, port 53, or none (default: the tenth address of --portal-cidr)")
	fs.Var(&n.NodeName, "node-name", "this node's `name`, its "+manifests.HostnameLabel+" label (default: the host name)")
	n.NodeLabels = nodeLabels{}
	fs.Var(n.NodeLabels, "node-labels", "this node's `labels`, KEY=VALUE (comma-separated, repeatable); a pod's nodeSelector must match them")
}

// Options turns the flags into what the manifests package needs. A DNS
// address the agent would refuse (see DNSAddr) reserves nothing here; the
// agent commands stop on it before they validate anything.
func (n *NodeRules) Options() (manifests.Options, error) {
	labels, err := n.labels()
	if err != nil {
		return manifests.Options{}, err
	}
	dns, _ := n.DNSAddr()
	return manifests.Options{
		AllowedHostPaths: n.AllowedHostPaths, PortalCIDR: n.PortalCIDR,
		DNSAddress: dns, ClusterDomain: n.ClusterDomain, NodeLabels: labels,
	}, nil
}

// DNSAddr is the address the DNS server listens on (SPEC §10): the
// flag's, or by default the tenth address of the portal range, as
// Kubernetes puts its cluster DNS; the zero Addr with --dns-address=none
// or when the range has no tenth address. It must lie in the range: the
// portal link holds it and the portal guard lets it through.
func (n *NodeRules) DNSAddr() (netip.Addr, error) {
	d := n.DNSAddress
	if d.none {
		return netip.Addr{}, nil
	}
	cidr := n.PortalCIDR.Masked()
	if !d.addr.IsValid() {
		if !cidr.Addr().Is4() || cidr.Bits() > 28 {
			return netip.Addr{}, nil // fewer than 16 addresses: no room kept for DNS
		}
		tenth := cidr.Addr().As4()
		tenth[3] += 10 // the masked address of a /28 or wider ends in 4 zero bits
		return netip.AddrFrom4(tenth), nil
	}
	if !cidr.Contains(d.addr) {
		return netip.Addr{}, fmt.Errorf("--dns-address %s is outside the portal range %s (--portal-cidr)", d.addr, cidr)
	}
	return d.addr, nil
}

// dnsAddress is the value of --dns-address: unset (the default), none,
// or an IPv4 address.
type dnsAddress struct {
	addr netip.Addr
	none bool
}

func (d *dnsAddress) String() string {
	switch {
	case d == nil || (!d.none && !d.addr.IsValid()):
		return ""
	case d.none:
		return "none"
	}
	return d.addr.String()
}

func (d *dnsAddress) Type() string { return "address" }

func (d *dnsAddress) Set(s string) error {
	if s == "none" {
		*d = dnsAddress{none: true}
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return errors.New("want an IPv4 address or none")
	}
	*d = dnsAddress{addr: a}
	return nil
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
	// ResolvConf lists the resolvers the DNS server forwards other names
	// to; only tests need another file than /etc/resolv.conf.
	ResolvConf string
}

// Register adds every agent flag with its default; the defaults that
// depend on the environment ($CONTAINER_HOST, a terminal) come from env.
func (a *AgentFlags) Register(fs *pflag.FlagSet, env *Env) {
	registerManifests(fs, &a.Manifests)
	a.Git.Register(fs)
	a.NodeRules.Register(fs)
	registerPodmanURL(fs, &a.PodmanURL, env)
	fs.StringVar(&a.StateDir, "state-dir", defaultStateDir, "`folder` for state kept across restarts")
	fs.StringVar(&a.RunDir, "run-dir", defaultRunDir, "`folder` for runtime files (env files, API socket)")
	fs.StringVar(&a.ExternalAddress, "external-address", defaultExternalAddr, "`address` external ports listen on")
	fs.StringVar(&a.ProxyMode, "proxy-mode", defaultProxyMode, "how portals are served: userspace (by the agent's process) or nftables (DNAT rules in the kernel, they outlive the agent)")
	fs.DurationVar(&a.Resync, "resync", defaultResync, "`interval` of full resyncs")
	fs.StringVar(&a.MetricsAddress, "metrics-address", defaultMetricsAddr, "`address` of /metrics, /healthz and /readyz")
	format := "json"
	if env.StderrIsTerminal {
		format = "console"
	}
	fs.StringVar(&a.LogFormat, "log-format", format, "log `format`: json or console (console when stderr is a terminal)")
	fs.StringVar(&a.LogLevel, "log-level", defaultLogLevel, "log `level`: debug, info, warn or error")
	fs.BoolVar(&a.AllowEmpty, "allow-empty", false, "delete managed pods even when the manifest directory holds no unit")
	fs.StringVar(&a.ResolvConf, "dns-resolv-conf", "/etc/resolv.conf", "`file` naming the resolvers that names other than services are forwarded to")
	fs.StringVar(&a.PortalLink, "portal-link", "cuelet0", "`interface` that holds the portal addresses")
	fs.StringVar(&a.NftTable, "nft-table", "cuelet", "nftables `table` (family ip) that keeps the portal range on the node")
}

// registerPodmanURL adds --podman-url, whose default is $CONTAINER_HOST
// when set, as for podman --remote.
func registerPodmanURL(fs *pflag.FlagSet, url *string, env *Env) {
	def := defaultPodmanURL
	if h := env.Getenv("CONTAINER_HOST"); h != "" {
		def = h
	}
	fs.StringVar(url, "podman-url", def, "podman API `url` ($CONTAINER_HOST, else the system socket)")
}

func registerManifests(fs *pflag.FlagSet, dir *string) {
	fs.StringVar(dir, "manifests", defaultManifests, "manifest `folder`")
}

// pathList is a comma-separated list flag that may also be repeated.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Type() string { return "prefixes" }

func (p *pathList) Set(s string) error {
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			*p = append(*p, e)
		}
	}
	return nil
}
