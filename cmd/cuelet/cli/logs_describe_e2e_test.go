package cli_test

// End-to-end tests of `cuelet logs`, `describe` and `status` against a real
// podman (podmantest) and a running agent: what a podman or kubectl user
// reaches for first when a replica misbehaves. Root and podman needed;
// they skip without, unless CI is set.

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/cmd/cuelet/cli"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// inspectPods: web has two containers; app serves HTTP, writes a line to
// stdout and one to stderr, then ticks once every 200 ms; it is ready when
// its port answers (an exec probe is too slow for a busy test machine).
const inspectPods = `
pods: web: {
	labels: app: "web"
	containers: app: {
		image: %[1]q
		command: ["sh", "-c", "httpd -p 8080 -h /tmp; echo hello from app; echo oops from app >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
		ports: [{name: "http", containerPort: 8080}]
		readinessProbe: {tcpSocket: port: "http", periodSeconds: 1}
	}
	containers: side: {
		image: %[1]q
		command: ["sh", "-c", "echo hello from side; exec sleep 1000000"]
	}
}
services: web: {
	selector: app: "web"
	ports: [{name: "http", port: 80, targetPort: "http"}]
}
`

func TestLogsDescribeAndStatusShowARealReplica(t *testing.T) {
	n := newSvcNode(t, agent.ProxyUserspace, true)
	n.write("web.cue", fmt.Sprintf(inspectPods, podmantest.Image))
	n.startAgent()
	n.waitService("web", 2*time.Minute, endpointCount(1))

	// logs without a container: the spec's first, said on stderr; the
	// container's stdout and stderr stay apart.
	testenv.Eventually(t, 30*time.Second, func() error {
		stdout, stderr, code := n.cuelet("logs", "web")
		if code != 0 || !strings.HasPrefix(stdout, "hello from app\n") || !strings.Contains(stdout, "tick 1\n") ||
			stderr != "Defaulted container \"app\" out of: app, side\noops from app\n" {
			return fmt.Errorf("cuelet logs web: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		return nil
	})
	if stdout, stderr, code := n.cuelet("logs", "web", "side"); code != 0 || stdout != "hello from side\n" || stderr != "" {
		t.Errorf("cuelet logs web side: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// podman 4.3 reads the log file while conmon writes it: a tail that
	// meets a line half written once printed nothing (exit 0). Ask again.
	testenv.Eventually(t, 10*time.Second, func() error {
		if stdout, _, code := n.cuelet("logs", "web", "app", "--tail", "1"); code != 0 || !regexp.MustCompile(`^tick \d+\n$`).MatchString(stdout) {
			return fmt.Errorf("cuelet logs web app --tail 1: exit %d, stdout %q; want one tick line", code, stdout)
		}
		return nil
	})
	if _, stderr, code := n.cuelet("logs", "web", "nope"); code != 1 || !strings.Contains(stderr, `replica web has no container "nope"; it has: app, side`) {
		t.Errorf("cuelet logs web nope: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := n.cuelet("logs", "nope"); code != 1 || !strings.Contains(stderr, `no replica "nope" on this node`) {
		t.Errorf("cuelet logs nope: exit %d, stderr %q", code, stderr)
	}

	// --follow goes on printing what the container writes, and stops
	// when interrupted.
	ctx, cancel := context.WithCancel(n.ctx)
	out := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		env := &cli.Env{Stdout: out, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" }}
		done <- cli.Run(ctx, env, append([]string{"logs"}, append(n.flags(), "web", "app", "--follow", "--tail", "1")...))
	}()
	testenv.Eventually(t, 20*time.Second, func() error {
		if ticks := regexp.MustCompile(`tick \d+\n`).FindAllString(out.String(), -1); len(ticks) < 3 {
			return fmt.Errorf("followed so far: %q; want three ticks", out.String())
		}
		return nil
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("cuelet logs --follow exited %d when interrupted", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cuelet logs --follow did not stop within 10s of the interrupt")
	}

	// describe: containers ready with the probe in kubectl's words, the
	// service port the replica serves, and the action that made it.
	stdout, stderr, code := n.cuelet("describe", "web")
	if code != 0 {
		t.Fatalf("cuelet describe web: exit %d\n%s", code, stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Name: +web$`),
		regexp.MustCompile(`(?m)^Ready: +true \(2/2 containers\)$`),
		regexp.MustCompile(`(?m)^    Readiness: +tcp-socket :8080 delay=0s timeout=1s period=1s #success=1 #failure=3$`),
		regexp.MustCompile(`(?m)^Endpoints: +web 80/TCP -> 10\.\d+\.\d+\.\d+:8080$`),
		regexp.MustCompile(`(?m)^  Normal +\S+ +\+ pod web$`),
		regexp.MustCompile(`(?m)^Portal: +` + regexp.QuoteMeta(n.portalOf("web").String()) + `$`),
	} {
		if !want.MatchString(stdout) {
			t.Errorf("cuelet describe web has no line matching %s:\n%s", want, stdout)
		}
	}

	// status: kubectl's READY column counts the containers.
	stdout, _, code = n.cuelet("status", "web")
	if code != 0 || !regexp.MustCompile(`(?m)^web +2/2 +Running +0 +\S+$`).MatchString(stdout) {
		t.Errorf("cuelet status web: exit %d\n%s", code, stdout)
	}
}
