package agenttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/netproxy/portaltest"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// Node is one node for an agent: an isolated podman, the agent's folders
// and its slice of the host's network. Agents come and go on it (Start);
// what they leave on podman and in the state dir stays for the next one.
type Node struct {
	TB     testing.TB
	Podman *podmantest.Podman
	// Client is the test's own view of podman (no event cache).
	Client *podman.Client
	// Events records podman's events from the node's start on.
	Events *Events

	// Dir holds Manifests, StateDir and RunDir; its path is short, as the
	// sockets below it must fit in 108 bytes.
	Dir       string
	Manifests string
	StateDir  string
	RunDir    string
	// PortalCIDR is this node's --portal-cidr, 10.237.<slot>.0/24; Link
	// and Table its --portal-link and --nft-table.
	PortalCIDR netip.Prefix
	Link       string
	Table      string
	// ProxyMode, when set, is every agent's --proxy-mode; a test may
	// change it between agents to switch modes.
	ProxyMode agent.ProxyMode

	ctx    context.Context
	agents int
}

// NewNode starts a podman service (see podmantest.Require for when the
// test skips or fails) and prepares the agent's folders and network
// names. Everything goes when the test ends, agents first.
func NewNode(tb testing.TB) *Node {
	tb.Helper()
	return newNode(tb, podmantest.New(tb))
}

// Beside prepares another node on n's podman, with its own folders,
// portal range, link and table: two agents that share one podman, as a
// fleet's nodes may (SPEC §11), each with its own --node-name.
func (n *Node) Beside() *Node {
	n.TB.Helper()
	return newNode(n.TB, n.Podman)
}

func newNode(tb testing.TB, pm *podmantest.Podman) *Node {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	client, err := podman.Dial(ctx, pm.URL)
	if err != nil {
		tb.Fatal(err)
	}
	// The test's busybox containers may ignore SIGTERM.
	client.StopTimeout = 0
	dir, err := os.MkdirTemp("", "cuelet-e2e-")
	if err != nil {
		tb.Fatal(err)
	}
	n := &Node{
		TB: tb, Podman: pm, Client: client, Dir: dir, ctx: ctx,
		Manifests: filepath.Join(dir, "manifests"),
		StateDir:  filepath.Join(dir, "state"),
		RunDir:    filepath.Join(dir, "run"),
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.MkdirAll(n.Manifests, 0o755); err != nil {
		tb.Fatal(err)
	}
	n.claimSlot()
	n.Events = followEvents(ctx, strings.TrimPrefix(pm.URL, "unix://"), time.Now().Add(-time.Second))
	return n
}

// claimSlot takes a portal range, link and table no other test uses.
func (n *Node) claimSlot() {
	slot := portaltest.Claim(n.TB)
	n.PortalCIDR, n.Link, n.Table = slot.CIDR, slot.Link, slot.Table
}

// Write writes a manifest file below the manifest directory the way an
// editor without atomic save does (truncate, write) and returns the time
// just before the write.
func (n *Node) Write(name, content string) time.Time {
	n.TB.Helper()
	p := filepath.Join(n.Manifests, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		n.TB.Fatal(err)
	}
	at := time.Now()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		n.TB.Fatal(err)
	}
	return at
}

// Remove removes a manifest file and returns the time just before.
func (n *Node) Remove(name string) time.Time {
	n.TB.Helper()
	at := time.Now()
	if err := os.Remove(filepath.Join(n.Manifests, name)); err != nil {
		n.TB.Fatal(err)
	}
	return at
}

// Pods lists the pods on podman by replica name.
func (n *Node) Pods() map[string]reconcile.ObservedPod {
	n.TB.Helper()
	ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
	defer cancel()
	var ps []reconcile.ObservedPod
	var err error
	// A listing races with pods being created and removed by the agent:
	// try a few times before calling it a failure.
	for try := 0; try < 5; try++ {
		if ps, err = n.Client.ListPods(ctx); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		n.TB.Fatal(err)
	}
	out := map[string]reconcile.ObservedPod{}
	for _, p := range ps {
		out[p.Name] = p
	}
	return out
}

