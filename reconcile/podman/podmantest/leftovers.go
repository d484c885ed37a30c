package podmantest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// removeNetworkLeftovers deletes what netavark made for a test network and
// did not tear down: the bridge and the iptables rules and chains that
// name the subnet. netavark removes them with the last container of the
// network, but containers killed with their service (a test that stops
// podman, or a crashed run) never get that teardown. The slot's lock is
// held, so nothing else uses this subnet or bridge.
func removeNetworkLeftovers(subnet, bridge string) error {
	var errs []error
	// The containers' network namespaces stay pinned under /run/netns,
	// with their veth pairs, when nobody tears them down; the ones whose
	// veth hangs on our bridge are ours. Find them before the bridge goes.
	// Their processes too: conmon dies with the service (or is killed by
	// Close), and the container's processes, reparented to init, would
	// run on.
	for _, ns := range bridgeNetns(bridge) {
		if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %v: %s", ns, err, out))
		}
	}
	if _, err := net.InterfaceByName(bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", bridge, err, out))
		}
	}
	rules, err := subnetRules(subnet)
	if err != nil {
		errs = append(errs, err)
	}
	type chain struct{ table, name string }
	var chains []chain // netavark's per-network chains our rules jump to
	for _, r := range rules {
		f := r.fields
		if i := slices.Index(f, "-j"); i >= 0 && i+1 < len(f) && strings.HasPrefix(f[i+1], "NETAVARK-") {
			chains = append(chains, chain{r.table, f[i+1]})
		}
		args := append([]string{"-w", "-t", r.table, "-D"}, f[1:]...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, out))
		}
	}
	for _, c := range chains {
		// A chain that a rule naming our subnet jumped to is netavark's
		// chain for this network alone (named by the network's ID, fixed
		// per slot); it also holds a MASQUERADE rule without the subnet.
		_ = exec.Command("iptables", "-w", "-t", c.table, "-F", c.name).Run()
		_ = exec.Command("iptables", "-w", "-t", c.table, "-X", c.name).Run()
	}
	// A command can fail because what it deletes went away meanwhile (a
	// netavark teardown still running for a container of the service):
	// only what is still there is an error.
	left, err := networkLeftovers(subnet, bridge)
	if err == nil && len(left) == 0 {
		return nil
	}
	if len(left) > 0 {
		errs = append([]error{fmt.Errorf("test network left on the node: %s", strings.Join(left, "; "))}, errs...)
	}
	return errors.Join(append(errs, err)...)
}

type iptablesRule struct {
	table  string
	fields []string // as iptables -S prints it: -A CHAIN ...
}

// subnetRules lists the iptables rules (nat and filter) that name subnet.
func subnetRules(subnet string) ([]iptablesRule, error) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, nil // no iptables, so netavark made no rules
	}
	var out []iptablesRule
	for _, table := range []string{"nat", "filter"} {
		text, err := exec.Command("iptables", "-w", "-t", table, "-S").Output()
		if err != nil {
			return out, fmt.Errorf("iptables -t %s -S: %w", table, err)
		}
		for _, line := range strings.Split(string(text), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "-A" && slices.Index(f, subnet) >= 0 {
				out = append(out, iptablesRule{table: table, fields: f})
			}
		}
	}
	return out, nil
}

// Leftovers describes what of this service's test network is on the node:
// its bridge, the network namespaces whose veth hangs on it, and the
// iptables rules that name its subnet. After Close it
// is empty; tests assert that.
func (p *Podman) Leftovers() ([]string, error) {
	return networkLeftovers(p.Subnet.String(), p.Bridge)
}

func networkLeftovers(subnet, bridge string) ([]string, error) {
	var out []string
	if _, err := net.InterfaceByName(bridge); err == nil {
		out = append(out, "link "+bridge)
	}
	for _, ns := range bridgeNetns(bridge) {
		out = append(out, "netns "+ns)
	}
	rules, err := subnetRules(subnet)
	for _, r := range rules {
		out = append(out, "iptables -t "+r.table+" "+strings.Join(r.fields, " "))
	}
	return out, err
}

// bridgeNetns names the network namespaces (under /run/netns) whose veth
// pair has its host end on bridge.
func bridgeNetns(bridge string) []string {
	links, err := exec.Command("ip", "-j", "link", "show", "master", bridge).Output()
	if err != nil {
		return nil // no such bridge
	}
	var ls []struct {
		NetnsID *int `json:"link_netnsid"`
	}
	if json.Unmarshal(links, &ls) != nil {
		return nil
	}
	nsList, err := exec.Command("ip", "-j", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var nss []struct {
		Name string `json:"name"`
		ID   *int   `json:"id"`
	}
	if json.Unmarshal(nsList, &nss) != nil {
		return nil
	}
	var out []string
	for _, l := range ls {
		for _, ns := range nss {
			if l.NetnsID != nil && ns.ID != nil && *l.NetnsID == *ns.ID {
				out = append(out, ns.Name)
			}
		}
	}
	return out
}
