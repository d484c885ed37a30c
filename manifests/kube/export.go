package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	yamlv2 "go.yaml.in/yaml/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cuelet/cuelet/manifests"
)

// Annotations and the label that carry what Kubernetes has no field for,
// so that import gives back what export was given.
const (
	// AnnotationUnit names the unit an object came from (Unit.ID); import
	// groups objects into units by it.
	AnnotationUnit = "cuelet.io/unit"
	// AnnotationRestartPolicy keeps a pod's restartPolicy other than
	// Always, which a Deployment or StatefulSet cannot run.
	AnnotationRestartPolicy = "cuelet.io/restart-policy"
	// AnnotationAffinityTimeout keeps sessionAffinityTimeoutSeconds of a
	// service without ClientIP affinity, where Kubernetes allows no
	// sessionAffinityConfig.
	AnnotationAffinityTimeout = "cuelet.io/session-affinity-timeout-seconds"
	// AnnotationProgressDeadline keeps progressDeadlineSeconds of a pod
	// exported as a StatefulSet, which has no such field.
	AnnotationProgressDeadline = "cuelet.io/progress-deadline-seconds"
	// LabelPod is added to a workload's selector and template, because
	// Kubernetes needs a non-empty selector and a cuelet pod may have no
	// labels. Import drops it.
	LabelPod = "cuelet.io/pod"
)

// Kubernetes defaults that cuelet shares.
const (
	defaultStorage         = "1Gi"
	defaultAffinityTimeout = 10800
	nodePortMin            = 30000
	nodePortMax            = 32767
)

// Object is one Kubernetes object with the notes that say what of the
// unit it could not express; they are written as YAML comments above it.
type Object struct {
	Notes  []string
	Object any // *appsv1.Deployment, *corev1.Service, ...
}