// PodState is a pod's containers' IDs and start times, to tell a pod left
// alone from one restarted or recreated.
type PodState map[string]string

// State is PodState for the named pods; a missing pod fails the test.
func (n *Node) State(names ...string) PodState {
	n.TB.Helper()
	pods := n.Pods()
	out := PodState{}
	for _, name := range names {
		p, ok := pods[name]
		if !ok {
			n.TB.Fatalf("pod %s missing", name)
		}
		out[name+"/infra"] = p.InfraID + " " + p.InfraState
		for _, c := range p.Containers {
			out[name+"/"+c.Name] = fmt.Sprintf("%s %s started %s restarts %d", c.ID, c.State, c.StartedAt.Format(time.RFC3339Nano), c.RestartCount)
		}
	}
	return out
}

// Diff lists what differs between two PodStates.
func (s PodState) Diff(other PodState) []string {
	var out []string
	for k, v := range s {
		if other[k] != v {
			out = append(out, fmt.Sprintf("%s: %q became %q", k, v, other[k]))
		}
	}
	for k, v := range other {
		if _, ok := s[k]; !ok {
			out = append(out, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	return out
}

// Running reports nil when the pod exists and all its containers run.
func (n *Node) Running(names ...string) error {
	n.TB.Helper()
	pods := n.Pods()
	for _, name := range names {
		p, ok := pods[name]
		if !ok {
			return fmt.Errorf("pod %s missing", name)
		}
		if p.State != "Running" {
			return fmt.Errorf("pod %s is %s", name, p.State)
		}
	}
	return nil
}

// Status asks the agent's status socket for its report.
func (n *Node) Status() (*agent.Report, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	return agent.FetchStatus(ctx, n.RunDir)
}

// CLI runs the cuelet binary with args and returns its stdout, stderr and
// exit code.
func (n *Node) CLI(args ...string) (stdout, stderr string, code int) {
	n.TB.Helper()
	return CLI(n.TB, args...)
}

// CLI runs the cuelet binary with args and returns its stdout, stderr and
// exit code.
func CLI(tb testing.TB, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(tb), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		tb.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// Options change how Start runs the agent.
type Options struct {
	// Args are more flags for `cuelet run`.
	Args []string
	// Env are more environment variables (WATCHDOG_USEC=…).
	Env []string
	// Notify gives the agent a NOTIFY_SOCKET the test reads.
	Notify bool
	// GitURL runs the agent with --git-url instead of --manifests.
	GitURL string
}

// Agent is one `cuelet run` process.
type Agent struct {
	n       *Node
	cmd     *exec.Cmd
	LogPath string
	// MetricsAddress is its --metrics-address, 127.0.0.1:<free port>.
	MetricsAddress string
	// Notify is its notification socket, when Options.Notify.
	Notify *NotifySocket

	exited  chan struct{}
	waitErr error
}

// Start runs `cuelet run` on the node in the background, logging JSON
// lines to a file that the test log shows if the test fails. The agent is
// killed when the test ends if it still runs.
func (n *Node) Start(o Options) *Agent {
	tb := n.TB
	tb.Helper()
	n.agents++
	num := n.agents
	a := &Agent{n: n, LogPath: filepath.Join(n.Dir, fmt.Sprintf("agent-%d.log", num)), exited: make(chan struct{})}
	a.MetricsAddress = freePort(tb)
	source := []string{"--manifests", n.Manifests}
	if o.GitURL != "" {
		source = []string{"--git-url", o.GitURL}
	}
	args := []string{
		"run",
		"--podman-url", n.Podman.URL,
		"--state-dir", n.StateDir,
		"--run-dir", n.RunDir,
		"--portal-cidr", n.PortalCIDR.String(),
		"--portal-link", n.Link,
		"--nft-table", n.Table,
		"--external-address", "127.0.0.1",
		"--metrics-address", a.MetricsAddress,
		"--log-format", "json",
		"--log-level", "debug",
	}
	if n.ProxyMode != "" {
		args = append(args, "--proxy-mode", string(n.ProxyMode))
	}
	args = append(append(args, source...), o.Args...)
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CONTAINER_HOST", "LISTEN_FDS", "LISTEN_PID":
			continue
		}
		env = append(env, kv)
	}
	if o.Notify {
		a.Notify = newNotifySocket(tb, n.Dir)
		env = append(env, "NOTIFY_SOCKET="+a.Notify.Path)
	}
	env = append(env, o.Env...)
	logf, err := os.Create(a.LogPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	a.cmd = exec.Command(Binary(tb), args...)
	a.cmd.Env = env
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// The agent dies with the test binary, even on a crash.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		a.waitErr = a.cmd.Wait()
		close(a.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			a.cmd.Process.Kill()
			<-a.exited
		}
		if tb.Failed() {
			tb.Logf("log of agent %d (%s):\n%s", num, a.LogPath, tail(a.Log(), 200))
		}
	})
	return a
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// freePort returns 127.0.0.1:<a port free right now>.
func freePort(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// PID is the agent's process ID.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Log is what the agent logged so far.
func (a *Agent) Log() string {
	b, _ := os.ReadFile(a.LogPath)
	return string(b)
}

// Signal sends sig to the agent.
func (a *Agent) Signal(sig syscall.Signal) {
	a.n.TB.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		a.n.TB.Fatalf("signal %s: %v", sig, err)
	}
}

// Exited is closed when the agent has exited.
func (a *Agent) Exited() <-chan struct{} { return a.exited }

// Wait waits at most within for the agent to exit and returns its exit
// code, or an error when it still runs.
func (a *Agent) Wait(within time.Duration) (int, error) {
	select {
	case <-a.exited:
	case <-time.After(within):
		return -1, fmt.Errorf("agent still running after %s", within)
	}
	var exit *exec.ExitError
	if errors.As(a.waitErr, &exit) {
		return exit.ExitCode(), nil
	}
	if a.waitErr != nil {
		return -1, a.waitErr
	}
	return 0, nil
}

// Kill SIGKILLs the agent and waits for it.
func (a *Agent) Kill() {
	a.cmd.Process.Kill()
	<-a.exited
}

// WaitSynced waits until the agent's status socket has the report of a
// finished pass (not the partial one of a first pass under way) that
// started after since and that ok accepts, and returns it.
func (a *Agent) WaitSynced(within time.Duration, since time.Time, ok func(*agent.Report) error) *agent.Report {
	a.n.TB.Helper()
	var rep *agent.Report
	testenv.Eventually(a.n.TB, within, func() error {
		select {
		case <-a.exited:
			return testenv.Permanent(fmt.Errorf("agent exited: %v", a.waitErr))
		default:
		}
		r, err := a.n.Status()
		if err != nil {
			return err
		}
		if r.Partial {
			return errors.New("the first pass is still under way")
		}
		if r.Time.Before(since) {
			return fmt.Errorf("last pass started %s, before %s", r.Time.Format(time.RFC3339Nano), since.Format(time.RFC3339Nano))
		}
		if ok != nil {
			if err := ok(r); err != nil {
				return err
			}
		}
		rep = r
		return nil
	})
	return rep
}

// HTTPGet fetches a path of the agent's metrics server.
func (a *Agent) HTTPGet(path string) (int, string, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + a.MetricsAddress + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

var syncTotal = regexp.MustCompile(`(?m)^cuelet_sync_total (\d+)`)

// SyncPasses reads cuelet_sync_total from the agent's /metrics.
func (a *Agent) SyncPasses() (int, error) {
	_, body, err := a.HTTPGet("/metrics")
	if err != nil {
		return 0, err
	}
	m := syncTotal.FindStringSubmatch(body)
	if m == nil {
		return 0, errors.New("no cuelet_sync_total in /metrics")
	}
	return strconv.Atoi(m[1])
}
