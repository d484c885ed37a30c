package kubeplay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containers/podman/v4/pkg/bindings"
	"github.com/containers/podman/v4/pkg/bindings/containers"
	podmankube "github.com/containers/podman/v4/pkg/bindings/kube"
	"github.com/containers/podman/v4/pkg/bindings/pods"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/kube"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// playable is a unit of what podman 4.3's kube play runs: one replica,
// env, a command, TCP and UDP ports in two containers, a ConfigMap volume,
// a hostPath, and a service with an external port (free on the host, filled in).
const playable = `
pods: play: {
	labels: app: "play"
	containers: {
		app: {
			image: "localhost/cuelet-busybox:latest"
			command: ["httpd", "-f", "-p", "8080", "-h", "/etc/play"]
			env: {GREETING: "hello", MODE: "test"}
			ports: [{name: "http", containerPort: 8080}, {name: "stats", containerPort: 8125, protocol: "UDP"}]
			volumeMounts: [{name: "conf", mountPath: "/etc/play", readOnly: true}, {name: "site", mountPath: "/srv/www"}]
		}
		side: {
			image: "localhost/cuelet-busybox:latest"
			command: ["sleep", "3600"]
			env: SIDE: "yes"
			ports: [{name: "admin", containerPort: 9090}]
		}
	}
	volumes: {
		conf: files: "index.html": "played\n"
		site: hostPath: path: "/srv"
	}
}
services: play: {
	selector: app: "play"
	ports: [{name: "http", port: 80, targetPort: "http", externalPort: %d}]
}
`

