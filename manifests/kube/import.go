package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cuelet/cuelet/manifests"
)

// Input is one YAML stream to import; Name is what messages call it.
type Input struct {
	Name string
	Data []byte
}

// ImportedUnit is one unit made from Kubernetes objects. Fields the schema
// defaults are left zero, so that CUE writes only what was said.
type ImportedUnit struct {
	// Package is the unit's package clause and the base of its file name.
	Package  string
	Pods     []manifests.Pod
	Services []manifests.Service
}

// Result is what Import made and what it left out.
type Result struct {
	Units       []ImportedUnit
	Unsupported []Unsupported
}

// SyntaxError is YAML that cannot be read, or a value of the wrong type
// for its field.
type SyntaxError struct {
	File string
	Line int // 0: unknown
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// doc is one Kubernetes object read from an input.
type doc struct {
	file string
	root *yaml.Node
	kind string
	name string
	unit string // AnnotationUnit, else the name
	obj  any
	used bool // a ConfigMap, claim or slice taken into a pod or service
}

func (d *doc) report(r *[]Unsupported, why string, keys ...any) {
	*r = append(*r, Unsupported{File: d.file, Line: lineAt(d.root, keys...), Path: pathOf(keys...), Why: why})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// readDocs splits the inputs into documents and decodes each into its
// Kubernetes type. Unknown kinds are reported and skipped.
func readDocs(inputs []Input, r *[]Unsupported) ([]*doc, error) {
	var docs []*doc
	for _, in := range inputs {
		dec := yaml.NewDecoder(bytes.NewReader(in.Data))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, yamlError(in.Name, err)
			}
			d, err := readDoc(in.Name, &n, r)
			if err != nil {
				return nil, err
			}
			if d != nil {
				docs = append(docs, d)
			}
		}
	}
	return docs, nil
}

func yamlError(file string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &SyntaxError{File: file, Line: line, Msg: m[2]}
	}
	return &SyntaxError{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

func readDoc(file string, n *yaml.Node, r *[]Unsupported) (*doc, error) {
	root := n
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if empty(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &SyntaxError{File: file, Line: root.Line, Msg: "a Kubernetes object is a mapping"}
	}
	d := &doc{file: file, root: root, kind: scalar(root, "kind"), name: scalar(root, "metadata", "name")}
	var o any
	switch d.kind {
	case "Pod":
		o = &corev1.Pod{}
	case "Deployment":
		o = &appsv1.Deployment{}
	case "StatefulSet":
		o = &appsv1.StatefulSet{}
	case "Service":
		o = &corev1.Service{}
	case "ConfigMap":
		o = &corev1.ConfigMap{}
	case "PersistentVolumeClaim":
		o = &corev1.PersistentVolumeClaim{}
	case "EndpointSlice":
		o = &discoveryv1.EndpointSlice{}
	default:
		*r = append(*r, Unsupported{File: file, Line: root.Line, Path: strings.TrimSpace("kind " + d.kind + " " + d.name)})
		return nil, nil
	}
	var v any
	if err := root.Decode(&v); err != nil {
		return nil, yamlError(file, err)
	}
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, o)
	}
	if err != nil {
		return nil, &SyntaxError{File: file, Line: root.Line, Msg: fmt.Sprintf("%s %s: %v", d.kind, d.name, err)}
	}
	d.obj = o
	walk(file, root, shapes[d.kind], "", func(u Unsupported) { *r = append(*r, u) })
	d.unit = d.name
	if a := scalar(root, "metadata", "annotations", AnnotationUnit); a != "" {
		d.unit = a
	}
	return d, nil
}

// scalar returns the scalar at the keys, or "".
func scalar(n *yaml.Node, keys ...string) string {
	for _, k := range keys {
		n = child(n, k)
		if n == nil {
			return ""
		}
	}
	if n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func child(n *yaml.Node, key any) *yaml.Node {
	switch key := key.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && key < len(n.Content) {
			return n.Content[key]
		}
	}
	return nil
}

// lineAt is the line of the deepest node on the path that exists.
func lineAt(n *yaml.Node, keys ...any) int {
	line := n.Line
	for _, k := range keys {
		if n = child(n, k); n == nil {
			break
		}
		line = n.Line
	}
	return line
}

func pathOf(keys ...any) string {
	var p string
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			p = joinPath(p, k)
		case int:
			p += "[" + strconv.Itoa(k) + "]"
		}
	}
	return p
}

