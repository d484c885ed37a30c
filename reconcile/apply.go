package reconcile

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
)

// ReadinessGate decides when a recreated replica is ready, so that a rollout
// moves on to the next replica. The probe runner implements it; without
// one, running is enough.
type ReadinessGate interface {
	// WaitReady returns nil once the replica passes its readiness probe,
	// or an error when ctx ends first.
	WaitReady(ctx context.Context, r manifests.Replica, pod ObservedPod) error
	// Ready says, without waiting, whether the replica passes it now.
	Ready(r manifests.Replica, pod ObservedPod) bool
}

// Config configures a Reconciler.
type Config struct {
	Podman Podman
	// RunDir is --run-dir: env files and files volumes live below it.
	RunDir string
	// AllowedHostPaths is --allowed-host-paths; hostPath volumes outside
	// them are refused at apply too (the loader refuses them first).
	AllowedHostPaths []string
	// AllowEmpty is --allow-empty.
	AllowEmpty bool
	// NodeLabels are the node's labels: only pods whose nodeSelector
	// matches them run here (SPEC §11). Their kubernetes.io/hostname is
	// the node's name, which the pods created here carry (LabelNode):
	// pods of other nodes on the same podman are left alone.
	NodeLabels map[string]string
	// Readiness is consulted between the replicas of a rollout; optional.
	Readiness ReadinessGate
	// Draining, when set, is called with a replica's name just before it
	// is removed (for a recreate or a removal), so that its endpoints can
	// leave the services first and no new connection reaches a replica
	// being stopped. It may be called from several goroutines at once.
	Draining func(ctx context.Context, replica string)
	// Concurrency bounds the podman operations run at once (default 4).
	Concurrency int
	// RolloutTimeout, when set, bounds the wait of a pass for a recreated
	// replica to run and be ready before the next one is replaced; the
	// pod's progressDeadlineSeconds bounds it anyway.
	RolloutTimeout time.Duration
	// PollInterval is how often a rollout looks at the replica (default 200ms).
	PollInterval time.Duration
	// StepRollouts makes a pass replace at most one replica of each pod
	// definition, and only once the replicas already replaced run and are
	// ready; the next pass (woken by the new replica's start or readiness)
	// takes the next step. The agent uses it, so that a rollout never holds
	// up the other changes of the node. Without it a pass waits for each
	// replaced replica before the next (cuelet apply: one pass, whole
	// rollouts).
	StepRollouts bool
	Log          zerolog.Logger
	// Now is the clock for progress deadlines and crash-loop backoff
	// (default time.Now).
	Now func() time.Time
	// Restarts is the crash-loop state of the containers (default: a new,
	// empty one). The agent keeps it across passes and saves it.
	Restarts *Restarts
}

// Reconciler plans and applies pods against one podman.
type Reconciler struct {
	cfg    Config
	starts failedStarts
}

// New checks the configuration and returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Podman == nil {
		return nil, errors.New("reconcile: no podman")
	}
	if cfg.RunDir == "" {
		return nil, errors.New("reconcile: no run dir")
	}
	dir, err := filepath.Abs(cfg.RunDir)
	if err != nil {
		return nil, fmt.Errorf("reconcile: run dir: %w", err)
	}
	cfg.RunDir = dir
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Restarts == nil {
		cfg.Restarts = NewRestarts()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	return &Reconciler{cfg: cfg}, nil
}

// Desired is what the node should run.
type Desired struct {
	// Units are all units found, valid or not. The pods of an invalid unit
	// are kept as they are; no unit at all guards against mass deletion.
	Units []*manifests.Unit
	// ServiceEnv are the service variables (KEY=VALUE, sorted) of every
	// service of the desired state; see SPEC §3.11.
	ServiceEnv []string
}

// node is the node's name, "" when it has none.
func (r *Reconciler) node() string { return r.cfg.NodeLabels[manifests.HostnameLabel] }

// Owned are the pods of have that this node owns: its managed pods,
// without those another agent on the same podman made (SPEC §11).
func (r *Reconciler) Owned(have []ObservedPod) []ObservedPod { return OwnedPods(have, r.node()) }

