package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cuelet/cuelet/manifests"
)

// spec is the normalized pod spec: what a running replica depends on and
// what only a new container can change. Its JSON is hashed into
// io.cuelet.spec-hash and stored in io.cuelet.spec, so that plan can say
// what changed.
//
// Left out on purpose, because changing them needs no new container:
// replicas (scaling), terminationGracePeriodSeconds (cuelet passes it when
// it stops a pod; see LabelGrace), progressDeadlineSeconds, labels (services select from the manifests, not from
// podman), readiness probes (cuelet runs them), imagePullPolicy (used only
// when a container is created), the content of files volumes (the folder is
// mounted, so cuelet rewrites the files in place) and the service variables
// (the env file is rewritten in place).
type spec struct {
	RestartPolicy         string          `json:"restartPolicy"`
	ShareProcessNamespace bool            `json:"shareProcessNamespace,omitempty"`
	Containers            []specContainer `json:"containers"`
	Volumes               []specVolume    `json:"volumes,omitempty"`
	// DNS is the pod's resolv.conf settings; podman writes them when it
	// creates the infra container, so a change needs a new pod.
	DNS *manifests.PodDNS `json:"dns,omitempty"`
}

type specContainer struct {
	Name         string                    `json:"name"`
	Image        string                    `json:"image"`
	Command      []string                  `json:"command,omitempty"`
	Args         []string                  `json:"args,omitempty"`
	WorkingDir   string                    `json:"workingDir,omitempty"`
	Env          map[string]string         `json:"env,omitempty"`
	Ports        []manifests.ContainerPort `json:"ports,omitempty"`
	VolumeMounts []manifests.VolumeMount   `json:"volumeMounts,omitempty"`
	MemoryBytes  int64                     `json:"memoryBytes,omitempty"`
	CPUs         float64                   `json:"cpus,omitempty"`
}

type specVolume struct {
	Name string `json:"name"`
	Type string `json:"type"`           // emptyDir | persistent | hostPath | files
	Path string `json:"path,omitempty"` // hostPath only
}

// Volume types, as in the manifest.
const (
	volEmptyDir   = "emptyDir"
	volPersistent = "persistent"
	volHostPath   = "hostPath"
	volFiles      = "files"
)

func volumeType(v manifests.Volume) string {
	switch {
	case v.EmptyDir != nil:
		return volEmptyDir
	case v.Persistent != nil:
		return volPersistent
	case v.HostPath != nil:
		return volHostPath
	case v.Files != nil:
		return volFiles
	}
	return ""
}

func normalize(p *manifests.Pod) spec {
	s := spec{RestartPolicy: p.RestartPolicy, ShareProcessNamespace: p.ShareProcessNamespace, DNS: p.DNS}
	for _, c := range p.Containers {
		mem := c.Resources.MemoryBytes
		if mem == 0 && c.Resources.Memory != "" {
			mem, _ = manifests.ParseMemory(c.Resources.Memory) // the schema checked the format
		}
		s.Containers = append(s.Containers, specContainer{
			Name: c.Name, Image: c.Image, Command: c.Command, Args: c.Args,
			WorkingDir: c.WorkingDir, Env: c.Env, Ports: c.Ports, VolumeMounts: c.VolumeMounts,
			MemoryBytes: mem, CPUs: c.Resources.CPUs,
		})
	}
	for _, v := range p.Volumes {
		sv := specVolume{Name: v.Name, Type: volumeType(v)}
		if v.HostPath != nil {
			sv.Path = v.HostPath.Path
		}
		s.Volumes = append(s.Volumes, sv)
	}
	sort.Slice(s.Containers, func(i, j int) bool { return s.Containers[i].Name < s.Containers[j].Name })
	sort.Slice(s.Volumes, func(i, j int) bool { return s.Volumes[i].Name < s.Volumes[j].Name })
	return s
}

func (s spec) json() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // only strings, numbers and bools: cannot fail
	}
	return string(b)
}

// hash is the spec hash: versioned so that a later change of the normalized
// form is seen as a change, not as a collision.
func (s spec) hash() string {
	sum := sha256.Sum256([]byte("v1\n" + s.json()))
	return hex.EncodeToString(sum[:12])
}

// gracePeriod is the pod's terminationGracePeriodSeconds as a duration.
func gracePeriod(p *manifests.Pod) time.Duration {
	return time.Duration(p.TerminationGracePeriodSeconds) * time.Second
}

// SpecHash is the io.cuelet.spec-hash of a pod definition.
func SpecHash(p *manifests.Pod) string { return normalize(p).hash() }

