package manifests

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// The types below are the decoded, defaulted form of a unit. Field names and
// JSON tags follow the CUE schema (schema/cuelet.cue) one to one: decode
// (decode.go) fills them from the unit's value after the schema has filled
// in every default. Maps from the manifest become sorted slices with a
// Name, so that iteration order, hashing and plan output are deterministic.

// Manifest is the whole value of one unit.
type Manifest struct {
	Pods     []Pod     `json:"-"`
	Services []Service `json:"-"`
}

// Pod is a pod definition; it runs Replicas copies (replica names: see Replica).
type Pod struct {
	Name                  string            `json:"-"`
	Replicas              int               `json:"replicas"`
	Labels                map[string]string `json:"labels,omitempty"`
	NodeSelector          map[string]string `json:"nodeSelector,omitempty"`
	RestartPolicy         string            `json:"restartPolicy"`
	ShareProcessNamespace bool              `json:"shareProcessNamespace"`
	DNSConfig             *PodDNSConfig     `json:"dnsConfig,omitempty"`
	// TerminationGracePeriodSeconds is the time between SIGTERM and
	// SIGKILL when cuelet stops a container (SPEC §9).
	TerminationGracePeriodSeconds int `json:"terminationGracePeriodSeconds"`
	// ProgressDeadlineSeconds bounds how long a rollout waits for a
	// replaced replica to run and be ready before it is stuck (SPEC §9).
	ProgressDeadlineSeconds int         `json:"progressDeadlineSeconds"`
	Containers              []Container `json:"-"`
	Volumes                 []Volume    `json:"-"`
	// DNS is what the pod's resolv.conf gets: the node's DNS server and
	// search domain (Options.DNSAddress, Options.ClusterDomain), then
	// DNSConfig. Nil when the node serves no DNS and DNSConfig is unset:
	// podman's defaults.
	DNS *PodDNS `json:"-"`
}

// PodDNSConfig is the pod field dnsConfig, Kubernetes' shape.
type PodDNSConfig struct {
	Nameservers []string       `json:"nameservers,omitempty"`
	Searches    []string       `json:"searches,omitempty"`
	Options     []PodDNSOption `json:"options,omitempty"`
}

// PodDNSOption is a resolv.conf option, e.g. {name: "ndots", value: "2"}.
type PodDNSOption struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

// PodDNS is a pod's effective DNS settings, in resolv.conf's terms.
type PodDNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"` // "name" or "name:value"
}

// Container is one container of a pod.
type Container struct {
	Name            string            `json:"-"`
	Image           string            `json:"image"`
	ImagePullPolicy string            `json:"imagePullPolicy"`
	Command         []string          `json:"command,omitempty"`
	Args            []string          `json:"args,omitempty"`
	WorkingDir      string            `json:"workingDir,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	Ports           []ContainerPort   `json:"ports,omitempty"`
	VolumeMounts    []VolumeMount     `json:"volumeMounts,omitempty"`
	Resources       Resources         `json:"resources"`
	ReadinessProbe  *Probe            `json:"readinessProbe,omitempty"`
}

// ContainerPort is a port a container declares; services refer to it by name.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"` // "TCP" | "UDP"
}

// VolumeMount mounts a volume of the pod into a container.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly"`
}

// Resources are the container's limits; zero means unlimited.
type Resources struct {
	Memory      string  `json:"memory,omitempty"` // as written, e.g. "256Mi"
	MemoryBytes int64   `json:"memoryBytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
}

// Probe is a readiness probe; exactly one of Exec, TCPSocket, HTTPGet is set.
type Probe struct {
	Exec                *ExecAction      `json:"exec,omitempty"`
	TCPSocket           *TCPSocketAction `json:"tcpSocket,omitempty"`
	HTTPGet             *HTTPGetAction   `json:"httpGet,omitempty"`
	InitialDelaySeconds int              `json:"initialDelaySeconds"`
	PeriodSeconds       int              `json:"periodSeconds"`
	TimeoutSeconds      int              `json:"timeoutSeconds"`
	SuccessThreshold    int              `json:"successThreshold"`
	FailureThreshold    int              `json:"failureThreshold"`
}

// ExecAction runs a command inside the container; exit 0 is success.
type ExecAction struct {
	Command []string `json:"command"`
}

// TCPSocketAction succeeds when a TCP connection to Port opens.
type TCPSocketAction struct {
	Port PortRef `json:"port"`
}

// HTTPGetAction succeeds on an HTTP status 200..399 from GET Path on Port.
type HTTPGetAction struct {
	Path string  `json:"path"`
	Port PortRef `json:"port"`
}

// Volume is a volume of a pod; exactly one source is set.
type Volume struct {
	Name       string            `json:"-"`
	EmptyDir   *EmptyDirSource   `json:"emptyDir,omitempty"`
	Persistent *PersistentSource `json:"persistent,omitempty"`
	HostPath   *HostPathSource   `json:"hostPath,omitempty"`
	Files      map[string]string `json:"files,omitempty"`
}

// EmptyDirSource is a scratch volume that lives and dies with its replica.
type EmptyDirSource struct{}

// PersistentSource is a podman named volume per replica that cuelet never deletes.
type PersistentSource struct {
	// Size is the storage request for a Kubernetes claim (cuelet export);
	// empty means 1Gi. The node does not use it: podman named volumes have
	// no size.
	Size string `json:"size,omitempty"`
}

// HostPathSource bind-mounts a host path (only under an allowed prefix).
type HostPathSource struct {
	Path string `json:"path"`
}

// Service is a stable portal in front of the pods its selector picks, or in
// front of fixed endpoints.
type Service struct {
	Name                          string            `json:"-"`
	Selector                      map[string]string `json:"selector,omitempty"`
	Endpoints                     []string          `json:"endpoints,omitempty"` // "HOST:PORT"
	PortalIP                      string            `json:"portalIP,omitempty"`  // empty: allocated
	SessionAffinity               string            `json:"sessionAffinity"`     // "None" | "ClientIP"
	SessionAffinityTimeoutSeconds int               `json:"sessionAffinityTimeoutSeconds"`
	Ports                         []ServicePort     `json:"ports"`
}

// ServicePort is one port of a service.
type ServicePort struct {
	Name         string  `json:"name,omitempty"`
	Protocol     string  `json:"protocol"` // "TCP" | "UDP"
	Port         int     `json:"port"`
	TargetPort   PortRef `json:"targetPort"`
	ExternalPort int     `json:"externalPort,omitempty"`
}

// PortRef is a port given as a number or as the name of a container port.
type PortRef struct {
	Number int
	Name   string
}

// String returns the number or the name.
func (p PortRef) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Number)
}

// MarshalJSON writes a number or a string, as the manifest had it.
func (p PortRef) MarshalJSON() ([]byte, error) {
	if p.Name != "" {
		return json.Marshal(p.Name)
	}
	return json.Marshal(p.Number)
}

// UnmarshalJSON accepts a number or a string.
func (p *PortRef) UnmarshalJSON(b []byte) error {
	*p = PortRef{}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &p.Name)
	}
	if err := json.Unmarshal(b, &p.Number); err != nil {
		return fmt.Errorf("port must be a number or a name: %w", err)
	}
	return nil
}
