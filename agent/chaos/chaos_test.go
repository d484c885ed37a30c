package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/netproxy/portal"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

func TestMain(m *testing.M) {
	code := agenttest.Main(m)
	printTally(os.Stdout)
	os.Exit(code)
}

// scale is how often each fault is injected, and how hard.
type scale struct {
	name string
	// SIGKILL of the agent while it applies killPods pods.
	killRounds, killPods int
	// The podman service killed and restarted; podman frozen for pause.
	podmanKills, pauses int
	pause               time.Duration
	// The state dir's tmpfs filled up.
	diskFulls int
	// Bursts of swaps symlink swaps within swapSpan.
	swapBursts, swaps int
	swapSpan          time.Duration
	// Batches of junkBatch random and truncated .cue files dropped in.
	junkBatches int
	// Rounds of bad rollouts, each kind once a round.
	rolloutRounds int
}

// junkBatch is how many junk files go in before the node is checked.
const junkBatch = 20

// short is what `go test` runs, within `make test`'s time: each fault at
// least once; full is `make chaos`, the campaign of issue 10 that
// docs/performance.md reports.
var (
	short = scale{name: "short",
		killRounds: 3, killPods: 4,
		podmanKills: 2, pauses: 1, pause: 8 * time.Second,
		diskFulls:  3,
		swapBursts: 1, swaps: 100, swapSpan: 10 * time.Second,
		junkBatches:   5,
		rolloutRounds: 1,
	}
	full = scale{name: "full",
		killRounds: 20, killPods: 20,
		podmanKills: 10, pauses: 3, pause: 30 * time.Second,
		diskFulls:  12,
		swapBursts: 5, swaps: 100, swapSpan: 10 * time.Second,
		junkBatches:   50,
		rolloutRounds: 3,
	}
)

// rounds is s with every fault's rounds set to n: n SIGKILLs of the agent,
// n podman kills and n freezes, n disk fills, n bursts of swaps, n batches
// of junk files, n rounds of each bad rollout; the sizes (pods, freeze
// time, swaps a burst) stay those of s.
func (s scale) rounds(n int) scale {
	s.name = fmt.Sprintf("%s, %d rounds", s.name, n)
	s.killRounds, s.podmanKills, s.pauses, s.diskFulls = n, n, n, n
	s.swapBursts, s.junkBatches, s.rolloutRounds = n, n, n
	return s
}

// chosenScale is the scale the environment asks for: CUELET_CHAOS short
// (the default), full or off (ok false: a quick `make test` on a busy
// machine skips the campaign), and CUELET_CHAOS_ROUNDS, when set, the
// rounds of every fault (see scale.rounds), to size a run to the time
// there is.
func chosenScale() (sc scale, ok bool, err error) {
	switch v := os.Getenv("CUELET_CHAOS"); v {
	case "", "short":
		sc = short
	case "full":
		sc = full
	case "off":
		return scale{name: "off"}, false, nil
	default:
		return scale{}, false, fmt.Errorf("CUELET_CHAOS=%q: want short, full or off", v)
	}
	if v := os.Getenv("CUELET_CHAOS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return scale{}, false, fmt.Errorf("CUELET_CHAOS_ROUNDS=%q: want a number of rounds, 1 or more", v)
		}
		sc = sc.rounds(n)
	}
	return sc, true, nil
}

// campaign is the scale of the run (chosenScale); it skips the test when
// the campaign is off.
func campaign(t *testing.T) scale {
	t.Helper()
	sc, ok, err := chosenScale()
	switch {
	case err != nil:
		t.Fatal(err)
	case !ok:
		t.Skip("CUELET_CHAOS=off")
	}
	return sc
}

// Generous bounds, as in agent/e2e: the machines are shared and busy (a
// rollout step of three replicas took a minute at a load of 60 on two
// cores), and a slow answer is not a lost one.
const (
	startWithin    = 2 * time.Minute
	convergeWithin = 5 * time.Minute
	answerWithin   = 10 * time.Second
)

// tally counts, per fault, the injections, those after which every check
// held, and the checks that failed (anything lost).
var tally struct {
	sync.Mutex
	faults []*fault
}

type fault struct {
	name                     string
	injected, survived, lost int
}

// newFault registers a fault for the table printed at the end.
func newFault(name string) *fault {
	f := &fault{name: name}
	tally.Lock()
	tally.faults = append(tally.faults, f)
	tally.Unlock()
	return f
}

// inject counts one injection.
func (f *fault) inject() {
	tally.Lock()
	f.injected++
	tally.Unlock()
}