// Import reads Kubernetes objects and groups them into units: objects with
// the same AnnotationUnit (as export writes) form one unit, others one unit
// per name, so that a Deployment and the Service of the same name go
// together. ConfigMaps, claims and EndpointSlices go into the pods and
// services that use them. The error is for input that is not YAML or has
// a value of the wrong type; everything left out is in Result.Unsupported.
func Import(inputs []Input) (Result, error) {
	var res Result
	docs, err := readDocs(inputs, &res.Unsupported)
	if err != nil {
		return Result{}, err
	}
	configMaps := map[string]*doc{}
	claims := map[string]*doc{}
	slices := map[string][]*doc{}
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.ConfigMap:
			configMaps[d.name] = d
		case *corev1.PersistentVolumeClaim:
			claims[d.name] = d
		case *discoveryv1.EndpointSlice:
			svc := o.Labels[discoveryv1.LabelServiceName]
			slices[svc] = append(slices[svc], d)
		}
	}
	byKey := map[string]*ImportedUnit{}
	var keys []string
	unit := func(key string) *ImportedUnit {
		u, ok := byKey[key]
		if !ok {
			u = &ImportedUnit{}
			byKey[key] = u
			keys = append(keys, key)
		}
		return u
	}
	podNames := map[string]bool{}
	svcNames := map[string]bool{}
	for _, d := range docs {
		var p *manifests.Pod
		switch o := d.obj.(type) {
		case *corev1.Pod:
			p = importPod(d, o.Spec, []any{"spec"}, o.Labels, configMaps, claims, &res.Unsupported)
			p.Replicas = 1
			p.RestartPolicy = string(o.Spec.RestartPolicy)
		case *appsv1.Deployment:
			p = importWorkload(d, o.Spec.Replicas, o.Labels, o.Annotations, o.Spec.Template, configMaps, claims, &res.Unsupported)
			if o.Spec.ProgressDeadlineSeconds != nil {
				p.ProgressDeadlineSeconds = int(*o.Spec.ProgressDeadlineSeconds)
			}
		case *appsv1.StatefulSet:
			p = importWorkload(d, o.Spec.Replicas, o.Labels, o.Annotations, o.Spec.Template, configMaps, claims, &res.Unsupported)
			for _, c := range o.Spec.VolumeClaimTemplates {
				p.Volumes = append(p.Volumes, manifests.Volume{Name: c.Name, Persistent: &manifests.PersistentSource{Size: claimSize(c.Spec)}})
			}
		case *corev1.Service:
			if svcNames[d.name] {
				d.report(&res.Unsupported, "a second service of this name", "metadata", "name")
				continue
			}
			svcNames[d.name] = true
			s := importService(d, o, slices[d.name], &res.Unsupported)
			u := unit(d.unit)
			u.Services = append(u.Services, s)
		}
		if p == nil {
			continue
		}
		if podNames[d.name] {
			d.report(&res.Unsupported, "a second pod of this name", "metadata", "name")
			continue
		}
		podNames[d.name] = true
		u := unit(d.unit)
		u.Pods = append(u.Pods, *p)
	}
	for _, d := range docs {
		if _, ok := d.obj.(*discoveryv1.EndpointSlice); ok && !d.used {
			d.report(&res.Unsupported, "no service of the name in its kubernetes.io/service-name label", "metadata", "labels")
		}
		if _, ok := d.obj.(*corev1.ConfigMap); ok && !d.used {
			res.Unsupported = append(res.Unsupported, Unsupported{File: d.file, Line: d.root.Line, Path: "kind ConfigMap " + d.name, Why: "no pod mounts it"})
		}
		if _, ok := d.obj.(*corev1.PersistentVolumeClaim); ok && !d.used {
			res.Unsupported = append(res.Unsupported, Unsupported{File: d.file, Line: d.root.Line, Path: "kind PersistentVolumeClaim " + d.name, Why: "no pod mounts it"})
		}
	}
	// Reports in the order of the input: files as given, then lines.
	order := map[string]int{}
	for i, in := range inputs {
		if _, ok := order[in.Name]; !ok {
			order[in.Name] = i
		}
	}
	sort.SliceStable(res.Unsupported, func(i, j int) bool {
		a, b := res.Unsupported[i], res.Unsupported[j]
		if order[a.File] != order[b.File] {
			return order[a.File] < order[b.File]
		}
		return a.Line < b.Line
	})
	taken := map[string]bool{}
	for _, k := range keys {
		u := byKey[k]
		u.Package = packageName(k, taken)
		res.Units = append(res.Units, *u)
	}
	return res, nil
}