func (r *Reconciler) input(d Desired, have []ObservedPod) Input {
	in := Input{Have: have, Node: r.node(), NoUnits: len(d.Units) == 0, AllowEmpty: r.cfg.AllowEmpty}
	for _, u := range d.Units {
		if !u.Valid() {
			in.InvalidUnits = append(in.InvalidUnits, u.ID)
			continue
		}
		for i := range u.Pods {
			// The one place pods are matched to the node: a pod for
			// other nodes has no replica here, so a managed one is
			// removed like a deleted pod, with the reason in the plan.
			if !manifests.TargetsNode(u.Pods[i].NodeSelector, r.cfg.NodeLabels) {
				if in.OtherNodes == nil {
					in.OtherNodes = map[string]bool{}
				}
				in.OtherNodes[u.Pods[i].Name] = true
				continue
			}
			in.Want = append(in.Want, u.Pods[i].ReplicaList(u.ID)...)
		}
	}
	return in
}

// Plan says what Apply would do, changing nothing.
func (r *Reconciler) Plan(ctx context.Context, d Desired) ([]Action, error) {
	have, err := r.cfg.Podman.ListPods(ctx)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	return Plan(r.input(d, have))
}

// PodError is the failure of one pod; it does not stop the others.
type PodError struct {
	Pod  string
	Unit string
	Err  error
}

func (e *PodError) Error() string { return fmt.Sprintf("pod %s: %v", e.Pod, e.Err) }
func (e *PodError) Unwrap() error { return e.Err }

// Result is what one Apply pass did.
type Result struct {
	// Actions are the actions taken (or tried), in plan order.
	Actions []Action
	// Waiting are recreates left for a later pass: with StepRollouts, the
	// rest of a rollout, or a rollout whose last step is not ready yet.
	Waiting []Action
	// Errors are the pods that failed, conflicts included.
	Errors []*PodError
	// Rollouts are the rollouts that wait or are stuck, by pod definition.
	Rollouts []Rollout
	// Restarted are the containers that exited and were started again.
	Restarted []RestartedContainer
}

// RestartedContainer is a container cuelet restarted (SPEC §9).
type RestartedContainer struct {
	Pod       string // pod definition
	Replica   string
	Unit      string
	Container string // name in the manifest
}

