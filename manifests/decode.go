package manifests

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
)

// decode turns a unit's value, unified with #Manifest and valid, into the
// model. The schema has filled in every default, so the regular fields
// carry it all.
//
// It looks the model's fields up in the value rather than exporting it to
// JSON and decoding that, or using cue.Value.Decode: see BenchmarkDecode in
// decode_test.go for the three side by side.
func decode(v cue.Value) (Manifest, error) {
	var m Manifest
	err := eachKnown(v, manifestFields, func(name string, f cue.Value) error {
		switch name {
		case "pods":
			return eachField(f, func(name string, pv cue.Value) error {
				p, err := decodePod(name, pv)
				m.Pods = append(m.Pods, p)
				return err
			})
		case "services":
			return eachField(f, func(name string, sv cue.Value) error {
				s, err := decodeService(sv)
				s.Name = name
				m.Services = append(m.Services, s)
				return err
			})
		}
		return nil
	})
	if err != nil {
		return Manifest{}, err
	}
	slices.SortFunc(m.Pods, func(a, b Pod) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(m.Services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	// After sorting, so that of several quantities too large the first by
	// name is the one reported, whatever the order in the file.
	for _, p := range m.Pods {
		for i := range p.Containers {
			c := &p.Containers[i]
			if c.Resources.Memory == "" {
				continue
			}
			n, err := ParseMemory(c.Resources.Memory)
			if err != nil {
				return Manifest{}, &fieldError{path: []string{"pods", p.Name, "containers", c.Name, "resources", "memory"}, err: err}
			}
			c.Resources.MemoryBytes = n
		}
	}
	return m, nil
}

func decodePod(name string, v cue.Value) (Pod, error) {
	p := Pod{Name: name}
	err := eachKnown(v, podFields, func(field string, f cue.Value) error {
		var err error
		switch field {
		case "replicas":
			p.Replicas, err = intOf(f)
		case "labels":
			p.Labels, err = stringMap(f)
		case "restartPolicy":
			p.RestartPolicy, err = f.String()
		case "shareProcessNamespace":
			p.ShareProcessNamespace, err = f.Bool()
		case "nodeSelector":
			p.NodeSelector, err = stringMap(f)
		case "terminationGracePeriodSeconds":
			p.TerminationGracePeriodSeconds, err = intOf(f)
		case "progressDeadlineSeconds":
			p.ProgressDeadlineSeconds, err = intOf(f)
		case "dnsConfig":
			p.DNSConfig, err = decodeDNSConfig(f)
		case "containers":
			err = eachField(f, func(cn string, cv cue.Value) error {
				c, err := decodeContainer(cv)
				c.Name = cn
				p.Containers = append(p.Containers, c)
				return err
			})
		case "volumes":
			err = eachField(f, func(vn string, vv cue.Value) error {
				vol, err := decodeVolume(vv)
				vol.Name = vn
				p.Volumes = append(p.Volumes, vol)
				return err
			})
		}
		return err
	})
	slices.SortFunc(p.Containers, func(a, b Container) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(p.Volumes, func(a, b Volume) int { return strings.Compare(a.Name, b.Name) })
	return p, err
}

func decodeDNSConfig(v cue.Value) (*PodDNSConfig, error) {
	d := &PodDNSConfig{}
	err := eachKnown(v, dnsConfigFields, func(field string, f cue.Value) error {
		var err error
		switch field {
		case "nameservers":
			d.Nameservers, err = stringList(f)
		case "searches":
			d.Searches, err = stringList(f)
		case "options":
			err = eachElem(f, func(e cue.Value) error {
				var o PodDNSOption
				err := eachKnown(e, dnsOptionFields, func(field string, f cue.Value) error {
					var err error
					switch field {
					case "name":
						o.Name, err = f.String()
					case "value":
						var s string
						s, err = f.String()
						o.Value = &s
					}
					return err
				})
				d.Options = append(d.Options, o)
				return err
			})
		}
		return err
	})
	return d, err
}

func decodeContainer(v cue.Value) (Container, error) {
	var c Container
	err := eachKnown(v, containerFields, func(field string, f cue.Value) error {
		var err error
		switch field {
		case "image":
			c.Image, err = f.String()
		case "imagePullPolicy":
			c.ImagePullPolicy, err = f.String()
		case "command":
			c.Command, err = stringList(f)
		case "args":
			c.Args, err = stringList(f)
		case "workingDir":
			c.WorkingDir, err = f.String()
		case "env":
			c.Env, err = stringMap(f)
		case "ports":
			c.Ports = []ContainerPort{}
			err = eachElem(f, func(e cue.Value) error {
				var cp ContainerPort
				err := eachKnown(e, containerPortFields, func(field string, f cue.Value) error {
					var err error
					switch field {
					case "name":
						cp.Name, err = f.String()
					case "containerPort":
						cp.ContainerPort, err = intOf(f)
					case "protocol":
						cp.Protocol, err = f.String()
					}
					return err
				})
				c.Ports = append(c.Ports, cp)
				return err
			})
		case "volumeMounts":
			c.VolumeMounts = []VolumeMount{}
			err = eachElem(f, func(e cue.Value) error {
				var vm VolumeMount
				err := eachKnown(e, volumeMountFields, func(field string, f cue.Value) error {
					var err error
					switch field {
					case "name":
						vm.Name, err = f.String()
					case "mountPath":
						vm.MountPath, err = f.String()
					case "readOnly":
						vm.ReadOnly, err = f.Bool()
					}
					return err
				})
				c.VolumeMounts = append(c.VolumeMounts, vm)
				return err
			})
		case "resources":
			err = eachKnown(f, resourcesFields, func(field string, f cue.Value) error {
				var err error
				switch field {
				case "memory":
					c.Resources.Memory, err = f.String()
				case "cpus":
					c.Resources.CPUs, err = f.Float64()
				}
				return err
			})
		case "readinessProbe":
			c.ReadinessProbe, err = decodeProbe(f)
		}
		return err
	})
	return c, err
}

func decodeProbe(v cue.Value) (*Probe, error) {
	p := &Probe{}
	err := eachKnown(v, probeFields, func(field string, f cue.Value) error {
		var err error
		switch field {
		case "exec":
			p.Exec = &ExecAction{}
			err = eachKnown(f, execFields, func(field string, f cue.Value) error {
				if field == "command" {
					p.Exec.Command, err = stringList(f)
				}
				return err
			})
		case "tcpSocket":
			p.TCPSocket = &TCPSocketAction{}
			err = eachKnown(f, tcpSocketFields, func(field string, f cue.Value) error {
				if field == "port" {
					p.TCPSocket.Port, err = portRef(f)
				}
				return err
			})
		case "httpGet":
			p.HTTPGet = &HTTPGetAction{}
			err = eachKnown(f, httpGetFields, func(field string, f cue.Value) error {
				switch field {
				case "path":
					p.HTTPGet.Path, err = f.String()
				case "port":
					p.HTTPGet.Port, err = portRef(f)
				}
				return err
			})
		case "initialDelaySeconds":
			p.InitialDelaySeconds, err = intOf(f)
		case "periodSeconds":
			p.PeriodSeconds, err = intOf(f)
		case "timeoutSeconds":
			p.TimeoutSeconds, err = intOf(f)
		case "successThreshold":
			p.SuccessThreshold, err = intOf(f)
		case "failureThreshold":
			p.FailureThreshold, err = intOf(f)
		}
		return err
	})
	return p, err
}

func decodeVolume(v cue.Value) (Volume, error) {
	var vol Volume
	err := eachKnown(v, volumeFields, func(field string, f cue.Value) error {
		var err error
		switch field {
		case "emptyDir":
			vol.EmptyDir = &EmptyDirSource{}
		case "persistent":
			vol.Persistent = &PersistentSource{}
			err = eachKnown(f, persistentFields, func(field string, f cue.Value) error {
				if field == "size" {
					vol.Persistent.Size, err = f.String()
				}
				return err
			})
		case "hostPath":
			vol.HostPath = &HostPathSource{}
			err = eachKnown(f, hostPathFields, func(field string, f cue.Value) error {
				if field == "path" {
					vol.HostPath.Path, err = f.String()
				}
				return err
			})
		case "files":
			vol.Files, err = stringMap(f)
		}
		return err
	})
	return vol, err
}

func decodeService(v cue.Value) (Service, error) {
	var s Service
	err := eachKnown(v, serviceFields, func(field string, f cue.Value) error {
		var err error
		switch field {
		case "selector":
			s.Selector, err = stringMap(f)
		case "endpoints":
			s.Endpoints, err = stringList(f)
		case "portalIP":
			s.PortalIP, err = f.String()
		case "sessionAffinity":
			s.SessionAffinity, err = f.String()
		case "sessionAffinityTimeoutSeconds":
			s.SessionAffinityTimeoutSeconds, err = intOf(f)
		case "ports":
			s.Ports = []ServicePort{}
			err = eachElem(f, func(e cue.Value) error {
				var sp ServicePort
				err := eachKnown(e, servicePortFields, func(field string, f cue.Value) error {
					var err error
					switch field {
					case "name":
						sp.Name, err = f.String()
					case "protocol":
						sp.Protocol, err = f.String()
					case "port":
						sp.Port, err = intOf(f)
					case "targetPort":
						sp.TargetPort, err = portRef(f)
					case "externalPort":
						sp.ExternalPort, err = intOf(f)
					}
					return err
				})
				s.Ports = append(s.Ports, sp)
				return err
			})
		}
		return err
	})
	return s, err
}

// The regular fields of each struct of the schema that the model holds.
// Looking them up by name is several times cheaper than iterating with
// cue.Value.Fields, which sorts the fields topologically first; maps
// (pods, containers, labels, ...) have no fixed names and are iterated.
var (
	manifestFields      = fieldPaths("pods", "services")
	podFields           = fieldPaths("replicas", "labels", "nodeSelector", "restartPolicy", "shareProcessNamespace", "terminationGracePeriodSeconds", "progressDeadlineSeconds", "dnsConfig", "containers", "volumes")
	dnsConfigFields     = fieldPaths("nameservers", "searches", "options")
	dnsOptionFields     = fieldPaths("name", "value")
	containerFields     = fieldPaths("image", "imagePullPolicy", "command", "args", "workingDir", "env", "ports", "volumeMounts", "resources", "readinessProbe")
	containerPortFields = fieldPaths("name", "containerPort", "protocol")
	volumeMountFields   = fieldPaths("name", "mountPath", "readOnly")
	resourcesFields     = fieldPaths("memory", "cpus")
	probeFields         = fieldPaths("exec", "tcpSocket", "httpGet", "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold")
	execFields          = fieldPaths("command")
	tcpSocketFields     = fieldPaths("port")
	httpGetFields       = fieldPaths("path", "port")
	volumeFields        = fieldPaths("emptyDir", "persistent", "hostPath", "files")
	persistentFields    = fieldPaths("size")
	hostPathFields      = fieldPaths("path")
	serviceFields       = fieldPaths("selector", "endpoints", "portalIP", "sessionAffinity", "sessionAffinityTimeoutSeconds", "ports")
	servicePortFields   = fieldPaths("name", "protocol", "port", "targetPort", "externalPort")
)

type fieldPath struct {
	name string
	path cue.Path
}

func fieldPaths(names ...string) []fieldPath {
	out := make([]fieldPath, len(names))
	for i, n := range names {
		out[i] = fieldPath{n, cue.MakePath(cue.Str(n))}
	}
	return out
}

// eachKnown calls fn with each of the named fields that v has as a regular
// field (LookupPath does not find optional fields that are not set), and
// stops at the first error.
func eachKnown(v cue.Value, fields []fieldPath, fn func(name string, f cue.Value) error) error {
	for _, fp := range fields {
		f := v.LookupPath(fp.path)
		if !f.Exists() {
			continue
		}
		if err := fn(fp.name, f); err != nil {
			return err
		}
	}
	return nil
}

// eachField calls fn with each regular field of the struct v, in CUE's
// order, and stops at the first error.
func eachField(v cue.Value, fn func(name string, f cue.Value) error) error {
	it, err := v.Fields()
	if err != nil {
		return fmt.Errorf("decode the unit: %w", err)
	}
	for it.Next() {
		if err := fn(it.Selector().Unquoted(), it.Value()); err != nil {
			return err
		}
	}
	return nil
}

// eachElem calls fn with each element of the list v.
func eachElem(v cue.Value, fn func(e cue.Value) error) error {
	it, err := v.List()
	if err != nil {
		return fmt.Errorf("decode the unit: %w", err)
	}
	for it.Next() {
		if err := fn(it.Value()); err != nil {
			return err
		}
	}
	return nil
}

// A present map or list is never nil, even when empty, as encoding/json
// left it when the model was decoded from JSON.
func stringMap(v cue.Value) (map[string]string, error) {
	m := map[string]string{}
	err := eachField(v, func(k string, f cue.Value) error {
		s, err := f.String()
		m[k] = s
		return err
	})
	return m, err
}

func stringList(v cue.Value) ([]string, error) {
	l := []string{}
	err := eachElem(v, func(e cue.Value) error {
		s, err := e.String()
		l = append(l, s)
		return err
	})
	return l, err
}

func intOf(v cue.Value) (int, error) {
	n, err := v.Int64()
	if err != nil {
		return 0, fmt.Errorf("decode the unit: %w", err)
	}
	return int(n), nil
}

// portRef reads a port given as a number or as a name.
func portRef(v cue.Value) (PortRef, error) {
	v, _ = v.Default()
	if v.Kind() == cue.StringKind {
		s, err := v.String()
		return PortRef{Name: s}, err
	}
	n, err := intOf(v)
	return PortRef{Number: n}, err
}

// memoryUnits are the suffixes a memory quantity may carry, as in
// Kubernetes: binary (Ki, Mi, ...) and decimal (k, M, ...).
var memoryUnits = map[string]int64{
	"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

// ParseMemory turns a quantity such as "256Mi" into bytes.
func ParseMemory(q string) (int64, error) {
	i := strings.IndexFunc(q, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(q)
	}
	unit, ok := memoryUnits[q[i:]]
	if !ok || i == 0 {
		return 0, fmt.Errorf("%q is not a memory quantity", q)
	}
	n, err := strconv.ParseInt(q[:i], 10, 64)
	if err != nil || n > (1<<63-1)/unit {
		return 0, fmt.Errorf("%q is too large", q)
	}
	return n * unit, nil
}

// fieldError is a problem found while decoding, at a field of the unit.
type fieldError struct {
	path []string
	err  error
}

func (e *fieldError) Error() string { return e.err.Error() }