func importWorkload(d *doc, replicas *int32, labels, annotations map[string]string, t corev1.PodTemplateSpec, configMaps, claims map[string]*doc, r *[]Unsupported) *manifests.Pod {
	p := importPod(d, t.Spec, []any{"spec", "template", "spec"}, t.Labels, configMaps, claims, r)
	p.Replicas = 1
	if replicas != nil {
		p.Replicas = int(*replicas)
	}
	p.RestartPolicy = annotations[AnnotationRestartPolicy]
	if v, err := strconv.Atoi(annotations[AnnotationProgressDeadline]); err == nil {
		p.ProgressDeadlineSeconds = v
	}
	if len(labels) > 0 && !maps.Equal(labels, p.Labels) {
		d.report(r, "cuelet labels a pod's replicas only (spec.template.metadata.labels)", "metadata", "labels")
	}
	return p
}

func claimSize(s corev1.PersistentVolumeClaimSpec) string {
	q, ok := s.Resources.Requests[corev1.ResourceStorage]
	if !ok || q.Cmp(resource.MustParse(defaultStorage)) == 0 {
		return ""
	}
	return q.String()
}

func importPod(d *doc, s corev1.PodSpec, at []any, labels map[string]string, configMaps, claims map[string]*doc, r *[]Unsupported) *manifests.Pod {
	p := &manifests.Pod{Name: d.name, Labels: maps.Clone(labels),
		TerminationGracePeriodSeconds: defaultGracePeriod, ProgressDeadlineSeconds: defaultProgressDeadline}
	if s.TerminationGracePeriodSeconds != nil {
		p.TerminationGracePeriodSeconds = int(*s.TerminationGracePeriodSeconds)
	}
	delete(p.Labels, LabelPod)
	if len(p.Labels) == 0 {
		p.Labels = nil
	}
	if s.ShareProcessNamespace != nil {
		p.ShareProcessNamespace = *s.ShareProcessNamespace
	}
	if len(s.NodeSelector) > 0 {
		p.NodeSelector = maps.Clone(s.NodeSelector)
	}
	if c := s.DNSConfig; c != nil && (len(c.Nameservers) > 0 || len(c.Searches) > 0 || len(c.Options) > 0) {
		p.DNSConfig = &manifests.PodDNSConfig{Nameservers: c.Nameservers, Searches: c.Searches}
		for _, o := range c.Options {
			p.DNSConfig.Options = append(p.DNSConfig.Options, manifests.PodDNSOption{Name: o.Name, Value: o.Value})
		}
	}
	for _, c := range s.Containers {
		p.Containers = append(p.Containers, importContainer(c))
	}
	for i, v := range s.Volumes {
		mv := manifests.Volume{Name: v.Name}
		switch {
		case v.EmptyDir != nil:
			mv.EmptyDir = &manifests.EmptyDirSource{}
		case v.HostPath != nil:
			mv.HostPath = &manifests.HostPathSource{Path: v.HostPath.Path}
		case v.ConfigMap != nil:
			cm := configMaps[v.ConfigMap.Name]
			if cm == nil {
				d.report(r, "no ConfigMap of this name in the input", append(at, "volumes", i, "configMap", "name")...)
				mv.Files = map[string]string{}
				break
			}
			cm.used = true
			mv.Files = maps.Clone(cm.obj.(*corev1.ConfigMap).Data)
			if mv.Files == nil {
				mv.Files = map[string]string{}
			}
		case v.PersistentVolumeClaim != nil:
			mv.Persistent = &manifests.PersistentSource{}
			if c := claims[v.PersistentVolumeClaim.ClaimName]; c != nil {
				c.used = true
				mv.Persistent.Size = claimSize(c.obj.(*corev1.PersistentVolumeClaim).Spec)
			}
			if v.PersistentVolumeClaim.ClaimName != v.Name {
				d.report(r, "cuelet names a persistent volume after the pod replica and the volume", append(at, "volumes", i, "persistentVolumeClaim", "claimName")...)
			}
		default:
			continue // reported by the shape
		}
		p.Volumes = append(p.Volumes, mv)
	}
	return p
}

