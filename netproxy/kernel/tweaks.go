package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// outLink is the index of the link of the main table's longest-prefix
// route to addr, 0 when none.
func outLink(routes []netlink.Route, addr netip.Addr) int {
	best, bits := 0, -1
	for _, r := range routes {
		if r.Table != unix.RT_TABLE_MAIN && r.Table != 0 {
			continue
		}
		prefix := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Dst != nil {
			a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
			ones, _ := r.Dst.Mask.Size()
			if !ok {
				continue
			}
			prefix = netip.PrefixFrom(a, ones)
		}
		if prefix.Contains(addr) && prefix.Bits() > bits {
			best, bits = r.LinkIndex, prefix.Bits()
		}
	}
	return best
}

// leavesHost tells whether traffic to addr leaves through an interface of
// the host: not for loopback addresses nor for the host's own (local).
func leavesHost(addr netip.Addr, local map[netip.Addr]bool) bool {
	return !addr.IsLoopback() && !local[addr]
}

// localAddrs are the host's own IPv4 addresses.
func (p *Proxy) localAddrs() (map[netip.Addr]bool, error) {
	addrs, err := p.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	local := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			local[ip] = true
		}
	}
	return local, nil
}

// tweaks are the interface settings the data path turned on, by name of
// interface. They are kept in the table itself (the sets svc_tweak_*), so
// that whichever agent removes the data path later, after any number of
// restarts, turns off exactly what was turned on, and nothing an
// administrator had set.
type tweaks struct {
	// localnet: route_localnet on the interfaces that lead to endpoints
	// of external ports, which the host reaches at 127.0.0.1.
	localnet []string
	// hairpin: hairpin mode on the ports of bridges that lead to
	// endpoints, so that a pod reaching itself through its service gets
	// its packets back.
	hairpin []string
}

const (
	setTweakLocalnet = "svc_tweak_localnet"
	setTweakHairpin  = "svc_tweak_hairpin"
)

// addTweaks records t in rs as two sets of interface names.
func (rs *ruleset) addTweaks(t tweaks) {
	for _, x := range []struct {
		name  string
		names []string
	}{{setTweakLocalnet, t.localnet}, {setTweakHairpin, t.hairpin}} {
		s := &setSpec{set: &nftables.Set{Table: rs.table, Name: x.name, KeyType: nftables.TypeIFName}}
		for _, n := range x.names {
			s.elems = append(s.elems, nftables.SetElement{Key: ifnameKey(n)})
			s.text = append(s.text, n)
		}
		rs.sets = append(rs.sets, s)
	}
}

