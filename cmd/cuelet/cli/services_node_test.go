package cli_test

// The node the services end-to-end tests run cuelet on: an isolated podman
// (podmantest), a manifest folder, state and run dirs, and a portal range,
// portal link and nftables table of its own, so that tests run in parallel
// with each other, with other test binaries and with an agent on the host.
// `cuelet run`, `plan` and `apply` run in-process through cli.Run, with the
// same wiring as the binary.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/cmd/cuelet/cli"
	"github.com/cuelet/cuelet/netproxy/portaltest"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// svcNode is one node for a services test.
type svcNode struct {
	t   *testing.T
	ctx context.Context
	// pm is the test's podman; nil for a node whose podman is away.
	pm        *podmantest.Podman
	podmanURL string

	manifests, stateDir, runDir string
	// hostDir is allowed for hostPath volumes (--allowed-host-paths).
	hostDir string

	slot        int
	cidr        netip.Prefix // 10.236.<slot>.0/24
	link, table string       // clsvc<slot>, cuelet_svc<slot>
	watchTable  string       // cuelet_svcwatch<slot>, see watchLeaks
	extAddr     string       // --external-address
	mode        agent.ProxyMode

	status *http.Client

	mu    sync.Mutex
	agent *runningAgent
}

type runningAgent struct {
	cancel context.CancelFunc
	done   chan int
	log    *lockedBuffer
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eachProxyMode runs test once in each proxy mode, as parallel subtests
// named after the mode: SPEC §8 promises the same guarantees in both.
func eachProxyMode(t *testing.T, test func(t *testing.T, mode agent.ProxyMode)) {
	for _, mode := range agent.ProxyModes {
		t.Run(string(mode), func(t *testing.T) { test(t, mode) })
	}
}

// newSvcNode prepares a node whose agent serves portals in mode. With
// withPodman false, --podman-url points at a socket that does not exist.
func newSvcNode(t *testing.T, mode agent.ProxyMode, withPodman bool) *svcNode {
	t.Helper()
	if withPodman {
		podmantest.Require(t)
	} else {
		testenv.RequireRoot(t) // portals need CAP_NET_ADMIN
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)

	n := &svcNode{t: t, ctx: ctx, extAddr: "0.0.0.0", mode: mode}
	if withPodman {
		n.pm = podmantest.New(t)
		n.podmanURL = n.pm.URL
	}
	// Short paths: the status socket lives in the run dir.
	for _, d := range []*string{&n.manifests, &n.stateDir, &n.runDir, &n.hostDir} {
		dir, err := os.MkdirTemp("", "clsvc")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		*d = dir
	}
	if !withPodman {
		n.podmanURL = "unix://" + filepath.Join(n.runDir, "no-podman.sock")
	}
	n.claimSlot()
	sock := filepath.Join(n.runDir, agent.SocketName)
	n.status = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	t.Cleanup(n.status.CloseIdleConnections)
	n.watchLeaks()
	// Registered last, so it runs first: the agent stops before the link,
	// the tables and podman go.
	t.Cleanup(n.stopAgent)
	return n
}

// claimSlot takes a portal range, link and table no other test uses.
func (n *svcNode) claimSlot() {
	slot := portaltest.Claim(n.t)
	n.slot, n.cidr, n.link, n.table = slot.N, slot.CIDR, slot.Link, slot.Table
	n.watchTable = "cuelet_watch" + strconv.Itoa(slot.N)
}

// addr is the i-th address of the node's portal range.
func (n *svcNode) addr(i int) netip.Addr {
	a := n.cidr.Addr().As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a)
}