func importContainer(c corev1.Container) manifests.Container {
	out := manifests.Container{
		Name:            c.Name,
		Image:           c.Image,
		ImagePullPolicy: string(c.ImagePullPolicy),
		Command:         c.Command,
		Args:            c.Args,
		WorkingDir:      c.WorkingDir,
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			continue // reported by the shape
		}
		if out.Env == nil {
			out.Env = map[string]string{}
		}
		out.Env[e.Name] = e.Value
	}
	for _, p := range c.Ports {
		out.Ports = append(out.Ports, manifests.ContainerPort{Name: p.Name, ContainerPort: int(p.ContainerPort), Protocol: protocol(p.Protocol)})
	}
	for _, m := range c.VolumeMounts {
		out.VolumeMounts = append(out.VolumeMounts, manifests.VolumeMount{Name: m.Name, MountPath: m.MountPath, ReadOnly: m.ReadOnly})
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		out.Resources.Memory = q.String()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		out.Resources.CPUs = float64(q.MilliValue()) / 1000
	}
	if p := c.ReadinessProbe; p != nil {
		mp := &manifests.Probe{
			InitialDelaySeconds: int(p.InitialDelaySeconds),
			PeriodSeconds:       int(p.PeriodSeconds),
			TimeoutSeconds:      int(p.TimeoutSeconds),
			SuccessThreshold:    int(p.SuccessThreshold),
			FailureThreshold:    int(p.FailureThreshold),
		}
		switch {
		case p.Exec != nil:
			mp.Exec = &manifests.ExecAction{Command: p.Exec.Command}
		case p.TCPSocket != nil:
			mp.TCPSocket = &manifests.TCPSocketAction{Port: portRef(p.TCPSocket.Port)}
		case p.HTTPGet != nil:
			mp.HTTPGet = &manifests.HTTPGetAction{Path: p.HTTPGet.Path, Port: portRef(p.HTTPGet.Port)}
		}
		out.ReadinessProbe = mp
	}
	return out
}

// protocol leaves out a protocol other than TCP and UDP (the shape has
// reported it), so that the port stays, with the default.
func protocol(p corev1.Protocol) string {
	if p == corev1.ProtocolTCP || p == corev1.ProtocolUDP {
		return string(p)
	}
	return ""
}

func portRef(p intstr.IntOrString) manifests.PortRef {
	if p.Type == intstr.String {
		if n, err := strconv.Atoi(p.StrVal); err == nil {
			return manifests.PortRef{Number: n}
		}
		return manifests.PortRef{Name: p.StrVal}
	}
	return manifests.PortRef{Number: int(p.IntVal)}
}

func importService(d *doc, o *corev1.Service, slices []*doc, r *[]Unsupported) manifests.Service {
	s := manifests.Service{
		Name:            d.name,
		Selector:        o.Spec.Selector,
		SessionAffinity: string(o.Spec.SessionAffinity),
	}
	if a, err := netip.ParseAddr(o.Spec.ClusterIP); err == nil && a.Is4() {
		s.PortalIP = o.Spec.ClusterIP
	} else if o.Spec.ClusterIP != "" {
		d.report(r, "a portalIP is an IPv4 address", "spec", "clusterIP")
	}
	if c := o.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		s.SessionAffinityTimeoutSeconds = int(*c.ClientIP.TimeoutSeconds)
	}
	if t, err := strconv.Atoi(o.Annotations[AnnotationAffinityTimeout]); err == nil {
		s.SessionAffinityTimeoutSeconds = t
	}
	for _, p := range o.Spec.Ports {
		sp := manifests.ServicePort{Name: p.Name, Protocol: protocol(p.Protocol), Port: int(p.Port), ExternalPort: int(p.NodePort)}
		if p.TargetPort != (intstr.IntOrString{}) {
			sp.TargetPort = portRef(p.TargetPort)
		}
		s.Ports = append(s.Ports, sp)
	}
	for _, sd := range slices {
		sd.used = true
		es := sd.obj.(*discoveryv1.EndpointSlice)
		if len(es.Ports) != 1 || es.Ports[0].Port == nil {
			sd.report(r, "cuelet takes one port per endpoint slice", "ports")
			continue
		}
		port := strconv.Itoa(int(*es.Ports[0].Port))
		for i, e := range es.Endpoints {
			for j, a := range e.Addresses {
				if j > 0 {
					sd.report(r, "cuelet takes the first address of an endpoint", "endpoints", i, "addresses", j)
					break
				}
				s.Endpoints = append(s.Endpoints, a+":"+port)
			}
		}
	}
	return s
}

// packageName turns a unit key (a file path, "dir:package" or an object
// name) into a package clause that no other unit of the import has, so
// that the files -o writes into one folder stay units of their own.
func packageName(key string, taken map[string]bool) string {
	if _, pkg, ok := strings.Cut(key, ":"); ok {
		key = pkg
	}
	key = strings.TrimSuffix(path.Base(key), ".cue")
	var b strings.Builder
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9' && b.Len() > 0, r == '_' && b.Len() > 0:
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			b.WriteString("u" + string(r))
		case b.Len() > 0:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "" {
		name = "unit"
	}
	unique := name
	for i := 2; taken[unique]; i++ {
		unique = name + "_" + strconv.Itoa(i)
	}
	taken[unique] = true
	return unique
}
