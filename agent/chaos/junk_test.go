package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// A stream of random and truncated .cue files dropped into the manifest
// directory while the agent runs (SPEC §3.1, §3.2): whatever they hold,
// nothing the agent already runs is touched (same containers, not
// restarted, no podman event about them), the portals keep answering, and
// once the files are gone the node is as before. The files come from the
// fuzz corpus's seeds (the examples and FuzzLoadUnit's own) and the base
// units, truncated, mutated, spliced, or plain random bytes.
func TestChaos_random_and_truncated_files_touch_nothing_that_runs(t *testing.T) {
	t.Parallel()
	sc := campaign(t)
	f := newFault("random and truncated .cue files dropped in")
	n := newNode(t)
	n.start()

	gen := newJunk(t, n.rng)
	base := []string{"store", "echo"}
	before := n.State(base...)
	start := time.Now()
	const slots = 6
	dropped := 0
	for range sc.junkBatches {
		for range junkBatch {
			dir := filepath.Join(n.Manifests, "junk", fmt.Sprint(n.rng.IntN(slots)))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "unit.cue")
			data := gen.next()
			var err error
			switch n.rng.IntN(4) {
			case 0:
				err = os.Remove(p)
				if os.IsNotExist(err) {
					err = nil
				}
			case 1:
				// Atomically, as git or an editor with atomic saves.
				tmp := filepath.Join(dir, ".unit.cue.new")
				if err = os.WriteFile(tmp, data, 0o644); err == nil {
					err = os.Rename(tmp, p)
				}
			default:
				// Truncate and write, as most editors.
				err = os.WriteFile(p, data, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			dropped++
			f.inject()
			time.Sleep(time.Duration(n.rng.IntN(150)) * time.Millisecond)
		}
		// After each batch, once the agent has had a pass over it: what
		// ran before is untouched, portals answer. The pass the last file
		// woke began before now (or none came: a file removed that was
		// not there); SIGHUP asks for one rather than waiting for the
		// resync (30 s, most of a batch's time before).
		var problems []string
		written := time.Now()
		if err := syscall.Kill(n.a.PID(), syscall.SIGHUP); err != nil {
			t.Fatalf("agent: %v", err)
		}
		if err := poll(startWithin, func() error {
			rep, err := n.Status()
			if err == nil && rep.Time.Before(written) {
				err = errors.New("no pass over the batch yet")
			}
			return err
		}); err != nil {
			problems = append(problems, fmt.Sprintf("after %d files: %v", dropped, err))
		}
		if d := before.Diff(n.State(base...)); len(d) > 0 {
			problems = append(problems, fmt.Sprintf("after %d files the base pods changed: %v", dropped, d))
		}
		if evs := n.Events.Since(start, agenttest.AnyOf(about("store"), about("echo"))); len(evs) > 0 {
			problems = append(problems, fmt.Sprintf("after %d files podman events for the base pods: %v", dropped, evs))
		}
		if err := n.answers(); err != nil {
			problems = append(problems, fmt.Sprintf("after %d files: %v", dropped, err))
		}
		for _, p := range problems {
			t.Error(p)
		}
		f.afterMany(junkBatch, problems)
		if len(problems) > 0 {
			break
		}
	}
	created := n.Events.Since(start, func(e agenttest.Event) bool { return e.Type == "pod" && e.Action == "create" })
	t.Logf("%d files dropped in %v: %d valid (%d more left out as unsafe to run), %d pods created from them",
		dropped, time.Since(start).Round(time.Millisecond), gen.valid, gen.unsafe, len(created))

	// The junk goes: whatever it made runs no more, the rest is as before.
	if err := os.RemoveAll(filepath.Join(n.Manifests, "junk")); err != nil {
		t.Fatal(err)
	}
	f.afterMany(0, n.check())
	if d := before.Diff(n.State(base...)); len(d) > 0 {
		t.Errorf("the base pods changed: %v", d)
	}
}

// about matches every event of a pod replica and its containers.
func about(replica string) func(agenttest.Event) bool {
	return func(e agenttest.Event) bool {
		return e.Name == replica || strings.HasPrefix(e.Name, replica+"-")
	}
}

// junk makes the files of the stream. A candidate that validates is kept
// only if running it stays inside the test's rules: the test image only,
// never pulled, commands and probes of the seeds only, no host path, no
// fixed portal or external port, endpoints on 127.0.0.1 only. Whatever does
// not validate is kept as it is.
type junk struct {
	t        *testing.T
	rng      *rand.Rand
	seeds    [][]byte
	commands map[string]bool // JSON of the seeds' commands, args and probe commands
	valid    int
	unsafe   int
}

// The fuzz test's own seeds (manifests/fuzz_test.go).
var fuzzSeeds = []string{
	"pods: web: {replica: 2, containers: app: {}}\n",
	"services: web: {selector: app: \"web\", endpoints: [\"a:1\"], ports: []}\n",
	"pods: web: containers: app: {image: \"x\", readinessProbe: {exec: command: [\"true\"], httpGet: port: 80}}\n",
	"package x\n\nimport \"strings\"\n\npods: [for i in [1] {strings.ToUpper(\"a\")}]\n",
}

// unsafeLines are dropped from the seeds: a fixed portal outside the
// node's range makes a unit invalid anyway, and an external port could
// collide with another test's listener.
var unsafeLines = regexp.MustCompile(`(?m)^.*portalIP:.*$|, externalPort: \d+`)

func newJunk(t *testing.T, rng *rand.Rand) *junk {
	j := &junk{t: t, rng: rng, commands: map[string]bool{}}
	examples, _ := filepath.Glob("../../manifests/examples/*.cue")
	more, _ := filepath.Glob("../../manifests/examples/*/*.cue")
	if len(examples)+len(more) == 0 {
		t.Fatal("no examples under manifests/examples: the corpus's seeds moved")
	}
	for _, name := range append(examples, more...) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		j.seeds = append(j.seeds, unsafeLines.ReplaceAll(b, nil))
	}
	for _, s := range append(fuzzSeeds, storeUnit(), echoUnit(), podUnit("1", "m0", "m1"), dbUnit("127.0.0.1:1")) {
		j.seeds = append(j.seeds, []byte(s))
	}
	for _, s := range j.seeds {
		u, err := manifests.LoadSource("seed.cue", map[string][]byte{"seed.cue": s}, manifests.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range u.Pods {
			for _, c := range p.Containers {
				for _, cmd := range containerCommands(c) {
					j.commands[cmd] = true
				}
			}
		}
	}
	return j
}

func containerCommands(c manifests.Container) []string {
	enc := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	out := []string{enc([2][]string{c.Command, c.Args})}
	if c.ReadinessProbe != nil && c.ReadinessProbe.Exec != nil {
		out = append(out, enc(c.ReadinessProbe.Exec.Command))
	}
	return out
}

// next returns the next file of the stream.
func (j *junk) next() []byte {
	for {
		b := j.candidate()
		if j.safe(b) {
			return b
		}
		j.unsafe++
	}
}

func (j *junk) candidate() []byte {
	r := j.rng
	seed := j.seeds[r.IntN(len(j.seeds))]
	switch r.IntN(6) {
	case 0: // truncated
		return append([]byte(nil), seed[:r.IntN(len(seed)+1)]...)
	case 1: // random bytes, mostly of CUE's alphabet
		const alphabet = "abcdefghijklmnopqrstuvwxyz:{}[]\"', \n\t0123456789-_.()|&*"
		b := make([]byte, r.IntN(300))
		for i := range b {
			if r.IntN(10) == 0 {
				b[i] = byte(r.IntN(256))
			} else {
				b[i] = alphabet[r.IntN(len(alphabet))]
			}
		}
		return b
	case 2: // lines deleted
		lines := strings.Split(string(seed), "\n")
		for range 1 + r.IntN(3) {
			i := r.IntN(len(lines))
			lines = append(lines[:i], lines[i+1:]...)
			if len(lines) == 0 {
				break
			}
		}
		return []byte(strings.Join(lines, "\n"))
	case 3: // two seeds spliced
		other := j.seeds[r.IntN(len(j.seeds))]
		return append(append([]byte(nil), seed[:r.IntN(len(seed)+1)]...), other[r.IntN(len(other)+1):]...)
	default: // a few bytes changed, inserted or deleted
		b := append([]byte(nil), seed...)
		for range 1 + r.IntN(4) {
			if len(b) == 0 {
				break
			}
			i := r.IntN(len(b))
			switch r.IntN(3) {
			case 0:
				b[i] = byte(r.IntN(256))
			case 1:
				b = append(b[:i], append([]byte{"{}[]:\"\n,"[r.IntN(8)]}, b[i:]...)...)
			default:
				b = append(b[:i], b[i+1:]...)
			}
		}
		return b
	}
}

// safe reports whether the agent may run what b defines (see junk).
func (j *junk) safe(b []byte) bool {
	u, err := manifests.LoadSource("unit.cue", map[string][]byte{"unit.cue": b}, manifests.Options{})
	if err != nil {
		j.t.Fatal(err)
	}
	if !u.Valid() {
		return true
	}
	for _, p := range u.Pods {
		if p.DNSConfig != nil {
			return false
		}
		for _, v := range p.Volumes {
			if v.HostPath != nil {
				return false
			}
		}
		for _, c := range p.Containers {
			if c.Image != podmantest.Image || c.ImagePullPolicy == "Always" {
				return false
			}
			for _, cmd := range containerCommands(c) {
				if !j.commands[cmd] {
					return false
				}
			}
		}
	}
	for _, s := range u.Services {
		if s.PortalIP != "" {
			return false
		}
		for _, p := range s.Ports {
			if p.ExternalPort != 0 {
				return false
			}
		}
		for _, e := range s.Endpoints {
			if !strings.HasPrefix(e, "127.0.0.1:") {
				return false
			}
		}
	}
	j.valid++
	return true
}