// flags are the agent flags every command of the node takes.
func (n *svcNode) flags() []string {
	return []string{
		"--manifests", n.manifests,
		"--podman-url", n.podmanURL,
		"--state-dir", n.stateDir,
		"--run-dir", n.runDir,
		"--portal-cidr", n.cidr.String(),
		"--portal-link", n.link,
		"--nft-table", n.table,
		"--proxy-mode", string(n.mode),
		"--external-address", n.extAddr,
		"--allowed-host-paths", n.hostDir,
		"--metrics-address", "127.0.0.1:0",
		"--log-format", "json",
		"--log-level", "debug",
	}
}

// cuelet runs one command to its end in-process.
func (n *svcNode) cuelet(command string, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	env := &cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code = cli.Run(n.ctx, env, append(append([]string{command}, n.flags()...), args...))
	return out.String(), errb.String(), code
}

// startAgent runs `cuelet run` in-process until stopAgent and waits for
// its first sync pass.
func (n *svcNode) startAgent(args ...string) {
	n.t.Helper()
	n.mu.Lock()
	if n.agent != nil {
		n.mu.Unlock()
		n.t.Fatal("agent already running")
	}
	ctx, cancel := context.WithCancel(n.ctx)
	a := &runningAgent{cancel: cancel, done: make(chan int, 1), log: &lockedBuffer{}}
	n.agent = a
	n.mu.Unlock()
	env := &cli.Env{Stdout: io.Discard, Stderr: a.log, Getenv: func(string) string { return "" }}
	go func() { a.done <- cli.Run(ctx, env, append(append([]string{"run"}, n.flags()...), args...)) }()
	testenv.Eventually(n.t, time.Minute, func() error {
		select {
		case code := <-a.done:
			a.done <- code
			return fmt.Errorf("cuelet run exited with %d:\n%s", code, a.log.String())
		default:
		}
		_, err := n.report()
		return err
	})
}

// stopAgent stops `cuelet run` as SIGTERM would; the log of a failed
// test is shown.
func (n *svcNode) stopAgent() {
	n.mu.Lock()
	a := n.agent
	n.agent = nil
	n.mu.Unlock()
	if a == nil {
		return
	}
	a.cancel()
	select {
	case code := <-a.done:
		if code != 0 {
			n.t.Errorf("cuelet run exited with %d", code)
		}
	case <-time.After(30 * time.Second):
		n.t.Errorf("cuelet run did not stop within 30s")
	}
	if n.t.Failed() {
		n.t.Logf("cuelet run log:\n%s", a.log.String())
	}
}

// report is the running agent's latest report (what `cuelet status --json`
// prints).
func (n *svcNode) report() (*agent.Report, error) {
	req, err := http.NewRequestWithContext(n.ctx, http.MethodGet, "http://cuelet/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.status.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("status: %s: %s", resp.Status, b)
	}
	var rep agent.Report
	return &rep, json.NewDecoder(resp.Body).Decode(&rep)
}

// service is a service as the agent's latest report shows it.
func (n *svcNode) service(name string) (agent.ServiceStatus, error) {
	rep, err := n.report()
	if err != nil {
		return agent.ServiceStatus{}, err
	}
	for _, s := range rep.Services {
		if s.Name == name {
			return s, nil
		}
	}
	return agent.ServiceStatus{}, fmt.Errorf("service %s not in the report", name)
}

// waitService polls the report until cond accepts the service.
func (n *svcNode) waitService(name string, within time.Duration, cond func(agent.ServiceStatus) error) agent.ServiceStatus {
	n.t.Helper()
	var got agent.ServiceStatus
	testenv.Eventually(n.t, within, func() error {
		s, err := n.service(name)
		if err != nil {
			return err
		}
		if err := cond(s); err != nil {
			return fmt.Errorf("service %s: %w (%+v)", name, err, s)
		}
		got = s
		return nil
	})
	return got
}

func endpointCount(want int) func(agent.ServiceStatus) error {
	return func(s agent.ServiceStatus) error {
		if len(s.Ports) != 1 {
			return fmt.Errorf("ports %+v, want one", s.Ports)
		}
		if eps := s.Ports[0].Endpoints; len(eps) != want {
			return fmt.Errorf("%d endpoints %v, want %d", len(eps), eps, want)
		}
		return nil
	}
}