// changes explains, in plan words, why old and new differ (reasons, such
// as "image changed") and field by field, old → new; old comes from the
// io.cuelet.spec label of a running pod. A label that cannot be read
// gives "spec changed" and no fields.
func changes(oldJSON string, new spec) (reasons []string, fields []Change) {
	var old spec
	if oldJSON == "" || json.Unmarshal([]byte(oldJSON), &old) != nil {
		return []string{"spec changed"}, nil
	}
	seen := map[string]bool{}
	// diff records the fields that changed under one reason.
	diff := func(what string, changed []Change) {
		if len(changed) == 0 {
			return
		}
		fields = append(fields, changed...)
		if !seen[what] {
			seen[what] = true
			reasons = append(reasons, what+" changed")
		}
	}
	diff("restartPolicy", AppendChange(nil, "restartPolicy", old.RestartPolicy, new.RestartPolicy))
	diff("shareProcessNamespace", AppendChange(nil, "shareProcessNamespace", old.ShareProcessNamespace, new.ShareProcessNamespace))
	var added []Change
	for _, o := range old.Containers {
		if !slices.ContainsFunc(new.Containers, func(n specContainer) bool { return n.Name == o.Name }) {
			added = append(added, Change{Field: "containers." + o.Name, Old: o})
		}
	}
	for _, n := range new.Containers {
		if !slices.ContainsFunc(old.Containers, func(o specContainer) bool { return o.Name == n.Name }) {
			added = append(added, Change{Field: "containers." + n.Name, New: n})
		}
	}
	diff("containers", added)
	for _, n := range new.Containers {
		i := slices.IndexFunc(old.Containers, func(o specContainer) bool { return o.Name == n.Name })
		if i < 0 {
			continue
		}
		o := old.Containers[i]
		f := "containers." + n.Name + "."
		diff("image", AppendChange(nil, f+"image", o.Image, n.Image))
		diff("command", AppendChange(nil, f+"command", o.Command, n.Command))
		diff("args", AppendChange(nil, f+"args", o.Args, n.Args))
		diff("workingDir", AppendChange(nil, f+"workingDir", o.WorkingDir, n.WorkingDir))
		diff("env", AppendMapChanges(nil, f+"env", o.Env, n.Env))
		diff("ports", AppendChange(nil, f+"ports", o.Ports, n.Ports))
		diff("volumeMounts", AppendChange(nil, f+"volumeMounts", o.VolumeMounts, n.VolumeMounts))
		res := AppendChange(nil, f+"resources.memoryBytes", o.MemoryBytes, n.MemoryBytes)
		diff("resources", AppendChange(res, f+"resources.cpus", o.CPUs, n.CPUs))
	}
	diff("volumes", diffVolumes(old.Volumes, new.Volumes))
	diff("dns", AppendChange(nil, "dns", old.DNS, new.DNS))
	if len(reasons) == 0 {
		reasons = append(reasons, "spec changed")
	}
	return reasons, fields
}