// Export writes the Kubernetes objects of the units to w as YAML
// documents separated by "---", each preceded by its notes as comments.
// Nothing is written if an object cannot be encoded.
//
// The units are encoded on every CPU, each into its own buffer, and
// written in their order: encoding is most of what export adds to the
// validation, which already runs on every CPU.
func Export(w io.Writer, units []*manifests.Unit) error {
	docs := make([][]byte, len(units))
	errs := make([]error, len(units))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(goruntime.GOMAXPROCS(0), len(units)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(units); i = int(next.Add(1)) - 1 {
				docs[i], errs[i] = exportUnit(units[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var out [][]byte
	for _, d := range docs {
		if len(d) > 0 {
			out = append(out, d)
		}
	}
	_, err := w.Write(bytes.Join(out, []byte("---\n")))
	return err
}

// exportUnit returns the documents of one unit, "---" between them.
func exportUnit(u *manifests.Unit) ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range Convert(u) {
		b, err := marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", describe(o.Object), err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		for _, n := range o.Notes {
			buf.WriteString("# " + n + "\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// marshal writes the object as sigs.k8s.io/yaml.Marshal does, without
// its status, which is the cluster's to fill in (the API types write an
// empty one).
//
// sigs.k8s.io/yaml encodes to JSON, parses that JSON again with go-yaml
// (to tell integers from floats) and encodes the result: the parse was
// 45 % of an export's conversion. The API types' own unstructured
// converter gives the same tree (int64 for integers, the types'
// MarshalJSON for quantities, times and int-or-strings) without text in
// between, and go-yaml encodes it the same way, keys sorted;
// TestMarshal_writes_what_sigs_yaml_writes holds the two to the same
// bytes.
func marshal(o any) ([]byte, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	if len(m) == 0 {
		return nil, nil
	}
	return yamlv2.Marshal(m)
}

func describe(o any) string {
	switch o := o.(type) {
	case *appsv1.Deployment:
		return "Deployment " + o.Name
	case *appsv1.StatefulSet:
		return "StatefulSet " + o.Name
	case *corev1.ConfigMap:
		return "ConfigMap " + o.Name
	case *corev1.Service:
		return "Service " + o.Name
	case *discoveryv1.EndpointSlice:
		return "EndpointSlice " + o.Name
	}
	return fmt.Sprintf("%T", o)
}

// Convert returns the objects of one valid unit: for each pod its
// ConfigMaps and then its Deployment or StatefulSet, then for each service
// the Service and its EndpointSlices.
func Convert(u *manifests.Unit) []Object {
	var out []Object
	for _, p := range u.Pods {
		out = append(out, convertPod(u.ID, p)...)
	}
	for _, s := range u.Services {
		out = append(out, convertService(u.ID, s)...)
	}
	return out
}

// ConfigMapName names the ConfigMap that holds a files volume.
func ConfigMapName(pod, volume string) string { return pod + "-" + volume }

// A ConfigMap key, as Kubernetes checks it.
var configMapKey = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

func convertPod(unit string, p manifests.Pod) []Object {
	var out []Object
	var notes []string
	annotations := map[string]string{AnnotationUnit: unit}
	if p.RestartPolicy != "Always" {
		annotations[AnnotationRestartPolicy] = p.RestartPolicy
		notes = append(notes, fmt.Sprintf("restartPolicy %q: a %s runs only Always; kept in the annotation %s", p.RestartPolicy, workloadKind(p), AnnotationRestartPolicy))
	}
	labels := maps.Clone(p.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelPod] = p.Name

	if workloadKind(p) == "StatefulSet" && p.ProgressDeadlineSeconds != defaultProgressDeadline {
		annotations[AnnotationProgressDeadline] = strconv.Itoa(p.ProgressDeadlineSeconds)
		notes = append(notes, fmt.Sprintf("progressDeadlineSeconds %d: a StatefulSet has no such field; kept in the annotation %s", p.ProgressDeadlineSeconds, AnnotationProgressDeadline))
	}
	grace := int64(p.TerminationGracePeriodSeconds)
	spec := corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		RestartPolicy:                 corev1.RestartPolicyAlways,
		ShareProcessNamespace:         boolPtr(p.ShareProcessNamespace),
		NodeSelector:                  p.NodeSelector,
		DNSConfig:                     dnsConfig(p.DNSConfig),
	}
	var claims []corev1.PersistentVolumeClaim
	for _, v := range p.Volumes {
		switch {
		case v.EmptyDir != nil:
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		case v.HostPath != nil:
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: v.HostPath.Path}}})
			notes = append(notes, fmt.Sprintf("volume %s: hostPath %s must exist on whichever node runs the pod", v.Name, v.HostPath.Path))
		case v.Files != nil:
			name := ConfigMapName(p.Name, v.Name)
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: name},
			}}})
			out = append(out, convertFiles(unit, name, v.Files))
		case v.Persistent != nil:
			size := v.Persistent.Size
			if size == "" {
				size = defaultStorage
			}
			q, err := resource.ParseQuantity(size)
			if err != nil { // the schema has checked it
				q = resource.MustParse(defaultStorage)
			}
			claims = append(claims, corev1.PersistentVolumeClaim{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
				ObjectMeta: metav1.ObjectMeta{Name: v.Name},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q}},
				},
			})
		}
	}
	for _, c := range p.Containers {
		spec.Containers = append(spec.Containers, convertContainer(c))
	}
	meta := metav1.ObjectMeta{Name: p.Name, Labels: p.Labels, Annotations: annotations}
	template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{LabelPod: p.Name}}
	replicas := int32(p.Replicas)
	progress := int32(p.ProgressDeadlineSeconds)
	var workload any
	if claims == nil {
		workload = &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta,
			Spec:       appsv1.DeploymentSpec{Replicas: &replicas, Selector: selector, Template: template, ProgressDeadlineSeconds: &progress},
		}
	} else {
		workload = &appsv1.StatefulSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: meta,
			Spec:       appsv1.StatefulSetSpec{Replicas: &replicas, Selector: selector, Template: template, VolumeClaimTemplates: claims},
		}
	}
	return append(out, Object{Notes: notes, Object: workload})
}

// dnsConfig is the pod's dnsConfig, which has Kubernetes' shape and
// meaning: with the default dnsPolicy (ClusterFirst) it adds to the
// cluster's DNS settings as it adds to the node's under cuelet.
func dnsConfig(c *manifests.PodDNSConfig) *corev1.PodDNSConfig {
	if c == nil {
		return nil
	}
	out := &corev1.PodDNSConfig{Nameservers: c.Nameservers, Searches: c.Searches}
	for _, o := range c.Options {
		out.Options = append(out.Options, corev1.PodDNSConfigOption{Name: o.Name, Value: o.Value})
	}
	return out
}