// Err joins the per-pod errors; nil when every pod is fine.
func (res Result) Err() error {
	errs := make([]error, len(res.Errors))
	for i, e := range res.Errors {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Apply runs one reconcile pass. The error is for what stops the whole pass
// (podman unreachable, the empty-directory guard); each pod's own failure is
// in Result.Errors and does not stop the others.
func (r *Reconciler) Apply(ctx context.Context, d Desired) (Result, error) {
	have, err := r.cfg.Podman.ListPods(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("list pods: %w", err)
	}
	in := r.input(d, have)
	// The plan sees every pod, to report a wanted name that another node
	// holds; the rest of the pass sees only this node's.
	have = r.Owned(have)
	restartable := r.crashLoops(have)
	in.HeldBack = map[string]bool{}
	for _, c := range restartable {
		if !c.due {
			in.HeldBack[c.id] = true
		}
	}
	in.StartFailed = r.starts.current(have)
	actions, err := Plan(in)
	if err != nil {
		return Result{}, err
	}
	p := &pass{r: r, env: d.ServiceEnv, res: Result{Actions: actions}, wanted: map[string]*manifests.Replica{}, restartable: restartable, have: map[string]ObservedPod{}}
	for _, o := range have {
		p.have[o.Name] = o
	}
	want := inNameOrder(in.Want)
	for i := range want {
		if _, dup := p.wanted[want[i].Name]; !dup { // the first keeps a name, as in Plan
			p.wanted[want[i].Name] = &want[i]
		}
	}
	p.refreshRunDir(have)
	p.run(ctx, p.tasks(have))
	sort.SliceStable(p.res.Errors, func(i, j int) bool { return p.res.Errors[i].Pod < p.res.Errors[j].Pod })
	if err := ctx.Err(); err != nil {
		return p.res, err
	}
	p.cleanRunDir(have)
	return p.res, nil
}

// pass is the state of one Apply.
type pass struct {
	r      *Reconciler
	env    []string
	wanted map[string]*manifests.Replica
	// restartable are the exited containers that their restart policy
	// wants running, by podman name: starting one is a restart.
	restartable map[string]exitedContainer
	// have are the pods podman showed at the start of the pass, by name.
	have map[string]ObservedPod

	mu  sync.Mutex
	res Result
}

func (p *pass) fail(pod, unit string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.Errors = append(p.res.Errors, &PodError{Pod: pod, Unit: unit, Err: err})
}

// refreshRunDir rewrites the run-dir side of the managed pods that stay:
// files volumes and env files change in place, which is why neither is
// part of the spec hash. Creates and recreates write their own.
func (p *pass) refreshRunDir(have []ObservedPod) {
	busy := map[string]bool{}
	for _, a := range p.res.Actions {
		if a.Kind != Start {
			busy[a.Name] = true
		}
	}
	for _, o := range have {
		if !o.Managed() || busy[o.Name] {
			continue
		}
		var err error
		if w, ok := p.wanted[o.Name]; ok {
			err = prepareReplica(p.r.cfg.RunDir, o.Name, w.Pod.Volumes, p.env)
		} else {
			err = writeEnvFile(p.r.cfg.RunDir, o.Name, p.env) // kept pod of an invalid unit
		}
		if err != nil {
			p.fail(o.Name, o.Unit(), err)
		}
	}
}

// tasks turns the actions into independent units of work: every create,
// start and remove alone, the recreates of one pod definition as one chain
// that replaces a replica only once the previous one is ready.
func (p *pass) tasks(have []ObservedPod) []func(context.Context) {
	var tasks []func(context.Context)
	chains := map[string][]Action{}
	var chainOrder []string
	for _, a := range p.res.Actions {
		switch a.Kind {
		case Conflict:
			err := fmt.Errorf("pod exists: %w", ErrConflict)
			if len(a.Reasons) > 0 {
				err = conflictError{strings.Join(a.Reasons, ", ")}
			}
			p.fail(a.Name, a.Unit, err)
			p.r.cfg.Log.Error().Str("unit", a.Unit).Str("pod", a.Name).Str("action", "conflict").
				Err(err).Msg(a.String())
		case Recreate, Create:
			if a.Kind == Create && !a.Rollout {
				tasks = append(tasks, p.task(a))
				continue
			}
			if _, ok := chains[a.Group]; !ok {
				chainOrder = append(chainOrder, a.Group)
			}
			chains[a.Group] = append(chains[a.Group], a)
		default:
			tasks = append(tasks, p.task(a))
		}
	}
	for _, g := range chainOrder {
		chain := chains[g]
		var free, ups []Action
		for _, a := range chain {
			if a.Kind == Create || a.Down || a.Rollout {
				free = append(free, a)
			} else {
				ups = append(ups, a)
			}
		}
		if p.r.cfg.StepRollouts {
			// Replicas that are down or missing cost nothing to replace:
			// they go first, all in this pass. The replicas that serve
			// wait until those run and are ready; then one a pass.
			switch {
			case len(free) > 0:
				chain = free
			default:
				if why, stuck := p.rolloutBusy(g, ups, have); why != "" {
					p.rollout(ups[0], why, stuck)
					chain = nil
				} else {
					chain = ups[:1]
				}
			}
			p.postpone(ups[len(chain)-len(free):])
			if len(chain) == 0 {
				continue
			}
		}
		pending := len(ups) > 0
		tasks = append(tasks, func(ctx context.Context) {
			for i, a := range chain {
				err := p.r.do(ctx, a, p.env)
				if err == nil && !p.r.cfg.StepRollouts && i < len(chain)-1 {
					err = p.r.waitReady(ctx, *a.Replica)
				}
				if err != nil {
					p.fail(a.Name, a.Unit, err)
					if pending || i < len(chain)-1 {
						p.rollout(a, a.Name+": "+err.Error(), true)
					}
					for _, rest := range chain[i+1:] {
						p.r.cfg.Log.Warn().Str("unit", rest.Unit).Str("pod", rest.Name).Str("action", "recreate").
							Msg("rollout stopped at an earlier replica; this one keeps its old spec")
					}
					return
				}
			}
		})
	}
	return tasks
}

// RolloutState says where the rollout of a pod definition stands.
type RolloutState string

// The states of a rollout that has replicas left on the old spec.
const (
	// RolloutWaiting: a replaced replica does not run or is not ready
	// yet, within its progressDeadlineSeconds.
	RolloutWaiting RolloutState = "waiting"
	// RolloutStuck: a replaced replica could not be created, or did not
	// run and become ready within progressDeadlineSeconds. The rollout
	// goes no further until the pod's spec changes; the other replicas
	// keep the old spec.
	RolloutStuck RolloutState = "stuck"
)

// Rollout is a rollout that could not take its next step in a pass.
type Rollout struct {
	Pod   string // pod definition
	Unit  string
	State RolloutState
	// Reason names the replica it waits for and why: "web-1: exited (1)".
	Reason string
}

func (r Rollout) String() string {
	return fmt.Sprintf("rollout %s: %s", r.State, r.Reason)
}

// rollout records that the rollout of a's pod definition cannot go on.
func (p *pass) rollout(a Action, why string, stuck bool) {
	r := Rollout{Pod: a.Group, Unit: a.Unit, State: RolloutWaiting, Reason: why}
	if stuck {
		r.State = RolloutStuck
	}
	p.mu.Lock()
	p.res.Rollouts = append(p.res.Rollouts, r)
	p.mu.Unlock()
	// Waiting is the normal course of a rollout; stuck needs a person.
	ev := p.r.cfg.Log.Debug()
	if stuck {
		ev = p.r.cfg.Log.Warn()
	}
	ev.Str("unit", a.Unit).Str("pod", a.Group).Str("rollout", string(r.State)).Msg(r.String())
}

// task does one action alone.
func (p *pass) task(a Action) func(context.Context) {
	return func(ctx context.Context) {
		if err := p.r.do(ctx, a, p.env); err != nil {
			p.fail(a.Name, a.Unit, err)
			if a.Kind == Start && ctx.Err() == nil {
				p.r.starts.failed(p.have[a.Name], err)
			}
			return
		}
		if a.Kind == Start {
			p.r.starts.forget(a.Name)
			p.restarted(a)
		}
	}
}

// restarted counts the restarts of a start that went through: of the
// containers it named that had exited (a container that never ran, or a
// whole stopped pod, is a start, not a restart).
func (p *pass) restarted(a Action) {
	for _, name := range a.Containers {
		c, ok := p.restartable[name]
		if !ok {
			continue
		}
		p.r.cfg.Restarts.restarted(c.id)
		p.mu.Lock()
		p.res.Restarted = append(p.res.Restarted, RestartedContainer{Pod: c.pod, Replica: c.replica, Unit: c.unit, Container: c.name})
		p.mu.Unlock()
	}
}

// exitedContainer is a container that exited while its restart policy
// wants it running.
type exitedContainer struct {
	id, name           string // podman ID, manifest name
	pod, replica, unit string
	due                bool // its backoff has run out
}

// crashLoops brings the crash-loop state up to date with what podman
// shows, and returns the managed containers that exited while their
// restart policy wants them running, by podman name. A stopped pod (infra
// down) is not a crash loop: repair starts it whole.
func (r *Reconciler) crashLoops(have []ObservedPod) map[string]exitedContainer {
	now := r.cfg.Now()
	out := map[string]exitedContainer{}
	seen := map[string]bool{}
	for _, o := range have {
		if !o.Managed() {
			continue
		}
		cond := ReplicaCondition(o)
		for _, cc := range cond.Containers {
			if cc.ID == "" {
				continue
			}
			seen[cc.ID] = true
			switch cc.Phase {
			case ContainerStopped:
				if !cond.InfraUp {
					continue
				}
				oc, _ := observedContainer(o, cc.Name)
				due, _ := r.cfg.Restarts.exited(oc, now)
				out[oc.Name] = exitedContainer{id: oc.ID, name: cc.Name, pod: o.PodName(), replica: o.Name, unit: o.Unit(), due: due}
			case ContainerRunning, ContainerHeld:
				r.cfg.Restarts.running(cc.ID)
			}
		}
	}
	r.cfg.Restarts.keep(seen)
	return out
}

// rolloutBusy says why the next step of a pod definition's rollout must
// wait: a replica already on the new spec, and not itself to be replaced
// in this chain (a half-made replica is repaired, not waited for), does
// not run or is not ready; or a wanted replica is missing. "" means the
// step may go. stuck is true once the replica waited for is older than
// the pod's progressDeadlineSeconds.
func (p *pass) rolloutBusy(group string, chain []Action, have []ObservedPod) (why string, stuck bool) {
	next := chain[0].Replica
	hash := SpecHash(next.Pod)
	deadline := time.Duration(next.Pod.ProgressDeadlineSeconds) * time.Second
	now := p.r.cfg.Now()
	inChain := map[string]bool{}
	for _, a := range chain {
		inChain[a.Name] = true
	}
	for _, o := range have {
		if !o.Managed() || o.PodName() != group || o.Labels[LabelSpecHash] != hash || inChain[o.Name] {
			continue
		}
		late := deadline > 0 && now.Sub(o.Created) > deadline
		if c := ReplicaCondition(o); !c.Up() {
			if late {
				return fmt.Sprintf("%s not running after %s: %s", o.Name, deadline, c.Reason), true
			}
			return o.Name + ": " + c.Reason, false
		}
		rep := manifests.Replica{Name: o.Name, Index: o.Index(), Unit: next.Unit, Pod: next.Pod}
		if p.r.cfg.Readiness != nil && !p.r.cfg.Readiness.Ready(rep, o) {
			if late {
				return fmt.Sprintf("%s not ready after %s", o.Name, deadline), true
			}
			return o.Name + ": not ready", false
		}
	}
	return "", false
}

// postpone moves actions from the pass's actions to the waiting ones.
func (p *pass) postpone(actions []Action) {
	if len(actions) == 0 {
		return
	}
	later := map[string]bool{}
	for _, a := range actions {
		later[a.Name] = true
	}
	p.res.Waiting = append(p.res.Waiting, actions...)
	p.res.Actions = slices.DeleteFunc(p.res.Actions, func(a Action) bool {
		return (a.Kind == Recreate || a.Kind == Create) && later[a.Name]
	})
}

// run runs the tasks, at most Concurrency at once.
func (p *pass) run(ctx context.Context, tasks []func(context.Context)) {
	sem := make(chan struct{}, p.r.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			t(ctx)
		}()
	}
	wg.Wait()
}

// cleanRunDir removes the folders of replicas that went away without cuelet
// removing them (a pod removed by hand whose definition went too).
func (p *pass) cleanRunDir(have []ObservedPod) {
	keep := map[string]bool{}
	for name := range p.wanted {
		keep[name] = true
	}
	for _, o := range have {
		if o.Managed() {
			keep[o.Name] = true
		}
	}
	if err := removeStaleDirs(p.r.cfg.RunDir, keep); err != nil {
		p.r.cfg.Log.Warn().Err(err).Msg("clean the run dir")
	}
}

var kindNames = map[Kind]string{Create: "create", Recreate: "recreate", Start: "start", Remove: "remove", Conflict: "conflict"}

// draining tells Config.Draining that replica is about to be removed.
func (r *Reconciler) draining(ctx context.Context, replica string) {
	if r.cfg.Draining != nil {
		r.cfg.Draining(ctx, replica)
	}
}

// do carries out one action against podman.
func (r *Reconciler) do(ctx context.Context, a Action, serviceEnv []string) error {
	log := r.cfg.Log.With().Str("unit", a.Unit).Str("pod", a.Name).Str("action", kindNames[a.Kind]).Logger()
	start := time.Now()
	var err error
	switch a.Kind {
	case Create:
		err = r.create(ctx, a, serviceEnv, nil)
	case Recreate:
		// Everything that can fail without podman, and the images, before
		// the old replica goes: a bad spec must not cost a running pod.
		err = r.create(ctx, a, serviceEnv, func(PodSpec) error {
			r.draining(ctx, a.Name)
			if err := r.cfg.Podman.RemovePod(ctx, a.Name, a.Grace); err != nil {
				return fmt.Errorf("remove pod %q: %w", a.Name, err)
			}
			return nil
		})
	case Start:
		if err = r.cfg.Podman.StartPod(ctx, a.Name, a.Containers); err != nil {
			err = fmt.Errorf("start pod %q: %w", a.Name, err)
		}
	case Remove:
		r.draining(ctx, a.Name)
		if err = r.cfg.Podman.RemovePod(ctx, a.Name, a.Grace); err != nil {
			err = fmt.Errorf("remove pod %q: %w", a.Name, err)
			break
		}
		if err = removeReplicaDirs(r.cfg.RunDir, a.Name); err != nil {
			err = fmt.Errorf("remove run dir of pod %q: %w", a.Name, err)
		}
	}
	if err != nil {
		log.Error().Err(err).Msg(a.String())
		return err
	}
	log.Info().Stringer("took", time.Since(start).Round(time.Millisecond)).Msg(a.String())
	return nil
}

// create makes a replica; before, when set, runs once the spec is known and
// before anything is written (a recreate removes the old replica there).
func (r *Reconciler) create(ctx context.Context, a Action, serviceEnv []string, before func(PodSpec) error) error {
	spec, err := podSpec(*a.Replica, r.node(), r.cfg.RunDir, r.cfg.AllowedHostPaths, serviceEnv)
	if err != nil {
		return err
	}
	if err := resolveHostPaths(&spec, r.cfg.AllowedHostPaths); err != nil {
		return err
	}
	// Images first: for a recreate, a missing image must fail before the
	// old replica goes.
	if err := r.cfg.Podman.PullImages(ctx, spec); err != nil {
		return err
	}
	if before != nil {
		if err := before(spec); err != nil {
			return err
		}
	}
	if err := prepareReplica(r.cfg.RunDir, a.Name, a.Replica.Pod.Volumes, serviceEnv); err != nil {
		return err
	}
	if err := r.cfg.Podman.CreatePod(ctx, spec); err != nil {
		return fmt.Errorf("create pod %q: %w", a.Name, err)
	}
	return nil
}

// waitReady waits until a recreated replica runs (and passes the readiness
// gate), so that the rollout can replace the next one.
func (r *Reconciler) waitReady(ctx context.Context, rep manifests.Replica) error {
	limit := time.Duration(rep.Pod.ProgressDeadlineSeconds) * time.Second
	if limit <= 0 || (r.cfg.RolloutTimeout > 0 && r.cfg.RolloutTimeout < limit) {
		limit = r.cfg.RolloutTimeout
	}
	if limit <= 0 {
		limit = 10 * time.Minute // SPEC §9's default of progressDeadlineSeconds
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	var last string
	for {
		pods, err := r.cfg.Podman.ListPods(ctx)
		if err == nil {
			for _, p := range pods {
				if p.Name != rep.Name {
					continue
				}
				if c := ReplicaCondition(p); !c.Up() {
					last = c.Reason
					break
				}
				if r.cfg.Readiness == nil {
					return nil
				}
				if err := r.cfg.Readiness.WaitReady(ctx, rep, p); err != nil {
					return fmt.Errorf("%w: %v", ErrNotReady, err)
				}
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w within %s: %s", ErrNotReady, limit, last)
		case <-t.C:
		}
	}
}