// after counts the outcome of the checks after an injection.
func (f *fault) after(problems []string) {
	tally.Lock()
	defer tally.Unlock()
	if len(problems) == 0 {
		f.survived++
	}
	f.lost += len(problems)
}

// afterMany counts the outcome of the checks after a batch of count
// injections: all survived, or none.
func (f *fault) afterMany(count int, problems []string) {
	tally.Lock()
	defer tally.Unlock()
	if len(problems) == 0 {
		f.survived += count
	}
	f.lost += len(problems)
}

func printTally(w io.Writer) {
	tally.Lock()
	defer tally.Unlock()
	if len(tally.faults) == 0 {
		return
	}
	sort.SliceStable(tally.faults, func(i, j int) bool { return tally.faults[i].name < tally.faults[j].name })
	sc, _, _ := chosenScale()
	fmt.Fprintf(w, "\nchaos campaign (%s): fault | injected | survived | lost\n", sc.name)
	var in, ok, lost int
	for _, f := range tally.faults {
		fmt.Fprintf(w, "chaos: %s | %d | %d | %d\n", f.name, f.injected, f.survived, f.lost)
		in, ok, lost = in+f.injected, ok+f.survived, lost+f.lost
	}
	fmt.Fprintf(w, "chaos: total | %d | %d | %d\n", in, ok, lost)
}

// sleeper runs until SIGTERM.
const sleeper = `["sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]`

// The node's base units: store keeps a token on a persistent volume
// (written once, on the first start), echo is a pod behind a service, db a
// service in front of a listener of the test on 127.0.0.1.
func storeUnit() string {
	return fmt.Sprintf(`pods: store: {
	labels: app: "store"
	containers: app: {
		image: %q
		command: ["sh", "-c", "[ -s /data/token ] || cat /proc/sys/kernel/random/uuid > /data/token; trap 'exit 0' TERM; sleep 1000000 & wait"]
		volumeMounts: [{name: "data", mountPath: "/data"}]
	}
	volumes: data: persistent: {}
}
`, podmantest.Image)
}

func echoUnit() string {
	return fmt.Sprintf(`pods: echo: {
	labels: app: "echo"
	containers: httpd: {
		image: %q
		command: ["sh", "-c", "echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"]
		ports: [{name: "http", containerPort: 8080}]
		readinessProbe: {httpGet: {path: "/", port: "http"}, periodSeconds: 1}
	}
}
services: echo: {
	selector: app: "echo"
	ports: [{port: 80, targetPort: "http"}]
}
`, podmantest.Image)
}

func dbUnit(endpoint string) string {
	return fmt.Sprintf(`services: db: {
	endpoints: [%q]
	ports: [{port: 5432}]
}
`, endpoint)
}

// podUnit is a unit of pods named names, each with containers side and
// app (two containers make a window inside a pod's creation), version in
// the environment so that a new version recreates them.
func podUnit(version string, names ...string) string {
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, `pods: %q: {
	labels: app: %q
	containers: side: {
		image: %q
		command: %s
	}
	containers: app: {
		image: %q
		command: %s
		env: VERSION: %q
	}
}
`, name, name, podmantest.Image, sleeper, podmantest.Image, sleeper, version)
	}
	return b.String()
}

// node is an agenttest.Node with the campaign's base units, what the
// manifests want on it, and what must not change.
type node struct {
	*agenttest.Node
	t   *testing.T
	a   *agenttest.Agent
	rng *rand.Rand

	// want maps every replica the manifests ask for to its containers.
	want map[string][]string
	// portals are the services' portal IPs as first allocated.
	portals map[string]string
	// token is what store wrote on its volume; volumeCreated the volume's
	// creation time.
	token, volumeCreated string
	// agentArgs are passed to every agent started.
	agentArgs []string
}

// newNode prepares a node with the base units; start runs the agent.
func newNode(t *testing.T) *node {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	n := &node{
		Node: agenttest.NewNode(t),
		t:    t,
		rng:  rand.New(rand.NewPCG(seed, seed>>1)),
		want: map[string][]string{"store": {"app"}, "echo": {"httpd"}},
	}
	n.Write("store.cue", storeUnit())
	n.Write("echo.cue", echoUnit())
	n.Write("db.cue", dbUnit(agenttest.HelloServer(t)))
	return n
}