// The schema's defaults of the pod fields that Kubernetes has too.
const (
	defaultGracePeriod      = 10
	defaultProgressDeadline = 600
)

func workloadKind(p manifests.Pod) string {
	for _, v := range p.Volumes {
		if v.Persistent != nil {
			return "StatefulSet"
		}
	}
	return "Deployment"
}

func convertFiles(unit, name string, files map[string]string) Object {
	var notes []string
	for _, k := range slices.Sorted(maps.Keys(files)) {
		if !configMapKey.MatchString(k) {
			notes = append(notes, fmt.Sprintf("file %q: not a valid ConfigMap key (letters, digits, '-', '_', '.')", k))
		}
	}
	return Object{Notes: notes, Object: &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{AnnotationUnit: unit}},
		Data:       files,
	}}
}

func convertContainer(c manifests.Container) corev1.Container {
	out := corev1.Container{
		Name:            c.Name,
		Image:           c.Image,
		ImagePullPolicy: corev1.PullPolicy(c.ImagePullPolicy),
		Command:         c.Command,
		Args:            c.Args,
		WorkingDir:      c.WorkingDir,
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		out.Env = append(out.Env, corev1.EnvVar{Name: k, Value: c.Env[k]})
	}
	for _, p := range c.Ports {
		out.Ports = append(out.Ports, corev1.ContainerPort{Name: p.Name, ContainerPort: int32(p.ContainerPort), Protocol: corev1.Protocol(p.Protocol)})
	}
	for _, m := range c.VolumeMounts {
		out.VolumeMounts = append(out.VolumeMounts, corev1.VolumeMount{Name: m.Name, MountPath: m.MountPath, ReadOnly: m.ReadOnly})
	}
	limits := corev1.ResourceList{}
	if c.Resources.Memory != "" {
		if q, err := resource.ParseQuantity(c.Resources.Memory); err == nil {
			limits[corev1.ResourceMemory] = q
		}
	}
	if c.Resources.CPUs > 0 {
		limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(cpuMillis(c.Resources.CPUs), resource.DecimalSI)
	}
	if len(limits) > 0 {
		out.Resources.Limits = limits
	}
	if p := c.ReadinessProbe; p != nil {
		out.ReadinessProbe = &corev1.Probe{
			InitialDelaySeconds: int32(p.InitialDelaySeconds),
			PeriodSeconds:       int32(p.PeriodSeconds),
			TimeoutSeconds:      int32(p.TimeoutSeconds),
			SuccessThreshold:    int32(p.SuccessThreshold),
			FailureThreshold:    int32(p.FailureThreshold),
		}
		switch {
		case p.Exec != nil:
			out.ReadinessProbe.Exec = &corev1.ExecAction{Command: p.Exec.Command}
		case p.TCPSocket != nil:
			out.ReadinessProbe.TCPSocket = &corev1.TCPSocketAction{Port: intOrString(p.TCPSocket.Port)}
		case p.HTTPGet != nil:
			out.ReadinessProbe.HTTPGet = &corev1.HTTPGetAction{Path: p.HTTPGet.Path, Port: intOrString(p.HTTPGet.Port)}
		}
	}
	return out
}

// cpuMillis rounds up, so that a limit never becomes 0 (unlimited):
// Kubernetes counts CPUs in thousandths.
func cpuMillis(cpus float64) int64 {
	m := int64(cpus * 1000)
	if float64(m) < cpus*1000 {
		m++
	}
	return m
}

func intOrString(p manifests.PortRef) intstr.IntOrString {
	if p.Name != "" {
		return intstr.FromString(p.Name)
	}
	return intstr.FromInt32(int32(p.Number))
}

