package kubeplay_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containers/podman/v4/pkg/bindings"
	"github.com/containers/podman/v4/pkg/bindings/containers"
	podmankube "github.com/containers/podman/v4/pkg/bindings/kube"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/kube"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// playable is a unit of what podman 4.3's kube play runs: one replica,
// env, a command, ports, a ConfigMap volume and a hostPath.
const playable = `
pods: play: {
	labels: app: "play"
	containers: {
		app: {
			image: "localhost/cuelet-busybox:latest"
			command: ["httpd", "-f", "-p", "8080"]
			env: {GREETING: "hello", MODE: "test"}
			ports: [{name: "http", containerPort: 8080}]
			volumeMounts: [{name: "conf", mountPath: "/etc/play", readOnly: true}, {name: "site", mountPath: "/srv/www"}]
		}
		side: {
			image: "localhost/cuelet-busybox:latest"
			command: ["sleep", "3600"]
			env: SIDE: "yes"
		}
	}
	volumes: {
		conf: files: "play.conf": "x\n"
		site: hostPath: path: "/srv"
	}
}
services: play: {
	selector: app: "play"
	ports: [{name: "http", port: 80, targetPort: "http"}]
}
`

// TestKubePlayRunsTheExportWithTheSameCommandsEnvAndMounts hands the
// export to podman's own kube play and looks at what it runs. Ports are not
// compared: kube play records a containerPort only when it has a hostPort.
func TestKubePlayRunsTheExportWithTheSameCommandsEnvAndMounts(t *testing.T) {
	p := podmantest.New(t)
	dir := t.TempDir()
	if err := writeFile(dir+"/play.cue", playable); err != nil {
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
	var yaml bytes.Buffer
	if err := kube.Export(&yaml, units); err != nil {
		t.Fatal(err)
	}
	ctx, err := bindings.NewConnection(context.Background(), p.URL)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := podmankube.PlayWithBody(ctx, &yaml, nil)
	if err != nil {
		t.Fatalf("kube play: %v\n%s", err, yaml.String())
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
		"app":  "cmd=httpd -f -p 8080 env=[GREETING=hello MODE=test] mounts=[/etc/play:false /srv/www:true]",
		"side": "cmd=sleep 3600 env=[SIDE=yes] mounts=[]",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("container %s:\n got %s\nwant %s", k, got[k], w)
		}
	}
}

func writeFile(name, s string) error { return os.WriteFile(name, []byte(s), 0o644) }
