package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/netproxy"
	"github.com/cuelet/cuelet/netproxy/portal"
	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/svcenv"
)

// Podman is what the node needs of podman: what it hands the reconciler
// (which also lists the pods for endpoints and status) and the execs of
// readiness probes. reconcile/podman.Client implements it.
type Podman interface {
	reconcile.Podman
	// Exec runs cmd in a running container and returns its exit code.
	Exec(ctx context.Context, container string, cmd []string, timeout time.Duration) (int, error)
}

// Network keeps the portal addresses on the node (netproxy.Node).
type Network interface {
	Sync(portals []netproxy.Portal) error
}

// Proxy serves the portals (netproxy.Proxy).
type Proxy interface {
	Update(services []netproxy.Service) map[string]error
}

// NodeConfig configures a Node. Network and Proxy are optional: `cuelet
// plan` has neither, `cuelet apply` has no proxy.
type NodeConfig struct {
	ManifestDir string
	Options     manifests.Options
	AllowEmpty  bool
	StateDir    string
	RunDir      string
	Podman      Podman
	Network     Network
	Proxy       Proxy
	// Names, when set, is the DNS server for Options.DNSAddress (dns.go).
	Names Names
	// OnProbeChange is called when a readiness probe changes state, so
	// that endpoints follow at once (the agent kicks a sync).
	OnProbeChange func()
	// RolloutTimeout, when set, bounds the wait of a pass for a recreated
	// replica below its pod's progressDeadlineSeconds.
	RolloutTimeout time.Duration
	// StepRollouts: see reconcile.Config. The agent sets it, so that a
	// rollout waiting for readiness holds up no other change.
	StepRollouts bool
	// Progress, when set, gets every pass's report as it stands before
	// any pod is changed: the units, and the pods and service endpoints
	// as podman has them. A pass may wait minutes for a rollout; the agent
	// shows this report until its first pass is done.
	Progress func(*Report)
	// GitPath is --git-path when ManifestDir holds a folder of a git
	// repository (--git-url): reports and plans name units and files by
	// their path in the repository (InRepository). "" with --manifests,
	// or for the repository's root, where the paths are the same.
	GitPath string
	Log     zerolog.Logger
}

// Node brings this node to the desired state: manifests (with last known
// good versions of invalid units) → portals → service variables → pods →
// endpoints → proxy. Its Sync is the agent's Syncer; `cuelet apply` calls it
// once.
type Node struct {
	cfg      NodeConfig
	lastGood *LastGood
	portals  *portal.Allocator
	applied  *appliedServices
	// ready keeps readiness across agent restarts (readyFile); nil
	// without a proxy.
	ready  *readyRecord
	rec    *reconcile.Reconciler
	probes *probes
	// restarts is the crash-loop state of the containers (SPEC §9), kept
	// in the state dir across agent restarts.
	restarts      *reconcile.Restarts
	restartsSaver restartsSaver
	// units keeps each unit as last checked, so that a pass checks only
	// the units whose files changed (most of a pass's CPU on a node with
	// many units and a quiet podman), and each file as last read, so that
	// it reads only the files whose stat changed.
	units manifests.Cache
	// env is the last pass's service variables (envMemo).
	env envMemo

	// serving is what serveCurrent last pointed the portals at, for drain;
	// drainMu orders drain's updates of the proxy.
	drainMu sync.Mutex
	serving *servingView

	mu       sync.Mutex
	lastHave []reconcile.ObservedPod // the last pods podman showed, for when it is away
	last     *Report
	// served is the desired state and the allocation of the last pass
	// that read units: what an empty folder keeps serving (syncEmpty).
	served *servedState
}

// servedState is what a pass served: its desired state and portals.
type servedState struct {
	d     *desired
	alloc portal.Allocation
}