// TestKubePlayRunsTheExportWithTheSameCommandsEnvMountsAndPorts hands the
// export to podman's own kube play and looks at what it runs: each
// container's command, env and mounts, the pod's ports, and the external
// port, compared with what cuelet runs for the same unit.
//
// What of the ports can be compared, and how (podman 4.3):
//   - cuelet publishes no container port on the host; a container port is
//     reachable on the pod's IP, and cuelet records it in the pod's spec
//     label. kube play records a containerPort only when it has a hostPort
//     (getPodPorts; --publish-all, which would do it for all, is podman
//     4.5's). So the test gives every container port of the export a
//     hostPort on 127.0.0.1, as --publish-all would, and compares the
//     ports kube play publishes (name/protocol) with the manifest's.
//   - kube play runs no Service (kind not supported), so neither the
//     service port (80, cuelet's portal) nor clusterIP can be compared
//     here; the unit tests of package kube decode them strictly. A
//     NodePort is what cuelet's externalPort becomes: the test does what a
//     cluster's kube-proxy does with it, resolving the Service's
//     targetPort against the selected pods' container ports, and publishes
//     that container port on the nodePort; then an HTTP request to
//     127.0.0.1:externalPort must reach the container's httpd, as it does
//     under cuelet.
//   - podman binds ports to the pod (its infra container; the containers
//     share one network namespace), so ports are compared per pod, not
//     per container.
func TestKubePlayRunsTheExportWithTheSameCommandsEnvMountsAndPorts(t *testing.T) {
	p := podmantest.New(t)
	dir := t.TempDir()
	external := testenv.FreeTCPPort(t)
	if err := writeFile(dir+"/play.cue", fmt.Sprintf(playable, external)); err != nil {
		t.Fatal(err)
	}
	units, err := manifests.Load(context.Background(), []string{dir}, manifests.Options{AllowedHostPaths: []string{"/srv"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		if !u.Valid() {
			t.Fatalf("invalid: %v", u.Problems)
		}
	}
	var export bytes.Buffer
	if err := kube.Export(&export, units); err != nil {
		t.Fatal(err)
	}
	docs, nodePorts := publish(t, export.Bytes())
	if len(nodePorts) != 1 {
		t.Fatalf("the export gives %d container ports a nodePort, want 1 (externalPort %d):\n%s", len(nodePorts), external, export.String())
	}
	ctx, err := bindings.NewConnection(context.Background(), p.URL)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := podmankube.PlayWithBody(ctx, bytes.NewReader(docs), nil)
	if err != nil {
		t.Fatalf("kube play: %v\n%s", err, docs)
	}
	if len(rep.Pods) != 1 {
		t.Fatalf("kube play ran %d pods, want 1", len(rep.Pods))
	}
	if errs := rep.Pods[0].ContainerErrors; len(errs) > 0 {
		t.Fatalf("kube play: %v", errs)
	}
	got := map[string]string{}
	for _, id := range rep.Pods[0].Containers {
		c, err := containers.Inspect(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		name := c.Name[strings.LastIndex(c.Name, "-")+1:]
		var env, mounts []string
		for _, e := range c.Config.Env {
			if k, _, _ := strings.Cut(e, "="); k == "GREETING" || k == "MODE" || k == "SIDE" {
				env = append(env, e)
			}
		}
		for _, m := range c.Mounts {
			mounts = append(mounts, fmt.Sprintf("%s:%v", m.Destination, m.RW))
		}
		slices.Sort(env)
		slices.Sort(mounts)
		got[name] = fmt.Sprintf("cmd=%s env=%v mounts=%v", strings.TrimSpace(c.Config.Entrypoint+" "+strings.Join(c.Config.Cmd, " ")), env, mounts)
	}
	want := map[string]string{
		"app":  "cmd=httpd -f -p 8080 -h /etc/play env=[GREETING=hello MODE=test] mounts=[/etc/play:false /srv/www:true]",
		"side": "cmd=sleep 3600 env=[SIDE=yes] mounts=[]",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("container %s:\n got %s\nwant %s", k, got[k], w)
		}
	}

	// The ports: every container port of the manifest, published by kube
	// play, and the external port on the port the service targets.
	pod, err := pods.Inspect(ctx, rep.Pods[0].ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pod.InfraConfig == nil {
		t.Fatal("kube play's pod has no infra container to hold its ports")
	}
	var published []string
	externalTo := ""
	for port, hosts := range pod.InfraConfig.PortBindings {
		published = append(published, port)
		for _, h := range hosts {
			if h.HostPort == strconv.Itoa(external) {
				externalTo = port
			}
		}
	}
	slices.Sort(published)
	if w := []string{"8080/tcp", "8125/udp", "9090/tcp"}; !slices.Equal(published, w) {
		t.Errorf("kube play publishes the container ports %v, cuelet's pod declares %v", published, w)
	}
	if externalTo != "8080/tcp" {
		t.Errorf("the external port %d leads to %q under kube play, to 8080/tcp (service play's targetPort http) under cuelet", external, externalTo)
	}
	// The NodePort is not only written: it reaches the service's pods.
	url := fmt.Sprintf("http://127.0.0.1:%d/", external)
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if string(body) != "played\n" {
			return fmt.Errorf("GET %s: %s %q, want the ConfigMap's index.html", url, resp.Status, body)
		}
		return nil
	})
}

// publish returns the export's documents, decoded strictly into the API
// types, with every container port given a hostPort on 127.0.0.1: the
// nodePort of a NodePort Service whose targetPort is that port in a pod
// its selector picks (what kube-proxy would forward), else a free port.
// It returns as well the container ports that got a nodePort.
func publish(t *testing.T, export []byte) ([]byte, []string) {
	t.Helper()
	var out [][]byte
	var deployments []*appsv1.Deployment
	var services []*corev1.Service
	for _, doc := range strings.Split(string(export), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		switch meta.Kind {
		case "Deployment":
			d := &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict([]byte(doc), d); err != nil {
				t.Fatalf("decode Deployment: %v\n%s", err, doc)
			}
			deployments = append(deployments, d)
		case "Service":
			s := &corev1.Service{}
			if err := yaml.UnmarshalStrict([]byte(doc), s); err != nil {
				t.Fatalf("decode Service: %v\n%s", err, doc)
			}
			services = append(services, s)
			out = append(out, []byte(doc)) // kube play skips it
		default:
			out = append(out, []byte(doc))
		}
	}
	var toNode []string
	for _, d := range deployments {
		spec := &d.Spec.Template.Spec
		for ci := range spec.Containers {
			c := &spec.Containers[ci]
			for pi := range c.Ports {
				cp := &c.Ports[pi]
				cp.HostIP = "127.0.0.1"
				cp.HostPort = int32(nodePort(services, d.Spec.Template.Labels, *cp))
				if cp.HostPort != 0 {
					toNode = append(toNode, fmt.Sprintf("%d/%s", cp.ContainerPort, cp.Protocol))
				} else {
					cp.HostPort = int32(testenv.FreeTCPPort(t))
				}
			}
		}
		b, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return bytes.Join(out, []byte("\n---\n")), toNode
}

// nodePort is the nodePort that a NodePort Service sends to the container
// port cp of a pod with these labels, 0 if none does.
func nodePort(services []*corev1.Service, labels map[string]string, cp corev1.ContainerPort) int {
	for _, s := range services {
		if s.Spec.Type != corev1.ServiceTypeNodePort || !manifests.Selects(s.Spec.Selector, labels) {
			continue
		}
		for _, sp := range s.Spec.Ports {
			if sp.NodePort == 0 || sp.Protocol != cp.Protocol {
				continue
			}
			if sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal == cp.Name ||
				sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal == cp.ContainerPort {
				return int(sp.NodePort)
			}
		}
	}
	return 0
}

func writeFile(name, s string) error { return os.WriteFile(name, []byte(s), 0o644) }
