package reconcile

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/cuelet/cuelet/manifests"
)

// Podman is what the reconciler calls of podman. The podman package
// implements it over podman's REST API; planner tests use a fake.
type Podman interface {
	// ListPods returns every pod on the node, managed or not, with its
	// containers. It is read-only.
	ListPods(ctx context.Context) ([]ObservedPod, error)
	// PullImages makes the spec's images present as their pull policies
	// say (ErrImageNotPresent for a missing image with Never).
	PullImages(ctx context.Context, spec PodSpec) error
	// CreatePod creates the pod, its volumes and containers, and starts
	// it; the images are there already (the reconciler calls PullImages
	// first). On error it leaves no half-made pod.
	CreatePod(ctx context.Context, spec PodSpec) error
	// RemovePod removes the pod, its containers and its emptyDir volumes
	// (never a persistent volume). A missing pod is not an error. Its
	// containers get grace between SIGTERM and SIGKILL; a negative grace
	// means the adapter's default.
	RemovePod(ctx context.Context, name string, grace time.Duration) error
	// StartPod starts the named containers of a pod, or, with none named,
	// the whole pod (infra container first).
	StartPod(ctx context.Context, name string, containers []string) error
}

// Labels cuelet puts on every pod and container it creates.
const (
	LabelManaged  = "io.cuelet.managed" // "true"
	LabelUnit     = "io.cuelet.unit"    // ID of the unit that defines the pod
	LabelPod      = "io.cuelet.pod"     // name of the pod definition
	LabelReplica  = "io.cuelet.replica" // replica name (= podman pod name)
	LabelIndex    = "io.cuelet.index"   // replica index
	LabelSpecHash = "io.cuelet.spec-hash"
	LabelSpec     = "io.cuelet.spec" // normalized spec as JSON, pod only
	// LabelGrace is terminationGracePeriodSeconds when the pod was created,
	// pod only: the grace of a pod whose definition is gone. It is not in
	// the spec hash (changing it needs no new container): a pod whose
	// definition is still there is stopped with the manifest's value.
	LabelGrace     = "io.cuelet.grace-period"
	LabelContainer = "io.cuelet.container" // container name in the manifest, containers only
	LabelVolume    = "io.cuelet.volume"    // volume name in the manifest, volumes only
	LabelVolType   = "io.cuelet.volume-type"
)

// LabelNode is the name of the node whose agent created the pod (its
// kubernetes.io/hostname label, --node-name), on pods, containers and
// volumes. Several agents may share one podman (SPEC §11): each plans over
// its own pods only, and a pod of another node is never removed, started
// or replaced. A pod without it comes from a cuelet that did not write it
// and is adopted as it is by the agent that lists it (OwnedBy). It is not
// in the spec hash: a new version of cuelet recreates nothing for it.
const LabelNode = "io.cuelet.node"

// LabelRestartedBy is "cuelet" on pods whose containers podman does not
// restart (podman's restart policy "no"): cuelet restarts them, with
// backoff (SPEC §9). A pod without it comes from an older cuelet, whose
// containers podman restarts behind cuelet's back: it is recreated once.
// Pod only; not in the spec hash, which says what the manifest asks for.
const LabelRestartedBy = "io.cuelet.restarted-by"

// ObservedPod is a pod as podman reports it.
type ObservedPod struct {
	Name       string
	ID         string
	Labels     map[string]string
	State      string // podman's pod status: Running, Degraded, Exited, Created, …
	InfraID    string
	InfraState string // "" when the pod has no infra container
	IP         string // the infra container's address on its first network
	Created    time.Time
	Containers []ObservedContainer // without the infra container
}

// ObservedContainer is a container of an observed pod.
type ObservedContainer struct {
	Name         string // podman name, "<replica>-<container>"
	ID           string
	Labels       map[string]string
	State        string // created, running, exited, stopped, paused, …
	ExitCode     int
	StartedAt    time.Time
	FinishedAt   time.Time // last exit; zero while it runs, or when podman does not say
	RestartCount int       // podman's own restarts (its restart policy), not cuelet's
}

// Managed reports whether cuelet owns the pod.
func (p ObservedPod) Managed() bool { return p.Labels[LabelManaged] == "true" }