func ifnameKey(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// readTweaks reads the recorded tweaks from the table; none when the sets
// are missing.
func readTweaks(conn *nftables.Conn, tableName string) tweaks {
	table := &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
	read := func(name string) []string {
		elems, err := conn.GetSetElements(&nftables.Set{Table: table, Name: name, KeyType: nftables.TypeIFName})
		if err != nil {
			return nil
		}
		var out []string
		for _, e := range elems {
			out = append(out, strings.TrimRight(string(e.Key), "\x00"))
		}
		slices.Sort(out)
		return out
	}
	return tweaks{localnet: read(setTweakLocalnet), hairpin: read(setTweakHairpin)}
}

// ensureTweaks turns on what the served ports need and returns the tweaks
// to record: those recorded before (of interfaces that still exist) and
// those it turned on now. A setting found on already is not ours and is
// not recorded. The settings stay on while the data path runs; Remove
// turns them off.
func (p *Proxy) ensureTweaks(rs *ruleset, recorded tweaks) (tweaks, error) {
	links, err := p.nl.LinkList()
	if err != nil {
		return recorded, fmt.Errorf("list links: %w", err)
	}
	byIndex := map[int]netlink.Link{}
	exists := map[string]bool{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
		exists[l.Attrs().Name] = true
	}
	out := tweaks{}
	for _, n := range recorded.localnet {
		if exists[n] {
			out.localnet = append(out.localnet, n)
		}
	}
	for _, n := range recorded.hairpin {
		if exists[n] {
			out.hairpin = append(out.hairpin, n)
		}
	}

	ext := p.cfg.ExternalAddress
	externalOnLoopback := ext.IsUnspecified() || ext.IsLoopback()
	localnet := map[string]bool{}
	bridges := map[int]bool{}
	// One read of the main routing table rather than a route lookup per
	// endpoint: thousands of endpoints cost one dump (policy routing is
	// not considered; pods and fixed endpoints are reached by the main
	// table on a podman host).
	routes, err := p.nl.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return out, fmt.Errorf("list routes: %w", err)
	}
	local, err := p.localAddrs()
	if err != nil {
		return out, err
	}
	var errs []error
	for _, port := range rs.ports {
		for _, ep := range port.endpoints {
			if !leavesHost(ep.Addr(), local) {
				// The host's own addresses are reached through lo, not
				// the link the main table would pick (for 127.0.0.1 none
				// matches, and the default route's would get
				// route_localnet: CVE-2020-8558's exposure).
				continue
			}
			link := byIndex[outLink(routes, ep.Addr())]
			if link == nil || link.Attrs().Flags&unix.IFF_LOOPBACK != 0 {
				continue
			}
			if port.external.IsValid() && externalOnLoopback {
				localnet[link.Attrs().Name] = true
			}
			if link.Type() == "bridge" {
				bridges[link.Attrs().Index] = true
			}
		}
	}
	for _, name := range sortedKeys(localnet) {
		turned, err := p.turnOnLocalnet(name)
		if err != nil {
			errs = append(errs, err)
		}
		if turned && !slices.Contains(out.localnet, name) {
			out.localnet = append(out.localnet, name)
		}
	}
	for _, l := range links {
		if !bridges[l.Attrs().MasterIndex] {
			continue
		}
		info, err := p.nl.LinkGetProtinfo(l)
		if err != nil || info.Hairpin {
			continue
		}
		if err := p.nl.LinkSetHairpin(l, true); err != nil {
			errs = append(errs, fmt.Errorf("hairpin mode on %s: %w", l.Attrs().Name, err))
			continue
		}
		if !slices.Contains(out.hairpin, l.Attrs().Name) {
			out.hairpin = append(out.hairpin, l.Attrs().Name)
		}
	}
	slices.Sort(out.localnet)
	slices.Sort(out.hairpin)
	return out, errors.Join(errs...)
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func localnetPath(iface string) string {
	return "/proc/sys/net/ipv4/conf/" + iface + "/route_localnet"
}

// turnOnLocalnet sets route_localnet on iface and reports whether it was
// off before.
func (p *Proxy) turnOnLocalnet(iface string) (bool, error) {
	turned := false
	err := inNetNS(p.cfg.NetNS, func() error {
		b, err := os.ReadFile(localnetPath(iface))
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) != "0" {
			return nil
		}
		turned = true
		return os.WriteFile(localnetPath(iface), []byte("1"), 0o644)
	})
	if err != nil {
		return false, fmt.Errorf("route_localnet on %s: %w", iface, err)
	}
	return turned, nil
}

// undoTweaks turns off what t records, on the interfaces that still exist.
func undoTweaks(cfg Config, nl *netlink.Handle, t tweaks) error {
	var errs []error
	for _, name := range t.localnet {
		err := inNetNS(cfg.NetNS, func() error { return os.WriteFile(localnetPath(name), []byte("0"), 0o644) })
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("route_localnet off on %s: %w", name, err))
		}
	}
	for _, name := range t.hairpin {
		l, err := nl.LinkByName(name)
		if err != nil {
			continue // gone with its pod
		}
		if err := nl.LinkSetHairpin(l, false); err != nil {
			errs = append(errs, fmt.Errorf("hairpin mode off on %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// inNetNS runs f in ns (on a thread of its own, thrown away afterwards),
// or in the caller's namespace when ns is not set: /proc/sys/net shows
// the namespace of the thread that opens it.
func inNetNS(ns netns.NsHandle, f func() error) error {
	if ns <= 0 {
		return f()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		done <- f()
	}()
	return <-done
}