// NewNode prepares a node; probes run under ctx.
func NewNode(ctx context.Context, cfg NodeConfig) (*Node, error) {
	if cfg.OnProbeChange == nil {
		cfg.OnProbeChange = func() {}
	}
	alloc, err := portal.Open(filepath.Join(cfg.StateDir, portal.StateFile), cfg.Options.PortalCIDR, cfg.Options.DNSAddress)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:      cfg,
		lastGood: NewLastGood(cfg.StateDir),
		portals:  alloc,
		applied:  &appliedServices{path: filepath.Join(cfg.StateDir, appliedServicesFile)},
	}
	n.restartsSaver.path = filepath.Join(cfg.StateDir, restartsFile)
	if n.restarts, err = loadRestarts(n.restartsSaver.path); err != nil {
		// Counts start again from 0; the file is rewritten on the next change.
		cfg.Log.Warn().Err(err).Msg("restart counts lost")
	}
	_, n.restartsSaver.saved = n.restarts.Snapshot() // as the file has it
	n.probes = newProbes(ctx, podmanExecer{exec: cfg.Podman.Exec}, cfg.OnProbeChange, cfg.Log)
	if cfg.Proxy != nil {
		// Only the agent, which serves, keeps readiness across restarts.
		n.ready = &readyRecord{path: filepath.Join(cfg.StateDir, readyFile)}
		seed, err := n.ready.load()
		if err != nil {
			cfg.Log.Warn().Str("action", "probe").Err(err).Msg("every probed container waits for its first probe")
		}
		n.probes.seed = seed
	}
	n.rec, err = reconcile.New(reconcile.Config{
		Podman:           cfg.Podman,
		RunDir:           cfg.RunDir,
		AllowedHostPaths: cfg.Options.AllowedHostPaths,
		AllowEmpty:       cfg.AllowEmpty,
		NodeLabels:       cfg.Options.NodeLabels,
		Readiness:        n.probes,
		Draining:         n.drain,
		Restarts:         n.restarts,
		RolloutTimeout:   cfg.RolloutTimeout,
		StepRollouts:     cfg.StepRollouts,
		Log:              cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// ReadAll makes the next pass read every manifest file again, not only
// those whose stat changed (the agent's resync and SIGHUP).
func (n *Node) ReadAll() { n.units.ReadAll() }

// desired is the state one pass works from.
type desired struct {
	units    []*effectiveUnit
	applied  []*manifests.Unit
	services []ownedService
}

// ownedService is a service with the unit that defines it.
type ownedService struct {
	unit string
	svc  *manifests.Service
}

// load reads the manifests and builds the desired state.
func (n *Node) load(ctx context.Context) (*desired, error) {
	found, err := n.units.LoadDir(ctx, n.cfg.ManifestDir, n.cfg.Options)
	if err != nil {
		return nil, err
	}
	return n.desiredFrom(found), nil
}

// loadRecorded is load for a pass that applies: it saves every unit that
// will be applied as its last good version first. A unit whose copy
// cannot be saved (a full state dir) is not applied in this version but
// kept as it was, like an invalid unit, with the reason as its problem:
// applied, it would leave an older copy on disk that its next invalid edit,
// or an agent restarted meanwhile, rolls its pods back to (SPEC §3.2).
// The errors are the failed saves.
func (n *Node) loadRecorded(ctx context.Context) (*desired, []error, error) {
	found, err := n.units.LoadDir(ctx, n.cfg.ManifestDir, n.cfg.Options)
	if err != nil {
		return nil, nil, err
	}
	d := n.desiredFrom(found)
	var errs []error
	found = slices.Clone(found) // the cache's slice stays as it is
	for i, e := range d.units { // d.units[i] is found[i]'s
		if !e.found.Valid() {
			continue
		}
		if err := n.lastGood.Save(e.found.ID, e.found.Source); err != nil {
			err = stateWriteError(n.cfg.StateDir, err)
			errs = append(errs, err)
			unsaved := e.found.Clone()
			unsaved.Problems = append(unsaved.Problems, manifests.Problem{
				File: unsaved.Files[0], Line: 1, Column: 1,
				Message: "not applied: " + err.Error(),
			})
			unsaved.Pods, unsaved.Services = nil, nil
			found[i] = unsaved
		}
	}
	if len(errs) > 0 {
		d = n.desiredFrom(found)
	}
	return d, errs, nil
}

// desiredFrom builds the desired state from the units found.
func (n *Node) desiredFrom(found []*manifests.Unit) *desired {
	d := &desired{units: desiredState(found, n.lastGood, n.cfg.Options, n.cfg.Log)}
	d.applied = appliedUnits(d.units)
	for _, u := range d.applied {
		for i := range u.Services {
			d.services = append(d.services, ownedService{unit: u.ID, svc: &u.Services[i]})
		}
	}
	slices.SortFunc(d.services, func(a, b ownedService) int { return strings.Compare(a.svc.Name, b.svc.Name) })
	return d
}

// wantPortals is the allocator's input: each service's fixed portal, or the
// zero address for "allocate one".
func (d *desired) wantPortals() map[string]netip.Addr {
	want := map[string]netip.Addr{}
	for _, s := range d.services {
		a, _ := netip.ParseAddr(s.svc.PortalIP) // validated by the loader
		want[s.svc.Name] = a
	}
	return want
}

// portals are the allocated portal addresses with the ports of their
// services, for the node's programming.
func (d *desired) portals(alloc portal.Allocation) []netproxy.Portal {
	byAddr := map[netip.Addr]*netproxy.Portal{}
	for _, a := range alloc.Addrs {
		byAddr[a] = &netproxy.Portal{Addr: a}
	}
	for _, s := range d.services {
		p, ok := byAddr[alloc.Addrs[s.svc.Name]]
		if !ok {
			continue
		}
		for _, sp := range s.svc.Ports {
			p.Ports = append(p.Ports, netproxy.PortalPort{Protocol: sp.Protocol, Port: uint16(sp.Port)})
		}
	}
	out := make([]netproxy.Portal, 0, len(byAddr))
	for _, p := range byAddr {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b netproxy.Portal) int { return a.Addr.Compare(b.Addr) })
	return out
}

// serviceEnv is the Kubernetes-format variables of every service that has
// a portal, from memo when the services and portals are as last time.
func (d *desired) serviceEnv(portals map[string]netip.Addr, memo *envMemo) []string {
	var in []svcenv.Service
	for _, s := range d.services {
		e := svcenv.Service{Name: s.svc.Name, Host: portals[s.svc.Name]}
		for _, p := range s.svc.Ports {
			e.Ports = append(e.Ports, svcenv.Port{Name: p.Name, Protocol: p.Protocol, Port: p.Port})
		}
		in = append(in, e)
	}
	return memo.lines(in)
}

// envMemo keeps the last service variables with what they were made of:
// with 1,000 services, rendering and sorting their variables was a tenth
// of a pass after one unit changed (BenchmarkSyncOneChanged1000), and
// they change only when a service or a portal does. Its zero value is
// ready; a nil *envMemo keeps nothing.
type envMemo struct {
	mu  sync.Mutex
	in  []svcenv.Service
	out []string
}

func (m *envMemo) lines(in []svcenv.Service) []string {
	if m == nil {
		return svcenv.Lines(in)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// DeepEqual, so that a field svcenv.Service gains one day counts too.
	if m.out == nil || !reflect.DeepEqual(in, m.in) {
		m.in, m.out = in, svcenv.Lines(in)
	}
	// Clipped: a caller that appends gets a copy, never the memo's array.
	return slices.Clip(m.out)
}

// reconcileDesired is the reconciler's input: the applied units and the
// variables of every service that has a portal. Services are worked out
// before pods, so a container sees every service of the desired state,
// whatever the order of the manifests (SPEC §3.11).
func (n *Node) reconcileDesired(d *desired, alloc portal.Allocation) reconcile.Desired {
	return reconcile.Desired{Units: d.applied, ServiceEnv: d.serviceEnv(alloc.Addrs, &n.env)}
}

// Sync runs one full pass and reports. It never returns early on a
// problem of one part: a podman that is away still leaves portals and
// proxies serving from the last view, a bad unit still lets others apply.
func (n *Node) Sync(ctx context.Context) *Report {
	return n.inRepository(n.pass(ctx))
}

func (n *Node) pass(ctx context.Context) *Report {
	rep := &Report{}
	d, saveErrs, err := n.loadRecorded(ctx)
	if err != nil {
		// SPEC §3.3 and §7: a missing or unreadable manifest directory
		// changes nothing; what runs keeps running.
		rep.Errors = append(rep.Errors, fmt.Errorf("%w; nothing changed", err)) // the loader names the folder
		return n.keepLast(rep)
	}
	if len(d.units) == 0 && !n.cfg.AllowEmpty {
		if kept := n.syncEmpty(ctx, rep); kept != nil {
			return kept
		}
	}
	rep.Units = unitStatuses(d.units)
	rep.Errors = append(rep.Errors, saveErrs...)

	alloc, err := n.portals.Allocate(d.wantPortals())
	if err != nil {
		// Only the state file fails Allocate; memory stays as on disk.
		rep.Errors = append(rep.Errors, stateWriteError(n.cfg.StateDir, err))
		alloc = portal.Allocation{Addrs: n.portals.Addrs()}
	}
	n.publishNames(d, alloc)
	if n.cfg.Network != nil {
		if err := n.cfg.Network.Sync(append(d.portals(alloc), n.dnsPortal()...)); err != nil {
			rep.Errors = append(rep.Errors, fmt.Errorf("program portals: %w", err))
		}
	}

	n.serveCurrent(ctx, d, alloc, rep)

	res, err := n.rec.Apply(ctx, n.reconcileDesired(d, alloc))
	switch {
	case errors.Is(err, reconcile.ErrPodmanUnavailable):
		rep.PodmanDown = true
		rep.Errors = append(rep.Errors, err)
	case err != nil:
		rep.Errors = append(rep.Errors, err)
	default:
		// Units whose files are gone are removed, so is their last good
		// copy; with the empty-directory guard up (err above) nothing is.
		keep := map[string]bool{}
		for _, e := range d.units {
			keep[e.found.ID] = true
		}
		if err := n.lastGood.Forget(keep); err != nil {
			rep.Errors = append(rep.Errors, stateWriteError(n.cfg.StateDir, err))
		}
	}
	for _, a := range res.Actions {
		rep.Actions = append(rep.Actions, a.String())
	}
	rep.Restarted = res.Restarted
	if err := n.restartsSaver.save(n.restarts); err != nil {
		rep.Errors = append(rep.Errors, stateWriteError(n.cfg.StateDir, err))
	}
	for _, ro := range res.Rollouts {
		rep.Rollouts = append(rep.Rollouts, RolloutStatus{Pod: ro.Pod, Unit: ro.Unit, State: string(ro.State), Reason: ro.Reason})
	}
	podErrs := map[string]string{}
	for _, pe := range res.Errors {
		podErrs[pe.Pod] = pe.Err.Error()
		rep.Errors = append(rep.Errors, pe)
	}

	have := n.observe(ctx, rep)
	replicas := n.replicaViews(d, have)
	rep.Pods = n.podStatuses(have, replicas, podErrs)
	rep.Services = n.serve(ctx, d, alloc, replicas)
	if before, err := n.applied.load(); err == nil {
		for _, a := range servicePlan(before, d.services, alloc) {
			rep.Actions = append(rep.Actions, a.Line)
		}
	}
	if err := n.applied.save(d.services, alloc.Addrs); err != nil {
		rep.Errors = append(rep.Errors, stateWriteError(n.cfg.StateDir, err))
	}
	n.mu.Lock()
	n.last = rep
	n.served = &servedState{d: d, alloc: alloc}
	n.mu.Unlock()
	return rep
}

// syncEmpty is a pass over a manifest folder that holds no unit, without
// --allow-empty (SPEC §3.3, §9). Nothing is deleted and nothing is freed:
// pods, portal allocations, portal addresses, listeners and rules stay as
// the last pass left them, and the services of that pass keep following
// the readiness of their pods. It reports the guard as an error. A node
// that holds nothing (no managed pod, no portal) has nothing to keep: it
// returns nil, and the pass goes on as any other.
func (n *Node) syncEmpty(ctx context.Context, rep *Report) *Report {
	have := n.observe(ctx, rep)
	n.mu.Lock()
	last := n.served
	n.mu.Unlock()
	managed := 0
	for _, p := range have {
		if p.Managed() {
			managed++
		}
	}
	held := len(n.portals.Addrs())
	if managed == 0 && held == 0 && (last == nil || len(last.d.services) == 0) {
		return nil
	}
	rep.Errors = append(rep.Errors, fmt.Errorf(
		"manifest directory %s holds no unit; %d managed pods and %d portals kept, nothing freed: %w",
		n.cfg.ManifestDir, managed, held, reconcile.ErrNoUnits))
	if last == nil {
		// A restarted agent: no proxy of its own serves yet, and the
		// portal addresses and rules stay as the last agent left them.
		rep.Pods = n.podStatuses(have, nil, nil)
	} else {
		replicas := n.replicaViews(last.d, have)
		rep.Pods = n.podStatuses(have, replicas, nil)
		rep.Services = n.serve(ctx, last.d, last.alloc, replicas)
	}
	n.mu.Lock()
	n.last = rep
	n.mu.Unlock()
	return rep
}

// serveCurrent points the portals at the pods as they are, before the
// pass changes any, and hands that report to Progress. Applying may wait
// minutes for a rollout's readiness; the portals of a just started agent
// (the userspace proxy stops with the previous one) and the endpoints of
// every other service must not wait with it.
func (n *Node) serveCurrent(ctx context.Context, d *desired, alloc portal.Allocation, rep *Report) {
	pre := &Report{Units: rep.Units, Errors: slices.Clone(rep.Errors)}
	have := n.observe(ctx, pre)
	replicas := n.replicaViews(d, have)
	pre.Pods = n.podStatuses(have, replicas, nil)
	pre.Services = n.serve(ctx, d, alloc, replicas)
	n.drainMu.Lock()
	n.serving = &servingView{d: d, alloc: alloc, replicas: replicas}
	n.drainMu.Unlock()
	if n.cfg.Progress != nil {
		n.cfg.Progress(n.inRepository(pre))
	}
}

// servingView is what a pass's portals point at before it changes pods.
type servingView struct {
	d        *desired
	alloc    portal.Allocation
	replicas []replicaView
}

// drain takes replica out of the services' endpoints before the
// reconciler removes it (reconcile.Config.Draining): new connections go to
// the other replicas, not to one that is being stopped. The pass's final
// serve, from a fresh listing, puts the replica made in its place back.
func (n *Node) drain(ctx context.Context, replica string) {
	n.drainMu.Lock()
	defer n.drainMu.Unlock()
	if n.serving == nil || n.cfg.Proxy == nil {
		return
	}
	v := n.serving
	kept := slices.DeleteFunc(slices.Clone(v.replicas), func(r replicaView) bool { return r.pod.Name == replica })
	if len(kept) == len(v.replicas) {
		return
	}
	n.serving = &servingView{d: v.d, alloc: v.alloc, replicas: kept}
	n.serve(ctx, v.d, v.alloc, kept)
}

// keepLast fills a report for a pass that changed nothing from the last one.
func (n *Node) keepLast(rep *Report) *Report {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.last != nil {
		rep.Pods, rep.Services, rep.Units = n.last.Pods, n.last.Services, n.last.Units
		rep.PodmanDown = n.last.PodmanDown
	}
	return rep
}

// observe lists this node's pods (without those of another node's agent
// on the same podman, SPEC §11); when podman is away it returns the last
// list, so that endpoints and status stay as they were.
func (n *Node) observe(ctx context.Context, rep *Report) []reconcile.ObservedPod {
	if rep.PodmanDown {
		// The reconciler found podman away a moment ago; asking again
		// would only delay the proxy's update.
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.lastHave
	}
	have, err := n.cfg.Podman.ListPods(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		rep.PodmanDown = errors.Is(err, reconcile.ErrPodmanUnavailable)
		rep.Errors = append(rep.Errors, fmt.Errorf("list pods: %w", err))
		return n.lastHave
	}
	have = n.rec.Owned(have)
	n.lastHave = have
	return have
}

// replicaViews joins the managed pods with their definitions and runs
// their probes.
func (n *Node) replicaViews(d *desired, have []reconcile.ObservedPod) []replicaView {
	defs := map[string]*manifests.Pod{}
	for _, u := range d.applied {
		for i := range u.Pods {
			defs[u.Pods[i].Name] = &u.Pods[i]
		}
	}
	var out []replicaView
	var all []probeTarget
	for _, p := range have {
		if !p.Managed() {
			continue
		}
		def, ok := defs[p.PodName()]
		if !ok {
			continue // going away, or its unit is invalid without a last good copy
		}
		targets := n.probes.targetsFor(def, p)
		all = append(all, targets...)
		out = append(out, replicaView{def: def, pod: p, targets: targets})
	}
	n.probes.sync(all)
	for i := range out {
		out[i].ready = reconcile.ReplicaCondition(out[i].pod).Serving && n.probes.ready(out[i].targets)
		out[i].probeReady = n.probes.readyByContainer(out[i].targets)
	}
	if n.ready != nil {
		if err := n.ready.save(n.probes.readyIDs()); err != nil {
			n.cfg.Log.Warn().Str("action", "probe").Err(err).Msg("a restarted agent will wait for the probes of ready containers")
		}
	}
	slices.SortFunc(out, func(a, b replicaView) int { return strings.Compare(a.pod.Name, b.pod.Name) })
	return out
}

// serve computes every service's endpoints, hands them to the proxy and
// says how each service stands.
func (n *Node) serve(ctx context.Context, d *desired, alloc portal.Allocation, replicas []replicaView) []ServiceStatus {
	var (
		out  []ServiceStatus
		prox []netproxy.Service
	)
	for _, s := range d.services {
		st := ServiceStatus{Name: s.svc.Name, Unit: s.unit}
		ip, ok := alloc.Addrs[s.svc.Name]
		if !ok {
			st.Error = fmt.Sprintf("no portal: %v", alloc.Errors[s.svc.Name])
			out = append(out, st)
			continue
		}
		st.PortalIP = ip.String()
		var eps [][]netip.AddrPort
		if len(s.svc.Endpoints) > 0 {
			fixed, err := resolveEndpoints(ctx, s.svc.Endpoints)
			if err != nil {
				st.Error = err.Error()
			}
			eps = [][]netip.AddrPort{fixed} // fixed endpoints go with exactly one port
		} else {
			eps = podEndpoints(s.svc, replicas)
		}
		ps := netproxy.Service{
			Name: s.svc.Name, PortalIP: ip, SessionAffinity: s.svc.SessionAffinity,
			AffinityTimeout: time.Duration(s.svc.SessionAffinityTimeoutSeconds) * time.Second,
		}
		for i, p := range s.svc.Ports {
			ps.Ports = append(ps.Ports, netproxy.Port{Name: p.Name, Protocol: p.Protocol, Port: p.Port, ExternalPort: p.ExternalPort, Endpoints: eps[i]})
			st.Ports = append(st.Ports, PortStatus{Name: p.Name, Protocol: p.Protocol, Port: p.Port, ExternalPort: p.ExternalPort, Endpoints: addrStrings(eps[i])})
		}
		prox = append(prox, ps)
		out = append(out, st)
	}
	if n.cfg.Proxy != nil {
		errs := n.cfg.Proxy.Update(prox)
		for i := range out {
			if err := errs[out[i].Name]; err != nil {
				out[i].Error = err.Error()
			}
		}
	}
	return out
}

// resolveEndpoints parses fixed "HOST:PORT" endpoints; a host name is
// looked up on every pass, so a changed address is followed.
func resolveEndpoints(ctx context.Context, eps []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	var errs []error
	for _, e := range eps {
		if ap, err := netip.ParseAddrPort(e); err == nil {
			out = append(out, ap)
			continue
		}
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoint %q: %w", e, err))
			continue
		}
		num, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoint %q: bad port", e))
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(lctx, "ip4", host)
		cancel()
		if err != nil || len(ips) == 0 {
			errs = append(errs, fmt.Errorf("endpoint %q: cannot resolve %s: %v", e, host, err))
			continue
		}
		out = append(out, netip.AddrPortFrom(ips[0].Unmap(), uint16(num)))
	}
	return out, errors.Join(errs...)
}

func addrStrings(eps []netip.AddrPort) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.String()
	}
	return out
}