// diffVolumes gives a change per volume added, removed or changed, by name.
func diffVolumes(old, new []specVolume) []Change {
	byName := func(vs []specVolume) map[string]specVolume {
		m := map[string]specVolume{}
		for _, v := range vs {
			m[v.Name] = v
		}
		return m
	}
	o, n := byName(old), byName(new)
	names := slices.Sorted(maps.Keys(o))
	for name := range n {
		if _, ok := o[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []Change
	for _, name := range names {
		ov, inOld := o[name]
		nv, inNew := n[name]
		switch {
		case inOld && inNew && ov == nv:
		case !inOld:
			out = append(out, Change{Field: "volumes." + name, New: nv})
		case !inNew:
			out = append(out, Change{Field: "volumes." + name, Old: ov})
		default:
			out = append(out, Change{Field: "volumes." + name, Old: ov, New: nv})
		}
	}
	return out
}

// Podman object names. Persistent volumes are named by SPEC §7; emptyDir
// volumes get a name with "_", which no replica or volume name can hold,
// so they never collide with a persistent volume.
func persistentVolumeName(replica, volume string) string { return replica + "-" + volume }
func emptyDirVolumeName(replica, volume string) string   { return replica + "_" + volume + "_emptydir" }
func containerName(replica, container string) string     { return replica + "-" + container }

// Folders under the run dir.
func podDir(runDir, replica string) string { return filepath.Join(runDir, "pods", replica) }
func filesDir(runDir, replica, volume string) string {
	return filepath.Join(runDir, "files", replica, volume)
}

// restartedByCuelet is the value of LabelRestartedBy.
const restartedByCuelet = "cuelet"

// envMountPath is where a replica's podDir is mounted in every container.
const envMountPath = "/run/cuelet"

// podSpec builds what the adapter creates for one replica on the named
// node ("": a node without a name, whose pods carry no LabelNode).
func podSpec(r manifests.Replica, node, runDir string, allowedHostPaths []string, serviceEnv []string) (PodSpec, error) {
	s := normalize(r.Pod)
	labels := map[string]string{
		LabelManaged:  "true",
		LabelUnit:     r.Unit,
		LabelPod:      r.Pod.Name,
		LabelReplica:  r.Name,
		LabelIndex:    strconv.Itoa(r.Index),
		LabelSpecHash: s.hash(),
	}
	if node != "" {
		labels[LabelNode] = node
	}
	podLabels := copyMap(labels)
	podLabels[LabelSpec] = s.json()
	podLabels[LabelGrace] = strconv.Itoa(r.Pod.TerminationGracePeriodSeconds)
	podLabels[LabelRestartedBy] = restartedByCuelet
	ps := PodSpec{Name: r.Name, Labels: podLabels, SharePID: r.Pod.ShareProcessNamespace, DNS: r.Pod.DNS, GracePeriod: gracePeriod(r.Pod)}

	type source struct {
		volume, path string
		hostPath     bool
	}
	sources := map[string]source{}
	for _, v := range r.Pod.Volumes {
		vl := copyMap(labels)
		delete(vl, LabelSpecHash)
		vl[LabelVolume] = v.Name
		switch volumeType(v) {
		case volEmptyDir:
			name := emptyDirVolumeName(r.Name, v.Name)
			vl[LabelVolType] = volEmptyDir
			ps.Volumes = append(ps.Volumes, VolumeSpec{Name: name, Labels: vl, Fresh: true})
			sources[v.Name] = source{volume: name}
		case volPersistent:
			name := persistentVolumeName(r.Name, v.Name)
			vl[LabelVolType] = volPersistent
			ps.Volumes = append(ps.Volumes, VolumeSpec{Name: name, Labels: vl})
			sources[v.Name] = source{volume: name}
		case volHostPath:
			p := filepath.Clean(v.HostPath.Path)
			if !manifests.UnderPrefix(p, allowedHostPaths) {
				return PodSpec{}, fmt.Errorf("volume %q: %s: %w", v.Name, p, ErrHostPathNotAllowed)
			}
			sources[v.Name] = source{path: p, hostPath: true}
		case volFiles:
			sources[v.Name] = source{path: filesDir(runDir, r.Name, v.Name)}
		default:
			return PodSpec{}, fmt.Errorf("volume %q: no source", v.Name)
		}
	}

	env := parseEnv(serviceEnv)
	for _, c := range r.Pod.Containers {
		cl := copyMap(labels)
		cl[LabelContainer] = c.Name
		ce := copyMap(env)
		for k, v := range c.Env {
			ce[k] = v
		}
		var sc specContainer
		for _, x := range s.Containers {
			if x.Name == c.Name {
				sc = x
			}
		}
		cs := ContainerSpec{
			Name: containerName(r.Name, c.Name), Labels: cl,
			Image: c.Image, PullPolicy: c.ImagePullPolicy,
			Command: c.Command, Args: c.Args, WorkingDir: c.WorkingDir, Env: ce,
			MemoryBytes: sc.MemoryBytes, CPUs: c.Resources.CPUs,
			RestartPolicy: "no", // cuelet restarts, with backoff (restarts.go)
		}
		for _, m := range c.VolumeMounts {
			src, ok := sources[m.Name]
			if !ok {
				return PodSpec{}, fmt.Errorf("container %q: volumeMount %q names no volume", c.Name, m.Name)
			}
			ro := m.ReadOnly
			if src.volume == "" && isFilesVolume(r.Pod, m.Name) {
				ro = true
			}
			cs.Mounts = append(cs.Mounts, Mount{Volume: src.volume, Source: src.path, Destination: m.MountPath, ReadOnly: ro, HostPath: src.hostPath})
		}
		cs.Mounts = append(cs.Mounts, Mount{Source: podDir(runDir, r.Name), Destination: envMountPath, ReadOnly: true})
		ps.Containers = append(ps.Containers, cs)
	}
	return ps, nil
}

func isFilesVolume(p *manifests.Pod, name string) bool {
	for _, v := range p.Volumes {
		if v.Name == name {
			return v.Files != nil
		}
	}
	return false
}

func parseEnv(kv []string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		if k != "" {
			m[k] = v
		}
	}
	return m
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}
