package podman

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containers/podman/v4/pkg/api/handlers"
	"github.com/containers/podman/v4/pkg/bindings"
	"github.com/containers/podman/v4/pkg/bindings/containers"
	"github.com/containers/podman/v4/pkg/bindings/images"
	"github.com/containers/podman/v4/pkg/bindings/pods"
	"github.com/containers/podman/v4/pkg/bindings/system"
	"github.com/containers/podman/v4/pkg/bindings/volumes"
	"github.com/containers/podman/v4/pkg/domain/entities"
	"github.com/containers/podman/v4/pkg/errorhandling"
	"github.com/containers/podman/v4/pkg/specgen"
	dockercontainer "github.com/docker/docker/api/types"
	spec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cuelet/cuelet/reconcile"
)

// DefaultURL is the default of --podman-url: $CONTAINER_HOST, else the
// rootful podman socket.
func DefaultURL() string {
	if v := os.Getenv("CONTAINER_HOST"); v != "" {
		return v
	}
	return "unix:///run/podman/podman.sock"
}

// UnavailableError says that podman did not answer at URL. It matches
// reconcile.ErrPodmanUnavailable with errors.Is.
type UnavailableError struct {
	URL string
	Err error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("cannot reach podman at %s: %v; is podman.socket running?", e.URL, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, reconcile.ErrPodmanUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == reconcile.ErrPodmanUnavailable }

// DefaultStopTimeout is how long a container being removed gets between
// SIGTERM and SIGKILL, as podman's own default.
const DefaultStopTimeout = 10 * time.Second

// Deadlines of podman calls (SPEC §9: a hung podman stalls nothing else).
// They are generous: on a busy node podman may take many seconds to
// create a container; what they catch is a podman that never answers.
const (
	DefaultCallTimeout = 2 * time.Minute
	DefaultPullTimeout = 10 * time.Minute
)

// Client talks to one podman service. It is safe for concurrent use.
//
// It connects on first use, and again on the next use after a connect
// failed, so that its user (the agent) can start, serve its portals and
// report while podman is not there yet (socket activation, a podman
// upgrade). Once connected, the bindings' HTTP transport dials the socket
// per connection, so the client survives podman restarts by itself.
type Client struct {
	// StopTimeout is the grace period of containers being removed
	// (DefaultStopTimeout). Set it before the client is used.
	StopTimeout time.Duration
	// CacheMaxAge bounds how long ListPods may answer from memory while an
	// Events stream is live and no event came (default 5 min); 0 turns
	// the cache off. Set it before the client is used.
	CacheMaxAge time.Duration
	// CallTimeout bounds each call that podman should answer at once
	// (DefaultCallTimeout; CreatePod gets one per object it makes,
	// RemovePod gets StopTimeout on top of it), and
	// PullImages has PullTimeout (DefaultPullTimeout) instead. A podman
	// whose API accepts connections but never answers then fails the
	// call with an *UnavailableError, instead of stalling the caller for
	// good. Events (a stream) and Exec (its own timeout) have none. Set
	// them before the client is used.
	CallTimeout time.Duration
	PullTimeout time.Duration

	url string

	connMu sync.Mutex
	conn   context.Context // holds the bindings' connection once made; never used for deadlines
	// down is set by a call that could not connect: the next calls look
	// at the socket first (see reachable).
	down atomic.Bool

	writes atomic.Int64
	lists  atomic.Int64
	gen    atomic.Int64 // bumped by every write and every state-changing event

	mu       sync.Mutex
	inspects map[string]inspected // container ID → what only inspect tells
	live     int                  // Events streams running
	liveAt   time.Time            // when one last started or ended
	last     *listing             // the last ListPods result, while valid
}

// listing is a ListPods result and the generation it is valid for.
type listing struct {
	pods []reconcile.ObservedPod
	gen  int64
	at   time.Time
}

// settle is how long after an Events stream starts ListPods still lists:
// podman may start following its event log a moment after it answered.
const settle = time.Second

var _ reconcile.Podman = (*Client)(nil)

// inspected is what ListPods needs from a container inspect. It is cached
// by container ID and revalidated by PID and start time, so a listing
// inspects only new or restarted containers.
type inspected struct {
	pid          int
	startedAt    int64
	restartCount int
	ip           string
	finishedAt   time.Time // to the nanosecond; the listing has seconds
}

// New returns a client for podman at url (empty: DefaultURL). It does not
// connect yet: see Client.
func New(url string) *Client {
	if url == "" {
		url = DefaultURL()
	}
	return &Client{StopTimeout: DefaultStopTimeout, CacheMaxAge: 5 * time.Minute,
		CallTimeout: DefaultCallTimeout, PullTimeout: DefaultPullTimeout, url: url, inspects: map[string]inspected{}}
}

// Dial returns a client for podman at url (empty: DefaultURL) that has
// checked that podman answers. An unreachable podman is an
// *UnavailableError.
func Dial(ctx context.Context, url string) (*Client, error) {
	c := New(url)
	if _, err := c.connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// connect returns the bindings' connection, making it if there is none
// yet. Making it asks podman for its version: an unreachable podman is an
// *UnavailableError, and the next call tries again.
func (c *Client) connect(ctx context.Context) (context.Context, error) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.conn != nil {
		return c.conn, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		// NewConnection pings podman: a hung one would never answer.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	conn, err := bindings.NewConnection(ctx, c.url)
	if err != nil {
		return nil, &UnavailableError{URL: c.url, Err: unwrapConnect(err)}
	}
	// The bindings keep the context they were given for their own use;
	// detach it from ctx so that the end of ctx does not end the client.
	c.conn = context.WithoutCancel(conn)
	return c.conn, nil
}

// APIVersion is the API version podman answered with when the client
// connected ("4.3.1"), or "" before it has connected. A podman upgraded
// under a running client shows the new version after the client's next
// connect, i.e. after cuelet restarts.
func (c *Client) APIVersion() string {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.conn == nil {
		return ""
	}
	return bindings.ServiceVersion(c.conn).String()
}

// URL is the address the client talks to.
func (c *Client) URL() string { return c.url }

// Writes counts the podman calls that changed something since the client
// was made; a no-op reconcile pass must add none.
func (c *Client) Writes() int64 { return c.writes.Load() }

// Lists counts the ListPods calls that asked podman (not the cache).
func (c *Client) Lists() int64 { return c.lists.Load() }

// wrote records a write: it counts and invalidates the cached listing.
func (c *Client) wrote() {
	c.writes.Add(1)
	c.gen.Add(1)
}

// Event is a podman event about a container or a pod.
type Event struct {
	Type   string // "container" or "pod"
	Action string // "died", "start", "remove", "create", …
	ID     string
	Name   string
	Labels map[string]string
	Time   time.Time
}

// callCtx gives the bindings the caller's deadline and cancellation with the
// connection they look up as a context value.
type callCtx struct {
	context.Context
	conn context.Context
}

func (c callCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.conn.Value(key)
}

// call connects if need be and returns ctx for one call, carrying the
// connection, with a deadline d from now (or the caller's, if sooner; d
// <= 0: none of its own). When d is what ends the call, wrap makes its
// error an *UnavailableError: podman did not answer. cancel must be
// called, also when err is not nil.
func (c *Client) call(ctx context.Context, d time.Duration) (_ context.Context, cancel context.CancelFunc, err error) {
	if d <= 0 {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeoutCause(ctx, d, &UnavailableError{URL: c.url, Err: fmt.Errorf("no answer within %s", d)})
	}
	if c.down.Load() {
		if err := c.reachable(ctx); err != nil {
			return nil, cancel, err
		}
	}
	conn, err := c.connect(ctx)
	if err != nil {
		c.down.Store(true)
		return nil, cancel, err
	}
	return callCtx{ctx, conn}, cancel, nil
}

// reachable dials podman's socket once. The bindings try every request
// three times and sleep 0.6 s in all before they give up, so with podman
// away each call of a pass cost that much: a pass took 2 s under load, and
// a service with fixed endpoints written meanwhile missed SPEC §4's 2 s.
// After a failed connection one dial tells at once whether podman is
// back; other than unix:// URLs are left to the bindings.
func (c *Client) reachable(ctx context.Context) error {
	path, ok := strings.CutPrefix(c.url, "unix://")
	if !ok {
		return nil
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err != nil {
		return &UnavailableError{URL: c.url, Err: unwrapConnect(err)}
	}
	conn.Close()
	c.down.Store(false)
	return nil
}

// wrap turns a connection failure, or a call that ran out of its own
// deadline (see call), into an *UnavailableError and names the
// operation; ctx is the call's.
func (c *Client) wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var hung *UnavailableError
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &hung) {
		return fmt.Errorf("%s: %w", op, hung)
	}
	if isConnError(err) {
		c.down.Store(true)
		return fmt.Errorf("%s: %w", op, &UnavailableError{URL: c.url, Err: err})
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isConnError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// unwrapConnect drops the bindings' generic prefix and the HTTP request,
// keeping the cause ("dial unix …: connect: no such file or directory").
func unwrapConnect(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// isNotFound reports a 404, or a 500 whose cause is podman's "no such
// container" (pod, volume): an object removed between podman's lookup and
// its use, such as a container inspected while its pod is being removed.
func isNotFound(err error) bool {
	var e *errorhandling.ErrorModel
	if errors.As(err, &e) {
		return e.ResponseCode == 404 || strings.HasPrefix(e.Because, "no such ")
	}
	return false
}

// ListPods returns every pod with its containers from one call that lists
// all containers: podman copies a pod's labels to its infra container, so
// the infra container stands for its pod. Restart counts and the pod IP
// come from inspect, cached by container ID and revalidated by PID and
// start time, so a pass that finds nothing changed costs that one call.
//
// While an Events stream runs (see Events) and neither an event that
// changes state nor a write came since the last listing, that listing is
// returned again, at most CacheMaxAge old: a resync that finds nothing
// changed then costs no podman call.
//
// A pod without an infra container is not seen; cuelet never makes one.
// Callers must not modify the returned labels.
func (c *Client) ListPods(ctx context.Context) ([]reconcile.ObservedPod, error) {
	c.mu.Lock()
	if l := c.last; l != nil && c.live > 0 && l.gen == c.gen.Load() &&
		time.Since(l.at) < c.CacheMaxAge && l.at.After(c.liveAt.Add(settle)) {
		out := clonePods(l.pods)
		c.mu.Unlock()
		return out, nil
	}
	c.last = nil
	c.mu.Unlock()
	gen, at := c.gen.Load(), time.Now()
	out, err := c.listPods(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.live > 0 && gen == c.gen.Load() {
		c.last = &listing{pods: clonePods(out), gen: gen, at: at}
	}
	c.mu.Unlock()
	return out, nil
}

func clonePods(ps []reconcile.ObservedPod) []reconcile.ObservedPod {
	out := slices.Clone(ps)
	for i := range out {
		out[i].Containers = slices.Clone(out[i].Containers)
	}
	return out
}

func (c *Client) listPods(ctx context.Context) ([]reconcile.ObservedPod, error) {
	cctx, cancel, err := c.call(ctx, c.CallTimeout)
	defer cancel()
	if err != nil {
		return nil, err
	}
	c.lists.Add(1)
	cl, err := containers.List(cctx, new(containers.ListOptions).WithAll(true))
	if err != nil {
		return nil, c.wrap(cctx, "list containers", err)
	}
	byID := map[string]*reconcile.ObservedPod{}
	var order []string
	for _, ct := range cl {
		if ct.Pod == "" || !ct.IsInfra {
			continue
		}
		labels := maps.Clone(ct.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		delete(labels, "io.buildah.version") // the pause image's own label
		byID[ct.Pod] = &reconcile.ObservedPod{
			Name: ct.PodName, ID: ct.Pod, Labels: labels, InfraID: ct.ID, InfraState: ct.State, Created: ct.Created,
		}
		order = append(order, ct.Pod)
	}
	var need []string
	fresh := map[string]bool{}
	c.mu.Lock()
	for _, ct := range cl {
		p := byID[ct.Pod]
		if p == nil {
			continue
		}
		if !ct.IsInfra {
			oc := reconcile.ObservedContainer{
				Name: firstName(ct.Names), ID: ct.ID, Labels: ct.Labels, State: ct.State,
				ExitCode: int(ct.ExitCode), StartedAt: time.Unix(ct.StartedAt, 0),
			}
			if (ct.State == "exited" || ct.State == "stopped") && ct.ExitedAt > 0 {
				oc.FinishedAt = time.Unix(ct.ExitedAt, 0)
			}
			p.Containers = append(p.Containers, oc)
		}
		if !p.Managed() {
			continue
		}
		fresh[ct.ID] = true
		if in, ok := c.inspects[ct.ID]; !ok || in.pid != ct.Pid || in.startedAt != ct.StartedAt {
			need = append(need, ct.ID)
		}
	}
	for id := range c.inspects {
		if !fresh[id] {
			delete(c.inspects, id)
		}
	}
	c.mu.Unlock()

	if err := c.inspectAll(cctx, need); err != nil {
		return nil, err
	}
	out := make([]reconcile.ObservedPod, 0, len(order))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range order {
		p := byID[id]
		if in, ok := c.inspects[p.InfraID]; ok {
			p.IP = in.ip
		}
		for j := range p.Containers {
			if in, ok := c.inspects[p.Containers[j].ID]; ok {
				p.Containers[j].RestartCount = in.restartCount
				if !p.Containers[j].FinishedAt.IsZero() && in.finishedAt.Unix() == p.Containers[j].FinishedAt.Unix() {
					// The same exit: a backoff counted from it ends on time,
					// not up to a second early.
					p.Containers[j].FinishedAt = in.finishedAt
				}
			}
		}
		sort.Slice(p.Containers, func(i, j int) bool { return p.Containers[i].Name < p.Containers[j].Name })
		p.State = podState(p)
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// podState summarizes like `podman pod ps`: Running when every container
// runs, Exited when none does, Degraded in between.
func podState(p *reconcile.ObservedPod) string {
	up, all := 0, 1+len(p.Containers)
	if p.InfraState == "running" {
		up++
	}
	for _, c := range p.Containers {
		if c.State == "running" {
			up++
		}
	}
	switch up {
	case all:
		return "Running"
	case 0:
		return "Exited"
	}
	return "Degraded"
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// inspectAll inspects containers, four at a time, into the cache. A
// container that went away meanwhile is skipped.
func (c *Client) inspectAll(ctx context.Context, ids []string) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			data, err := containers.Inspect(ctx, id, nil)
			if err != nil {
				// Only a podman that does not answer fails the listing.
				// One container podman cannot inspect (a podman killed
				// while it made or removed one can leave it in its
				// database but not in its storage: "getting container
				// from store: container not known") must not stop every
				// pass: it is listed without what inspect adds, and the
				// pass repairs its pod (a start fails, the next pass
				// makes the replica anew).
				if err := c.wrap(ctx, "inspect container "+id, err); errors.Is(err, reconcile.ErrPodmanUnavailable) || ctx.Err() != nil {
					errs[i] = err
				}
				return
			}
			in := inspected{restartCount: int(data.RestartCount)}
			if data.State != nil {
				in.pid = data.State.Pid
				in.startedAt = data.State.StartedAt.Unix()
				in.finishedAt = data.State.FinishedAt
			}
			if ns := data.NetworkSettings; ns != nil {
				in.ip = ns.IPAddress
				names := make([]string, 0, len(ns.Networks))
				for n := range ns.Networks {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					if ip := ns.Networks[n].IPAddress; ip != "" && in.ip == "" {
						in.ip = ip
					}
				}
			}
			c.mu.Lock()
			c.inspects[id] = in
			c.mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// CreatePod creates the volumes and the pod with its infra container,
// starts the pod (its infra container), creates the containers and starts
// the pod again (its containers); the images must be there (PullImages).
// If any step fails the pod is removed again, so a retry starts from
// nothing.
func (c *Client) CreatePod(ctx context.Context, ps reconcile.PodSpec) (err error) {
	// One CallTimeout for each object made: a busy podman may take many
	// seconds for each, and a pod of many containers must not fail for it.
	cctx, cancel, err := c.call(ctx, c.CallTimeout*time.Duration(1+len(ps.Volumes)+len(ps.Containers)))
	defer cancel()
	if err != nil {
		return err
	}
	for _, v := range ps.Volumes {
		if err := c.ensureVolume(cctx, v); err != nil {
			return err
		}
	}

	pg := specgen.NewPodSpecGenerator()
	pg.Name = ps.Name
	pg.Labels = ps.Labels
	pg.SharedNamespaces = []string{"ipc", "net", "uts"}
	if ps.SharePID {
		pg.SharedNamespaces = append(pg.SharedNamespaces, "pid")
	}
	if d := ps.DNS; d != nil {
		for _, s := range d.Servers {
			ip := net.ParseIP(s)
			if ip == nil {
				return fmt.Errorf("create pod: DNS server %q is not an IP address", s)
			}
			pg.DNSServer = append(pg.DNSServer, ip)
		}
		pg.DNSSearch, pg.DNSOption = d.Searches, d.Options
	}
	c.wrote()
	_, err = pods.CreatePodFromSpec(cctx, &entities.PodSpec{PodSpecGen: *pg})
	if isExists(err) {
		if cleared, cerr := c.clearHalfMadePod(cctx, ps); cerr != nil {
			return errors.Join(c.wrap(cctx, "create pod", err), cerr)
		} else if cleared {
			c.wrote()
			_, err = pods.CreatePodFromSpec(cctx, &entities.PodSpec{PodSpecGen: *pg})
		}
	}
	if err != nil {
		return c.wrap(cctx, "create pod", err)
	}
	defer func() {
		if err != nil {
			// Do not leave a pod without its containers: it would look
			// adopted to the next pass. A fresh context, since ctx may be
			// what failed.
			cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if rerr := c.RemovePod(cleanup, ps.Name, ps.GracePeriod); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove half-made pod: %w", rerr))
			}
		}
	}()

	// The infra container first, alone: its start sets up the pod's
	// network, which podman does for one pod at a time (one lock around
	// netavark), so a pod joins that queue as soon as it can and its
	// containers are made while it waits or after (docs/performance.md).
	// The second start below starts the containers the pod has then.
	if err := c.StartPod(ctx, ps.Name, nil); err != nil {
		return fmt.Errorf("start infra container: %w", err)
	}
	stop := graceSeconds(ps.GracePeriod)
	for _, ct := range ps.Containers {
		s := containerSpec(ps.Name, ct)
		s.StopTimeout = &stop
		c.wrote()
		if _, err := containers.CreateWithSpec(cctx, s, nil); err != nil {
			return c.wrap(cctx, fmt.Sprintf("create container %q", ct.Name), err)
		}
	}
	return c.StartPod(ctx, ps.Name, nil)
}

// isExists reports whether podman refused to make something because its
// name is taken ("pod already exists", HTTP 409).
func isExists(err error) bool {
	var e *errorhandling.ErrorModel
	if errors.As(err, &e) {
		return e.ResponseCode == http.StatusConflict || strings.HasSuffix(e.Because, "already exists")
	}
	return false
}

// clearHalfMadePod removes the pod named ps.Name when it is what a podman
// killed in the middle of making one of this node's pods leaves: the pod
// in podman's database, with this spec's managed and node labels, but not
// its infra container. ListPods cannot see such a pod (it finds pods by
// their infra containers), so the plan creates it every pass and every
// create fails with "pod already exists"; the chaos campaign met that. A
// pod with any container, or another's labels, is left alone: the create
// then fails as a conflict.
func (c *Client) clearHalfMadePod(ctx context.Context, ps reconcile.PodSpec) (bool, error) {
	in, err := pods.Inspect(ctx, ps.Name, nil)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, c.wrap(ctx, "inspect pod "+ps.Name, err)
	}
	if in.InfraContainerID != "" || len(in.Containers) > 0 ||
		in.Labels[reconcile.LabelManaged] != "true" || in.Labels[reconcile.LabelNode] != ps.Labels[reconcile.LabelNode] {
		return false, nil
	}
	c.wrote()
	if _, err := pods.Remove(ctx, ps.Name, new(pods.RemoveOptions).WithForce(true)); err != nil && !isNotFound(err) {
		return false, c.wrap(ctx, "remove half-made pod "+ps.Name, err)
	}
	return true, nil
}

func containerSpec(pod string, ct reconcile.ContainerSpec) *specgen.SpecGenerator {
	s := specgen.NewSpecGenerator(ct.Image, false)
	s.Name = ct.Name
	s.Pod = pod
	s.Labels = ct.Labels
	if len(ct.Command) > 0 {
		s.Entrypoint = ct.Command
	}
	s.Command = ct.Args
	s.WorkDir = ct.WorkingDir
	s.Env = ct.Env
	s.RestartPolicy = ct.RestartPolicy
	if ct.MemoryBytes > 0 || ct.CPUs > 0 {
		s.ResourceLimits = &spec.LinuxResources{}
		if ct.MemoryBytes > 0 {
			m := ct.MemoryBytes
			s.ResourceLimits.Memory = &spec.LinuxMemory{Limit: &m}
		}
		if ct.CPUs > 0 {
			period := uint64(100000)
			quota := int64(ct.CPUs * float64(period))
			s.ResourceLimits.CPU = &spec.LinuxCPU{Period: &period, Quota: &quota}
		}
	}
	for _, m := range ct.Mounts {
		opts := []string{"rw"}
		if m.ReadOnly {
			opts = []string{"ro"}
		}
		if m.Volume != "" {
			s.Volumes = append(s.Volumes, &specgen.NamedVolume{Name: m.Volume, Dest: m.Destination, Options: opts})
			continue
		}
		s.Mounts = append(s.Mounts, spec.Mount{
			Type: "bind", Source: m.Source, Destination: m.Destination,
			Options: append(opts, "rbind"),
		})
	}
	return s
}

// PullImages applies each container's pull policy to its image.
func (c *Client) PullImages(ctx context.Context, ps reconcile.PodSpec) error {
	cctx, cancel, err := c.call(ctx, c.PullTimeout)
	defer cancel()
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, ct := range ps.Containers {
		if done[ct.Image+"\x00"+ct.PullPolicy] {
			continue
		}
		done[ct.Image+"\x00"+ct.PullPolicy] = true
		if err := c.ensureImage(cctx, ct.Image, ct.PullPolicy); err != nil {
			return fmt.Errorf("container %q: %w", ct.Name, err)
		}
	}
	return nil
}

// ensureImage applies the pull policy: Never needs the image present,
// IfNotPresent pulls only when missing, Always pulls.
func (c *Client) ensureImage(ctx context.Context, image, policy string) error {
	if policy != "Always" {
		ok, err := images.Exists(ctx, image, nil)
		if err != nil {
			return c.wrap(ctx, "look up image "+image, err)
		}
		if ok {
			return nil
		}
		if policy == "Never" {
			return fmt.Errorf("%s: %w", image, reconcile.ErrImageNotPresent)
		}
	}
	c.wrote()
	if _, err := images.Pull(ctx, image, new(images.PullOptions).WithQuiet(true).WithPolicy("always")); err != nil {
		return c.wrap(ctx, "pull image "+image, err)
	}
	return nil
}

// ensureVolume creates a named volume if missing; a fresh one (emptyDir)
// is removed first if a crash left it behind.
func (c *Client) ensureVolume(ctx context.Context, v reconcile.VolumeSpec) error {
	exists, err := volumes.Exists(ctx, v.Name, nil)
	if err != nil {
		return c.wrap(ctx, "look up volume "+v.Name, err)
	}
	if exists && !v.Fresh {
		return nil
	}
	if exists {
		c.wrote()
		if err := volumes.Remove(ctx, v.Name, new(volumes.RemoveOptions).WithForce(true)); err != nil && !isNotFound(err) {
			return c.wrap(ctx, "remove stale volume "+v.Name, err)
		}
	}
	c.wrote()
	if _, err := volumes.Create(ctx, entities.VolumeCreateOptions{Name: v.Name, Label: v.Labels}, nil); err != nil {
		return c.wrap(ctx, "create volume "+v.Name, err)
	}
	return nil
}

// RemovePod stops the pod's containers (SIGTERM, then SIGKILL after grace,
// or StopTimeout when grace is negative) and removes them with the pod,
// then its emptyDir volumes. Persistent volumes are never removed.
func (c *Client) RemovePod(ctx context.Context, name string, grace time.Duration) error {
	if grace < 0 {
		grace = c.StopTimeout
	}
	cctx, cancel, err := c.call(ctx, grace+c.CallTimeout)
	defer cancel()
	if err != nil {
		return err
	}
	c.wrote()
	_, err = pods.Remove(cctx, name, new(pods.RemoveOptions).WithForce(true).WithTimeout(graceSeconds(grace)))
	if err != nil && !isNotFound(err) {
		return c.wrap(cctx, "remove pod", err)
	}
	vl, err := volumes.List(cctx, new(volumes.ListOptions).WithFilters(map[string][]string{
		"label": {reconcile.LabelReplica + "=" + name, reconcile.LabelVolType + "=emptyDir"},
	}))
	if err != nil {
		return c.wrap(cctx, "list volumes", err)
	}
	for _, v := range vl {
		// Filters on the same key are ORed by some podman versions:
		// check both labels here.
		if v.Labels[reconcile.LabelReplica] != name || v.Labels[reconcile.LabelVolType] != "emptyDir" {
			continue
		}
		c.wrote()
		if err := volumes.Remove(cctx, v.Name, new(volumes.RemoveOptions).WithForce(true)); err != nil && !isNotFound(err) {
			return c.wrap(cctx, "remove volume "+v.Name, err)
		}
	}
	return nil
}

// graceSeconds is a grace period in podman's whole seconds, rounded up so
// that a container never gets less than it was given.
func graceSeconds(d time.Duration) uint {
	if d <= 0 {
		return 0
	}
	return uint((d + time.Second - 1) / time.Second)
}

// StartPod starts the named containers, or the whole pod.
func (c *Client) StartPod(ctx context.Context, name string, ctrs []string) error {
	cctx, cancel, err := c.call(ctx, c.CallTimeout)
	defer cancel()
	if err != nil {
		return err
	}
	if len(ctrs) == 0 {
		c.wrote()
		rep, err := pods.Start(cctx, name, nil)
		if err != nil {
			return c.wrap(cctx, "start pod", err)
		}
		if len(rep.Errs) > 0 {
			return fmt.Errorf("start pod: %w", errors.Join(rep.Errs...))
		}
		return nil
	}
	for _, ct := range ctrs {
		c.wrote()
		if err := containers.Start(cctx, ct, nil); err != nil {
			return c.wrap(cctx, "start container "+ct, err)
		}
	}
	return nil
}

// Events streams container and pod events to fn until ctx ends (nil) or
// the stream breaks (an error; the caller resyncs and calls again). While a
// stream is live, ListPods may answer from memory: see CacheMaxAge.
func (c *Client) Events(ctx context.Context, fn func(Event)) error {
	// A stream: no deadline of its own.
	cctx, cancel, err := c.call(ctx, 0)
	defer cancel()
	if err != nil {
		return err
	}
	conn, err := bindings.GetClient(cctx)
	if err != nil {
		return err
	}
	params, err := new(system.EventsOptions).WithStream(true).
		WithFilters(map[string][]string{"type": {"container", "pod"}}).ToParams()
	if err != nil {
		return err
	}
	resp, err := conn.DoRequest(cctx, nil, http.MethodGet, "/events", params, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return c.wrap(cctx, "events", err)
	}
	defer resp.Body.Close()
	if !resp.IsSuccess() {
		return c.wrap(cctx, "events", resp.Process(nil))
	}
	c.watching(+1)
	defer c.watching(-1)
	dec := json.NewDecoder(resp.Body)
	for {
		var e entities.Event
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("stream ended")
			}
			return c.wrap(cctx, "events", err)
		}
		if ChangesState(string(e.Action)) {
			c.gen.Add(1)
			if e.Type == "container" {
				// Its inspect is stale. The listing's check (PID and
				// start time, in whole seconds) misses a container that
				// exits, starts and exits again within one second, and
				// its exit time would then be the exit before: a
				// crash-loop backoff counted from it ends early.
				c.mu.Lock()
				delete(c.inspects, e.Actor.ID)
				c.mu.Unlock()
			}
		}
		fn(Event{
			Type: string(e.Type), Action: string(e.Action), ID: e.Actor.ID,
			Name: e.Actor.Attributes["name"], Labels: e.Actor.Attributes,
			Time: time.Unix(0, e.TimeNano),
		})
	}
}

// WatchEvents follows the event stream like Events and calls changed for
// every event that can change a pod (not the execs of readiness probes).
func (c *Client) WatchEvents(ctx context.Context, changed func()) error {
	return c.Events(ctx, func(e Event) {
		if ChangesState(e.Action) {
			changed()
		}
	})
}

// ChangesState tells the events that can change what ListPods returns from
// those that cannot: readiness probes exec every few seconds and must not
// empty the cache each time.
func ChangesState(action string) bool {
	switch action {
	case "exec", "exec_died", "health_status", "attach", "top", "stats":
		return false
	}
	return true
}

func (c *Client) watching(delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live += delta
	c.liveAt = time.Now()
	c.gen.Add(1)
}

// Exec runs cmd in the container and waits for its exit code, at most
// timeout. The session is attached (podman 4.3 never marks a detached one
// as finished) and its output discarded. On timeout the command may still
// run inside the container: podman 4 cannot kill an exec session.
func (c *Client) Exec(ctx context.Context, container string, cmd []string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// timeout is the call's deadline: none of the client's own.
	cctx, cancelCall, err := c.call(ctx, 0)
	defer cancelCall()
	if err != nil {
		return -1, err
	}
	fail := func(err error) (int, error) {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return -1, c.wrap(cctx, fmt.Sprintf("exec %q in %s", strings.Join(cmd, " "), container), err)
	}
	id, err := containers.ExecCreate(cctx, container, &handlers.ExecCreateConfig{
		ExecConfig: dockercontainer.ExecConfig{Cmd: cmd, AttachStdout: true, AttachStderr: true},
	})
	if err != nil {
		return fail(err)
	}
	conn, err := bindings.GetClient(cctx)
	if err != nil {
		return fail(err)
	}
	resp, err := conn.DoRequest(cctx, strings.NewReader(`{"Detach":false,"Tty":false}`), http.MethodPost, "/exec/%s/start", nil, nil, id)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if !resp.IsSuccess() {
		return fail(resp.Process(nil))
	}
	// The stream ends when the command does.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fail(err)
	}
	s, err := containers.ExecInspect(cctx, id, nil)
	if err != nil {
		return fail(err)
	}
	return s.ExitCode, nil
}
