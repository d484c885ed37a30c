package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// badRollouts are the edits of web that can never roll out (SPEC §9).
var badRollouts = []struct{ name, image, policy, command, probePath string }{
	{name: "an image that does not exist", image: "localhost/cuelet-no-such-image:latest", policy: "Never"},
	{name: "a container that exits at once", command: `["sh", "-c", "exit 1"]`},
	{name: "a readiness probe that never passes", probePath: "/no-such-page"},
}

// webUnit is three replicas of busybox httpd behind service web, with a
// readiness probe; version goes into the environment, so a new one rolls
// the replicas out one at a time (SPEC §3.6). httpd, process 1 of its
// container, ignores SIGTERM: a grace period of 1 s, not 10, makes each
// replica's replacement 10 s shorter (a replica is out of the service
// before it is stopped).
func webUnit(version, image, policy, command, probePath string) string {
	if image == "" {
		image = podmantest.Image
	}
	if policy == "" {
		policy = "IfNotPresent"
	}
	if command == "" {
		command = `["sh", "-c", "echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"]`
	}
	if probePath == "" {
		probePath = "/"
	}
	return fmt.Sprintf(`pods: web: {
	replicas: 3
	progressDeadlineSeconds: 10
	terminationGracePeriodSeconds: 1
	labels: app: "web"
	containers: httpd: {
		image: %q
		imagePullPolicy: %q
		command: %s
		env: VERSION: %q
		ports: [{name: "http", containerPort: 8080}]
		readinessProbe: {httpGet: {path: %q, port: "http"}, periodSeconds: 1}
	}
}
services: web: {
	selector: app: "web"
	ports: [{port: 80, targetPort: "http"}]
}
`, image, policy, command, version, probePath)
}

// Bad rollouts of each kind on three replicas behind a service, each
// followed by a good one: the service answers every request of a client
// that asks ten times a second throughout, a bad rollout stops at the
// first replica (stuck in the status, the other two on the old spec), and
// the good one completes.
func TestChaos_bad_rollouts_behind_a_service_that_keeps_answering(t *testing.T) {
	t.Parallel()
	sc := campaign(t)
	n := newNode(t)
	n.Write("web.cue", webUnit("good-0", "", "", "", ""))
	for _, r := range []string{"web", "web-1", "web-2"} {
		n.want[r] = []string{"httpd"}
	}
	n.start()
	var addr string
	if err := poll(startWithin, func() error {
		rep, err := n.Status()
		if err != nil {
			return err
		}
		for _, s := range rep.Services {
			if s.Name == "web" && s.PortalIP != "" && len(allEndpoints(s)) == 3 {
				addr = s.PortalIP + ":80"
				return nil
			}
		}
		return errors.New("service web has no portal or not 3 endpoints yet")
	}); err != nil {
		t.Fatal(err)
	}

	faults := make([]*fault, len(badRollouts))
	for i, b := range badRollouts {
		faults[i] = newFault("bad rollout behind a service: " + b.name)
	}
	stop := make(chan struct{})
	defer close(stop)
	c := clientLoop(addr, 100*time.Millisecond, stop)
	good := 0
	for round := range sc.rolloutRounds {
		for i, b := range badRollouts {
			f := faults[i]
			var problems []string
			add := func(format string, args ...any) {
				t.Helper()
				p := fmt.Sprintf("round %d, %s: ", round, b.name) + fmt.Sprintf(format, args...)
				t.Error(p)
				problems = append(problems, p)
			}
			_, failsBefore := c.counts()
			old := fmt.Sprintf("good-%d", good)
			bad := fmt.Sprintf("bad-%d-%d", round, i)
			at := n.Write("web.cue", webUnit(bad, b.image, b.policy, b.command, b.probePath))
			f.inject()
			var stuck string
			if err := poll(startWithin, func() error {
				rep, err := n.Status()
				if err != nil {
					return err
				}
				for _, r := range rep.Rollouts {
					if r.Pod == "web" && r.State == "stuck" && rep.Time.After(at) {
						stuck = r.String()
						return nil
					}
				}
				return fmt.Errorf("no stuck rollout of web: %v", rep.Rollouts)
			}); err != nil {
				add("%v", err)
			}
			// Give it time to walk on, as it did before SPEC §9.
			time.Sleep(5 * time.Second)
			// Two replicas or three (the image is checked before the
			// first replica goes) keep the old spec.
			if kept := onSpec(n, old); len(kept) < 2 {
				add("%v after the edit the replicas on the old spec are %v, want two or three", time.Since(at).Round(time.Second), kept)
			}
			t.Logf("round %d, %s: %s", round, b.name, stuck)

			good++
			fixed := n.Write("web.cue", webUnit(fmt.Sprintf("good-%d", good), "", "", "", ""))
			if err := poll(convergeWithin, func() error {
				if on := onSpec(n, fmt.Sprintf("good-%d", good)); len(on) != 3 {
					return fmt.Errorf("replicas on the corrected spec: %v", on)
				}
				rep, err := n.Status()
				if err != nil {
					return err
				}
				for _, s := range rep.Services {
					if s.Name == "web" && len(allEndpoints(s)) != 3 {
						return fmt.Errorf("web has endpoints %v", allEndpoints(s))
					}
				}
				return nil
			}); err != nil {
				add("the corrected rollout: %v", err)
			} else {
				t.Logf("round %d, %s: the corrected rollout done %v after the edit", round, b.name, time.Since(fixed).Round(time.Millisecond))
			}
			problems = append(problems, n.check()...)
			requests, fails := c.counts()
			for _, fail := range fails[len(failsBefore):] {
				add("a request to web failed: %s", fail)
			}
			t.Logf("round %d, %s: the client has sent %d requests to web so far, %d failed", round, b.name, requests, len(fails))
			f.after(problems)
		}
	}
}

// client asks addr for / every interval until stop is closed, and keeps
// the requests that failed.
type client struct {
	mu       sync.Mutex
	requests int
	fails    []string
}

func clientLoop(addr string, interval time.Duration, stop <-chan struct{}) *client {
	c := &client{}
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			err := getHello(addr)
			c.mu.Lock()
			c.requests++
			if err != nil {
				c.fails = append(c.fails, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// counts returns the requests made and the failures so far.
func (c *client) counts() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests, slices.Clone(c.fails)
}

// onSpec lists the replicas of web on podman whose spec has VERSION v.
func onSpec(n *node, v string) (names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods, err := n.Client.ListPods(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	for _, p := range pods {
		if p.PodName() == "web" && strings.Contains(p.Labels[reconcile.LabelSpec], `"VERSION":"`+v+`"`) {
			names = append(names, p.Name)
		}
	}
	return names
}

// allEndpoints are the ready endpoints of every port of a service.
func allEndpoints(s agent.ServiceStatus) []string {
	var out []string
	for _, p := range s.Ports {
		out = append(out, p.Endpoints...)
	}
	return out
}
