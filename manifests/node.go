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