// podStatuses are the managed pods as `cuelet status` shows them.
func (n *Node) podStatuses(have []reconcile.ObservedPod, replicas []replicaView, errs map[string]string) []PodStatus {
	now := time.Now()
	ready := map[string]bool{}
	views := map[string]*replicaView{}
	for i, r := range replicas {
		ready[r.pod.Name] = r.ready
		views[r.pod.Name] = &replicas[i]
	}
	var out []PodStatus
	for _, p := range have {
		if !p.Managed() {
			continue
		}
		st := PodStatus{Replica: p.Name, Pod: p.PodName(), Unit: p.Unit(), State: p.State, Ready: ready[p.Name], Created: p.Created, IP: p.IP, Error: errs[p.Name]}
		st.Phase, st.Condition, st.Containers = containerStatuses(p, views[p.Name])
		st.Restarts, st.Reason, st.NextRestart = containerRestarts(p, n.restarts, now)
		for i := range st.Containers {
			// Podman counts only its own restarts; cuelet's are in n.restarts.
			if oc, ok := p.Container(st.Containers[i].Name); ok {
				if r, ok := n.restarts.Get(oc.ID); ok {
					st.Containers[i].Restarts += r.Restarts
				}
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PodStatus) int { return strings.Compare(a.Replica, b.Replica) })
	return out
}