// podIP is a running replica's address on the podman network, from the
// agent's report.
func (n *svcNode) podIP(replica string) string {
	n.t.Helper()
	var ip string
	testenv.Eventually(n.t, 30*time.Second, func() error {
		rep, err := n.report()
		if err != nil {
			return err
		}
		for _, p := range rep.Pods {
			if p.Replica == replica && p.IP != "" {
				ip = p.IP
				return nil
			}
		}
		return fmt.Errorf("replica %s has no address in the report", replica)
	})
	return ip
}

// portalOf is a service's portal IP; the service must have one.
func (n *svcNode) portalOf(name string) netip.Addr {
	n.t.Helper()
	s := n.waitService(name, 30*time.Second, func(s agent.ServiceStatus) error {
		if s.PortalIP == "" {
			return errors.New("no portal")
		}
		return nil
	})
	return netip.MustParseAddr(s.PortalIP)
}

// write puts a manifest in place atomically (the watcher ignores the
// dot-named temporary file).
func (n *svcNode) write(name, content string) {
	n.t.Helper()
	tmp := filepath.Join(n.manifests, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		n.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.manifests, name)); err != nil {
		n.t.Fatal(err)
	}
}

// exec runs a shell script in a container and returns its output, stderr
// included.
func (n *svcNode) exec(container, script string) (string, error) {
	out, err := n.pm.Run(n.ctx, "exec", container, "sh", "-c", "{ "+script+"\n} 2>&1")
	return strings.TrimSpace(out), err
}

func (n *svcNode) mustExec(container, script string) string {
	n.t.Helper()
	out, err := n.exec(container, script)
	if err != nil {
		n.t.Fatalf("exec in %s: %v\n%s", container, err, out)
	}
	return out
}

// containerIDs maps every container's name, infra containers included, to
// its ID.
func (n *svcNode) containerIDs() map[string]string {
	n.t.Helper()
	out, err := n.pm.Run(n.ctx, "ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}")
	if err != nil {
		n.t.Fatal(err)
	}
	ids := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, id, ok := strings.Cut(l, " "); ok {
			ids[name] = id
		}
	}
	return ids
}

// envFile is a replica's services.env on the host.
func (n *svcNode) envFile(replica string) string {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.runDir, "pods", replica, "services.env"))
	if err != nil {
		n.t.Fatal(err)
	}
	return string(b)
}

// buildUDPEcho builds testdata/udpecho statically into the node's host
// dir, for pods to mount: the busybox image has no UDP server.
func (n *svcNode) buildUDPEcho() string {
	n.t.Helper()
	bin := filepath.Join(n.hostDir, "bin")
	cmd := exec.CommandContext(n.ctx, "go", "build", "-o", filepath.Join(bin, "udpecho"), "./testdata/udpecho")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("build udpecho: %v\n%s", err, out)
	}
	return bin
}

// watchLeaks installs a table of the test's own that counts, after
// routing, packets to the portal range that leave through any interface
// but lo: with portals local to the node there must be none. A second
// counter, for packets to the pods' subnet, shows that the chain sees
// traffic at all.
func (n *svcNode) watchLeaks() {
	t := n.t
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: n.watchTable, Family: nftables.TableFamilyIPv4}
	accept := nftables.ChainPolicyAccept
	chain := &nftables.Chain{
		Name: "postrouting", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(300), Policy: &accept,
	}
	conn.AddTable(table)
	conn.DelTable(table)
	conn.AddTable(table)
	conn.AddChain(chain)
	count := func(comment string, dst netip.Prefix, notLo bool) {
		mask := net.CIDRMask(dst.Bits(), 32)
		network := dst.Masked().Addr().As4()
		exprs := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: network[:]},
		}
		if notLo {
			lo := make([]byte, unix.IFNAMSIZ)
			copy(lo, "lo")
			exprs = append(exprs,
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: lo})
		}
		exprs = append(exprs, &expr.Counter{})
		conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
	}
	count("portal range leaving", n.cidr, true)
	if n.pm != nil {
		count("to pods", n.pm.Subnet, false)
	}
	if err := conn.Flush(); err != nil {
		t.Fatalf("install leak counters: %v", err)
	}
	t.Cleanup(func() {
		conn.DelTable(table)
		if err := conn.Flush(); err != nil {
			t.Errorf("remove leak counters: %v", err)
		}
		conn.CloseLasting()
	})
}