func convertService(unit string, s manifests.Service) []Object {
	var notes []string
	annotations := map[string]string{AnnotationUnit: unit}
	spec := corev1.ServiceSpec{
		Selector:        s.Selector,
		SessionAffinity: corev1.ServiceAffinity(s.SessionAffinity),
		Type:            corev1.ServiceTypeClusterIP,
	}
	if s.PortalIP != "" {
		spec.ClusterIP = s.PortalIP
		notes = append(notes, fmt.Sprintf("portalIP %s: becomes clusterIP, which must lie in the cluster's service range", s.PortalIP))
	}
	switch {
	case s.SessionAffinity == "ClientIP":
		t := int32(s.SessionAffinityTimeoutSeconds)
		spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &t}}
	case s.SessionAffinityTimeoutSeconds != defaultAffinityTimeout:
		annotations[AnnotationAffinityTimeout] = strconv.Itoa(s.SessionAffinityTimeoutSeconds)
		notes = append(notes, fmt.Sprintf("sessionAffinityTimeoutSeconds %d: Kubernetes takes a timeout only with ClientIP affinity; kept in the annotation %s", s.SessionAffinityTimeoutSeconds, AnnotationAffinityTimeout))
	}
	for _, p := range s.Ports {
		sp := corev1.ServicePort{Name: p.Name, Protocol: corev1.Protocol(p.Protocol), Port: int32(p.Port), TargetPort: intOrString(p.TargetPort)}
		if p.ExternalPort != 0 {
			spec.Type = corev1.ServiceTypeNodePort
			sp.NodePort = int32(p.ExternalPort)
			if p.ExternalPort < nodePortMin || p.ExternalPort > nodePortMax {
				notes = append(notes, fmt.Sprintf("externalPort %d: becomes nodePort, which a cluster takes only in its node port range (%d-%d by default)", p.ExternalPort, nodePortMin, nodePortMax))
			}
		}
		spec.Ports = append(spec.Ports, sp)
	}
	out := []Object{{Notes: notes, Object: &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Annotations: annotations},
		Spec:       spec,
	}}}
	if len(s.Endpoints) > 0 {
		out = append(out, endpointSlices(unit, s)...)
	}
	return out
}

// endpointSlices returns the slices of a service with fixed endpoints: a
// slice has one port list and one address type for all its endpoints, so
// each run of endpoints that share both is a slice of its own, in the
// order the endpoints are written (import reads them back in that order).
func endpointSlices(unit string, s manifests.Service) []Object {
	type run struct {
		port     int
		addrType discoveryv1.AddressType
		hosts    []string
	}
	var runs []*run
	var notes []string
	for _, e := range s.Endpoints {
		host, portText, _ := strings.Cut(e, ":")
		port, _ := strconv.Atoi(portText)
		addrType := discoveryv1.AddressTypeFQDN
		if a, err := netip.ParseAddr(host); err == nil {
			addrType = discoveryv1.AddressTypeIPv4
			if a.Is6() {
				addrType = discoveryv1.AddressTypeIPv6
			}
			if a.IsLoopback() {
				notes = append(notes, fmt.Sprintf("endpoint %s: Kubernetes refuses loopback addresses in endpoints; give an address the cluster can reach", e))
			}
		}
		if n := len(runs); n == 0 || runs[n-1].port != port || runs[n-1].addrType != addrType {
			runs = append(runs, &run{port: port, addrType: addrType})
		}
		last := runs[len(runs)-1]
		last.hosts = append(last.hosts, host)
	}
	sp := s.Ports[0] // a service with endpoints has exactly one port
	var out []Object
	for i, r := range runs {
		name := s.Name
		if len(runs) > 1 {
			name = fmt.Sprintf("%s-%d", s.Name, i+1)
		}
		slice := &discoveryv1.EndpointSlice{
			TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Labels:      map[string]string{discoveryv1.LabelServiceName: s.Name},
				Annotations: map[string]string{AnnotationUnit: unit},
			},
			AddressType: r.addrType,
			Ports: []discoveryv1.EndpointPort{{
				Name:     strPtr(sp.Name),
				Port:     int32Ptr(int32(r.port)),
				Protocol: protocolPtr(corev1.Protocol(sp.Protocol)),
			}},
		}
		for _, h := range r.hosts {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{h}})
		}
		var n []string
		if i == 0 {
			n = notes
		}
		out = append(out, Object{Notes: n, Object: slice})
	}
	return out
}

func boolPtr(b bool) *bool                           { return &b }
func strPtr(s string) *string                        { return &s }
func int32Ptr(i int32) *int32                        { return &i }
func protocolPtr(p corev1.Protocol) *corev1.Protocol { return &p }
