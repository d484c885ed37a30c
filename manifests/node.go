package manifests

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// nodeProblems checks what depends on the node's settings rather than on
// the schema: where hostPath volumes may point, and the portal range.
func nodeProblems(u *Unit, opts Options) []Problem {
	var out []Problem
	for _, p := range u.Pods {
		for _, v := range p.Volumes {
			if v.HostPath == nil {
				continue
			}
			if msg := hostPathProblem(v.HostPath.Path, opts.AllowedHostPaths); msg != "" {
				out = append(out, u.problem([]string{"pods", p.Name, "volumes", v.Name, "hostPath", "path"}, true, msg))
			}
		}
	}
	for _, s := range u.Services {
		if s.PortalIP == "" {
			continue
		}
		if msg := portalProblem(s.PortalIP, opts.PortalCIDR, opts.DNSAddress); msg != "" {
			out = append(out, u.problem([]string{"services", s.Name, "portalIP"}, true, msg))
		}
	}
	sortProblems(out)
	return out
}

// UnderPrefix reports whether path is one of the prefixes or lies below
// one (both cleaned first). The reconciler asks it again on the node.
func UnderPrefix(path string, prefixes []string) bool {
	path = filepath.Clean(path)
	for _, pre := range prefixes {
		pre = filepath.Clean(pre)
		if path == pre || pre == "/" || strings.HasPrefix(path, pre+"/") {
			return true
		}
	}
	return false
}

func hostPathProblem(path string, allowed []string) string {
	if len(allowed) == 0 {
		return fmt.Sprintf("hostPath %q is not allowed: no prefix is allowed (see --allowed-host-paths)", path)
	}
	if UnderPrefix(path, allowed) {
		return ""
	}
	return fmt.Sprintf("hostPath %q is not under an allowed prefix (--allowed-host-paths %s)", path, strings.Join(allowed, ","))
}

func portalProblem(ip string, cidr netip.Prefix, dns netip.Addr) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Sprintf("%q is not an IPv4 address", ip)
	}
	if dns.IsValid() && addr == dns {
		return fmt.Sprintf("portalIP %s is reserved for the node's DNS server (--dns-address)", ip)
	}
	if !cidr.IsValid() {
		return ""
	}
	cidr = cidr.Masked()
	if !cidr.Contains(addr) {
		return fmt.Sprintf("portalIP %s is outside the portal range %s (--portal-cidr)", ip, cidr)
	}
	if addr == cidr.Addr() {
		return fmt.Sprintf("portalIP %s is the network address of the portal range %s (--portal-cidr)", ip, cidr)
	}
	if addr == lastAddr(cidr) {
		return fmt.Sprintf("portalIP %s is the broadcast address of the portal range %s (--portal-cidr)", ip, cidr)
	}
	return ""
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		a[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(a)
}

// podDNS is a pod's effective DNS settings: the node's server as the only
// nameserver and svc.<domain> as the first search domain (SPEC §10), then
// what the pod's dnsConfig adds.
func podDNS(p *Pod, opts Options) *PodDNS {
	if !opts.DNSAddress.IsValid() && p.DNSConfig == nil {
		return nil
	}
	d := &PodDNS{}
	if opts.DNSAddress.IsValid() {
		domain := opts.ClusterDomain
		if domain == "" {
			domain = "cluster.local"
		}
		d.Servers = append(d.Servers, opts.DNSAddress.String())
		d.Searches = append(d.Searches, "svc."+strings.TrimSuffix(domain, "."))
	}
	if c := p.DNSConfig; c != nil {
		d.Servers = append(d.Servers, c.Nameservers...)
		d.Searches = append(d.Searches, c.Searches...)
		for _, o := range c.Options {
			if o.Value != nil {
				d.Options = append(d.Options, o.Name+":"+*o.Value)
			} else {
				d.Options = append(d.Options, o.Name)
			}
		}
	}
	return d
}