// counters reads the packet counters of a table's rules, by chain and
// comment ("chain: comment").
func counters(t *testing.T, tableName string) map[string]uint64 {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, c0 := range chains {
		if c0.Table.Name != tableName {
			continue
		}
		rules, err := conn.GetRules(table, c0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			for _, e := range r.Exprs {
				if c, ok := e.(*expr.Counter); ok {
					out[c0.Name+": "+comment] += c.Packets
				}
			}
		}
	}
	return out
}

// nothingLeaked checks that no packet to the portal range left the node,
// and that the node's own guard never had to stop one on its way out (its
// input rules, which refuse ports without a service, may count).
func (n *svcNode) nothingLeaked() {
	n.t.Helper()
	watch := counters(n.t, n.watchTable)
	if got := watch["postrouting: portal range leaving"]; got != 0 {
		n.t.Errorf("%d packets to the portal range %s left the node", got, n.cidr)
	}
	if n.pm != nil && watch["postrouting: to pods"] == 0 {
		n.t.Errorf("the leak counter saw no packet to the pods either: it does not work")
	}
	guard := counters(n.t, n.table)
	outward := 0
	for rule, packets := range guard {
		if !strings.HasPrefix(rule, "forward: ") && !strings.HasPrefix(rule, "output: ") {
			continue
		}
		outward++
		if packets != 0 {
			n.t.Errorf("guard rule %q stopped %d packets to the portal range", rule, packets)
		}
	}
	if outward == 0 {
		n.t.Errorf("the node's nftables table %s has no forward or output counters: %v", n.table, guard)
	}
}

// hostGet fetches http://addr/path from the host with a fresh connection.
func hostGet(addr netip.AddrPort, path string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr.String() + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

// tcpRefused dials addr from the host and checks that the connection is
// refused (or reset before any data) within a second.
func tcpRefused(addr netip.AddrPort) error {
	start := time.Now()
	c, err := net.DialTimeout("tcp4", addr.String(), 5*time.Second)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		_, err = c.Read(b[:])
		c.Close()
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%s: connected and got %v after %v, want refused", addr, err, time.Since(start))
		}
	}
	if took := time.Since(start); took > time.Second {
		return fmt.Errorf("%s: %v after %v, want refused within 1s", addr, err, took)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %v, want connection refused or reset", addr, err)
	}
	return nil
}

// udpAsk sends msg to addr from a fresh socket and returns the answer.
func udpAsk(addr netip.AddrPort, msg string) (string, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	k, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:k]), nil
}

// udpRefused checks that a datagram to addr gets a port unreachable within
// a second.
func udpRefused(addr netip.AddrPort) error {
	start := time.Now()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("anyone?")); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var b [64]byte
	_, err = c.Read(b[:])
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("UDP %s: %v after %v, want port unreachable", addr, err, time.Since(start))
	}
	if took := time.Since(start); took > time.Second {
		return fmt.Errorf("UDP %s: refused after %v, want within 1s", addr, took)
	}
	return nil
}

// counts tallies lines.
func counts(lines []string) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		out[strings.TrimSpace(l)]++
	}
	return out
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// hasLines reports the wanted lines missing from have.
func missingLines(have string, want ...string) []string {
	got := lines(have)
	var missing []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	return missing
}