// start runs the first agent and records the baseline: pods running,
// the volume's token, the portals.
func (n *node) start() {
	t := n.t
	t.Helper()
	n.a = n.Start(agenttest.Options{Args: n.agentArgs})
	if err := poll(startWithin, n.converged); err != nil {
		t.Fatalf("the base units did not come up: %v", err)
	}
	if err := poll(startWithin, func() error {
		rep, err := n.Status()
		if err != nil {
			return err
		}
		n.portals = map[string]string{}
		for _, s := range rep.Services {
			if s.PortalIP == "" {
				return fmt.Errorf("service %s has no portal yet", s.Name)
			}
			n.portals[s.Name] = s.PortalIP
		}
		if n.portals["db"] == "" || n.portals["echo"] == "" {
			return fmt.Errorf("services %v, want db and echo among them", n.portals)
		}
		n.token, n.volumeCreated, err = n.volume()
		if err == nil && n.token == "" {
			err = errors.New("store has not written its token yet")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if problems := n.check(); len(problems) > 0 {
		t.Fatalf("the node is not sound before any fault: %v", problems)
	}
}

// restart starts a new agent (the last one is dead).
func (n *node) restart() {
	n.a = n.Start(agenttest.Options{Args: n.agentArgs})
}

// poll calls cond until it returns nil or within passes, and returns its
// last error then.
func poll(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// psEntry is a container as `podman ps -a --format json` lists it.
type psEntry struct {
	ID      string `json:"Id"`
	Names   []string
	PodName string
	State   string
	IsInfra bool
}

func (n *node) ps() ([]psEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.Podman.Run(ctx, "ps", "-a", "--format", "json")
	if err != nil {
		return nil, err
	}
	var list []psEntry
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("podman ps: %w", err)
	}
	return list, nil
}

// converged reports nil when podman holds exactly what the manifests
// want: every wanted replica a running pod with its infra container and
// each of its containers running once, and no other pod or container.
func (n *node) converged() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods, err := n.Client.ListPods(ctx)
	if err != nil {
		return err
	}
	var problems []string
	seen := map[string]bool{}
	for _, p := range pods {
		seen[p.Name] = true
		if _, ok := n.want[p.Name]; !ok {
			problems = append(problems, "pod "+p.Name+" is not in the manifests")
			continue
		}
		if p.State != "Running" {
			problems = append(problems, fmt.Sprintf("pod %s is %s", p.Name, p.State))
		}
	}
	for name := range n.want {
		if !seen[name] {
			problems = append(problems, "pod "+name+" missing")
		}
	}
	list, err := n.ps()
	if err != nil {
		return err
	}
	count := map[string]int{}
	for _, c := range list {
		name := strings.Join(c.Names, ",")
		containers, wanted := n.want[c.PodName]
		switch {
		case c.IsInfra:
			name = c.PodName + "/infra"
		case !wanted || !slices.Contains(containers, strings.TrimPrefix(name, c.PodName+"-")):
			problems = append(problems, fmt.Sprintf("orphan container %s (pod %q, %s)", name, c.PodName, c.State))
			continue
		}
		count[name]++
		if c.State != "running" {
			problems = append(problems, fmt.Sprintf("container %s is %s", name, c.State))
		}
	}
	for pod, containers := range n.want {
		for _, c := range append([]string{"infra"}, containers...) {
			name := pod + "-" + c
			if c == "infra" {
				name = pod + "/infra"
			}
			if count[name] != 1 {
				problems = append(problems, fmt.Sprintf("container %s %d times", name, count[name]))
			}
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// volume returns the token on store's persistent volume and the volume's
// creation time.
func (n *node) volume() (token, created string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.Podman.Run(ctx, "volume", "inspect", "store-data")
	if err != nil {
		return "", "", err
	}
	var vs []struct {
		Mountpoint string
		CreatedAt  string
	}
	if err := json.Unmarshal([]byte(out), &vs); err != nil || len(vs) != 1 {
		return "", "", fmt.Errorf("volume inspect store-data: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(vs[0].Mountpoint, "token"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	return strings.TrimSpace(string(b)), vs[0].CreatedAt, nil
}

// check waits for the node to converge after a fault and returns every
// promise broken: pods not running once, orphans, a pass that still has
// something to do, the volume's data, portals not answering or moved. It
// reports each with t.Errorf too.
func (n *node) check() (problems []string) {
	t := n.t
	t.Helper()
	add := func(format string, args ...any) {
		t.Helper()
		p := fmt.Sprintf(format, args...)
		t.Error(p)
		problems = append(problems, p)
	}
	start := time.Now()
	if err := poll(convergeWithin, n.converged); err != nil {
		add("not converged within %s: %v", convergeWithin, err)
	}
	converged := time.Now()
	// A pass now finds nothing to do and no error.
	if err := poll(convergeWithin, n.quiet); err != nil {
		add("no quiet pass within %s: %v", convergeWithin, err)
	}
	t.Logf("converged in %v, quiet pass %v later", converged.Sub(start).Round(time.Millisecond), time.Since(converged).Round(time.Millisecond))
	if token, created, err := n.volume(); err != nil || token != n.token || created != n.volumeCreated {
		add("volume store-data: token %q created %s (%v), want %q created %s", token, created, err, n.token, n.volumeCreated)
	}
	for _, p := range n.portalProblems() {
		add("%s", p)
	}
	return problems
}

// quiet asks the agent for a pass (SIGHUP) and reports nil when that pass
// had no action and no error.
func (n *node) quiet() error {
	select {
	case <-n.a.Exited():
		return errors.New("the agent exited")
	default:
	}
	since := time.Now()
	if err := syscall.Kill(n.a.PID(), syscall.SIGHUP); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return poll(30*time.Second, func() error {
		rep, err := n.Status()
		if err != nil {
			return err
		}
		if rep.Partial || rep.Time.Before(since) {
			return errors.New("no pass since the SIGHUP yet")
		}
		if len(rep.Actions) > 0 || len(rep.Errors) > 0 {
			return fmt.Errorf("the pass after the SIGHUP did %v, errors %v", rep.Actions, rep.Errors)
		}
		return nil
	})
}

// portalProblems checks that the services of the start have their first
// portal IPs, in the status and in the state dir, and that db and echo
// answer.
func (n *node) portalProblems() []string {
	var problems []string
	rep, err := n.Status()
	if err != nil {
		return []string{fmt.Sprintf("status: %v", err)}
	}
	for name, ip := range n.portals {
		got := ""
		for _, s := range rep.Services {
			if s.Name == name {
				got = s.PortalIP
			}
		}
		if got != ip {
			problems = append(problems, fmt.Sprintf("service %s: portal %q in the status, was %s", name, got, ip))
		}
	}
	saved, err := savedPortals(n.StateDir)
	if err != nil {
		problems = append(problems, err.Error())
	}
	for name, ip := range n.portals {
		if saved[name] != ip {
			problems = append(problems, fmt.Sprintf("service %s: portal %q in the state dir, was %s", name, saved[name], ip))
		}
	}
	// The echo replica may just have been recreated (podman restart):
	// give its readiness probe a few seconds.
	if err := poll(20*time.Second, func() error { return n.answers() }); err != nil {
		problems = append(problems, err.Error())
	}
	return problems
}

// answers reports nil when both portals answer once.
func (n *node) answers() error {
	return errors.Join(
		dialHello(n.portals["db"]+":5432"),
		getHello(n.portals["echo"]+":80"),
	)
}

// savedPortals reads the allocations in the state dir.
func savedPortals(stateDir string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, portal.StateFile))
	if err != nil {
		return nil, fmt.Errorf("portal allocations: %w", err)
	}
	var st struct {
		Portals map[string]string `json:"portals"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("portal allocations damaged: %w: %q", err, b)
	}
	return st.Portals, nil
}

// dialHello connects to addr and expects the hello line.
func dialHello(addr string) error {
	c, err := net.DialTimeout("tcp", addr, answerWithin)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(answerWithin))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read from %s: %w", addr, err)
	}
	if line != "hello\n" {
		return fmt.Errorf("%s answered %q", addr, line)
	}
	return nil
}

var httpClient = &http.Client{Timeout: answerWithin, Transport: &http.Transport{DisableKeepAlives: true}}

// getHello fetches / from addr and expects hello.
func getHello(addr string) error {
	resp, err := httpClient.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK || string(b) != "hello\n" {
		return fmt.Errorf("GET %s: %s %q", addr, resp.Status, b)
	}
	return nil
}

// serving samples both portals and the status socket every interval until
// stop is closed, and returns the failures.
func (n *node) serving(interval time.Duration, stop <-chan struct{}) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		var fails []string
		for {
			select {
			case <-stop:
				out <- fails
				return
			case <-time.After(interval):
			}
			at := time.Now().Format("15:04:05.000")
			if err := n.answers(); err != nil {
				fails = append(fails, at+" portal: "+err.Error())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := agent.FetchStatus(ctx, n.RunDir)
			cancel()
			if err != nil {
				fails = append(fails, at+" status: "+err.Error())
			}
		}
	}()
	return out
}