// Node is the node whose agent created the pod (LabelNode); "" for a pod
// of a cuelet that did not say.
func (p ObservedPod) Node() string { return p.Labels[LabelNode] }

// OwnedBy reports whether the agent of the named node owns the pod: a
// managed pod of that node, or a managed pod that names no node, which
// the agent adopts without touching it. A pod of another node on the same
// podman is neither touched nor counted (SPEC §11).
func (p ObservedPod) OwnedBy(node string) bool {
	return p.Managed() && (p.Node() == "" || p.Node() == node)
}

// OwnedPods are the pods of have that the named node owns (OwnedBy).
func OwnedPods(have []ObservedPod, node string) []ObservedPod {
	var out []ObservedPod
	for _, p := range have {
		if p.OwnedBy(node) {
			out = append(out, p)
		}
	}
	return out
}

// Unit is the ID of the unit that defined the pod when it was created.
func (p ObservedPod) Unit() string { return p.Labels[LabelUnit] }

// PodName is the name of the pod definition the replica belongs to.
func (p ObservedPod) PodName() string { return p.Labels[LabelPod] }

// Index is the replica index, -1 when the label is missing or bad.
func (p ObservedPod) Index() int {
	i, err := strconv.Atoi(p.Labels[LabelIndex])
	if err != nil {
		return -1
	}
	return i
}

// Ports are the ports the pod's containers declared when it was created,
// from the stored spec; they are reachable on IP.
func (p ObservedPod) Ports() []manifests.ContainerPort {
	var s spec
	if json.Unmarshal([]byte(p.Labels[LabelSpec]), &s) != nil {
		return nil
	}
	var out []manifests.ContainerPort
	for _, c := range s.Containers {
		out = append(out, c.Ports...)
	}
	return out
}

// GracePeriod is the pod's terminationGracePeriodSeconds when it was
// created; negative when the label is missing (a pod of an older cuelet).
func (p ObservedPod) GracePeriod() time.Duration {
	n, err := strconv.Atoi(p.Labels[LabelGrace])
	if err != nil || n < 0 {
		return -1
	}
	return time.Duration(n) * time.Second
}

// Container returns the container with the given manifest name.
func (p ObservedPod) Container(name string) (ObservedContainer, bool) {
	for _, c := range p.Containers {
		if c.Labels[LabelContainer] == name {
			return c, true
		}
	}
	return ObservedContainer{}, false
}

// PodSpec is everything the adapter needs to create one pod replica.
type PodSpec struct {
	Name     string            // podman pod name (the replica name)
	Labels   map[string]string // on the pod; containers get them too
	SharePID bool
	DNS      *manifests.PodDNS // nil: podman's defaults
	// GracePeriod is the time between SIGTERM and SIGKILL when podman
	// stops a container of the pod by itself (its stop timeout).
	GracePeriod time.Duration
	Volumes     []VolumeSpec // podman named volumes to have before the containers
	Containers  []ContainerSpec
}

// VolumeSpec is a podman named volume a pod needs.
type VolumeSpec struct {
	Name   string
	Labels map[string]string
	// Fresh volumes (emptyDir) are removed first if they exist, so the
	// replica starts with an empty one; others are created only if missing.
	Fresh bool
}

// ContainerSpec is one container of a PodSpec.
type ContainerSpec struct {
	Name          string // podman container name
	Labels        map[string]string
	Image         string
	PullPolicy    string   // "Always" | "IfNotPresent" | "Never"
	Command       []string // replaces the image's entrypoint when set
	Args          []string
	WorkingDir    string
	Env           map[string]string // service variables overridden by the container's env
	MemoryBytes   int64             // 0: unlimited
	CPUs          float64           // 0: unlimited
	RestartPolicy string            // podman's: "no", since cuelet restarts containers itself
	Mounts        []Mount
}

// Mount is a bind mount of a host path or a podman named volume.
type Mount struct {
	Volume      string // podman volume name; empty for a bind mount
	Source      string // host path of a bind mount
	Destination string
	ReadOnly    bool
	// HostPath marks the bind mount of a hostPath volume, whose Source
	// the user chose and create checks on the real path.
	HostPath bool
}
