package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

// The state dir on a tiny tmpfs that fills up (something else writes there
// until no space is left), while a change needs the state written: a unit
// and its service added, or removed. The writes fail with a clear error in
// the status and the log, what runs keeps running and serving, every state
// file is still its last good content (never a torn write), an agent killed
// and started again on the full disk changes nothing. The agent retries the
// write, each time later; the disk stays full until the retries are 16 s
// apart, and once the space is back the agent catches up within
// spaceBackWithin on its own: not at its next resync (5 min here), nor at
// its next retry.
func TestChaos_state_dir_that_fills_up(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	sc := campaign(t)
	f := newFault("state dir full (tmpfs), with a SIGKILL of the agent meanwhile")
	n := newNode(t)
	if err := os.MkdirAll(n.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", n.StateDir, "tmpfs", 0, "size=512k,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs on the state dir: %v", err)
	}
	// Cleanups run last in, first out: the agent has gone before this.
	t.Cleanup(func() {
		if err := syscall.Unmount(n.StateDir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount the state dir: %v", err)
		}
	})
	n.agentArgs = []string{"--resync", "5m"}
	n.start()
	base := []string{"store", "echo"}
	before := n.State(base...)
	filler := filepath.Join(n.StateDir, "filler")

	for round := range sc.diskFulls {
		// Whatever fills the disk takes any space that frees up, too.
		stopFill := fill(t, filler)
		snap := stateFiles(t, n.StateDir)
		f.inject()
		var problems []string
		add := func(format string, args ...any) {
			t.Helper()
			p := fmt.Sprintf("round %d: ", round) + fmt.Sprintf(format, args...)
			t.Error(p)
			problems = append(problems, p)
		}

		// The change: extra added, then edited and broken, then removed.
		at := time.Now()
		kind := round % 3
		var broken agenttest.PodState
		switch kind {
		case 0, 1:
			n.Write("extra.cue", extraUnit(fmt.Sprint(round)))
			n.want["extra"] = []string{"side", "app"}
		case 2:
			n.Remove("extra.cue")
			delete(n.want, "extra")
		}
		if err := n.fullDiskReported(at); err != nil {
			add("%v", err)
		} else if err := n.fullDiskLogged(); err != nil {
			add("%v", err)
		}
		if kind == 1 {
			// The edit whose last good copy cannot be saved, then the
			// unit broken: extra's pod stays as it is (SPEC §3.2), not
			// rolled back to an older copy, now or after a restart.
			broken = n.State("extra")
			brk := n.Write("extra.cue", "pods: extra: {\n")
			if err := n.unitInvalid(brk, "extra.cue"); err != nil {
				add("%v", err)
			}
			if d := broken.Diff(n.State("extra")); len(d) > 0 {
				add("the broken unit's pod changed: %v", d)
			}
		}
		if err := n.answers(); err != nil {
			add("portals with the state dir full: %v", err)
		}
		// An agent killed now and started on the full disk changes
		// nothing that runs and keeps the portals.
		n.a.Kill()
		restart := time.Now()
		n.restart()
		if err := n.fullDiskReported(restart); err != nil && kind != 1 {
			add("after a restart on the full disk: %v", err)
		}
		if err := n.unitInvalid(restart, ""); err != nil {
			add("after a restart on the full disk: %v", err)
		}
		if p := n.portalProblems(); len(p) > 0 {
			add("after a restart on the full disk: %v", p)
		}
		if d := before.Diff(n.State(base...)); len(d) > 0 {
			add("the base pods changed: %v", d)
		}
		if broken != nil {
			if d := broken.Diff(n.State("extra")); len(d) > 0 {
				add("after a restart on the full disk the broken unit's pod changed: %v", d)
			}
		}
		for _, p := range tornStateFiles(t, snap, stateFiles(t, n.StateDir)) {
			add("%s", p)
		}

		// The agent retries until its retries are far apart (kind 1 may
		// have nothing to write after the restart: no retry then).
		failing, err := n.fullDiskRetried(5)
		if err != nil {
			add("%v", err)
		}

		// Space comes back: the agent catches up on its own, at once.
		stopFill()
		held := stateFiles(t, n.StateDir)
		freed := time.Now()
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		if failing {
			if err := n.stateWritten(held, freed); err != nil {
				add("%v", err)
			}
			if err := n.cleanPassAfter(freed); err != nil {
				add("%v", err)
			}
		}
		problems = append(problems, n.check()...)
		if kind == 0 {
			if err := n.portalAllocated("extra"); err != nil {
				add("once space is back: %v", err)
			}
		}
		f.after(problems)
	}
	if d := before.Diff(n.State(base...)); len(d) > 0 {
		t.Errorf("the base pods changed: %v", d)
	}
}

// extraUnit is pod extra at version and a service in front of it.
func extraUnit(version string) string {
	return podUnit(version, "extra") + `
services: extra: {
	selector: app: "extra"
	ports: [{port: 80}]
}
`
}

// unitInvalid waits for a finished pass started after since; with id, that
// pass must find the unit invalid.
func (n *node) unitInvalid(since time.Time, id string) error {
	return poll(startWithin, func() error {
		rep, err := n.Status()
		if err != nil {
			return err
		}
		if rep.Partial || rep.Time.Before(since) {
			return errors.New("no pass since the change yet")
		}
		if id == "" {
			return nil
		}
		for _, u := range rep.Units {
			if u.ID == id && !u.Valid {
				return nil
			}
		}
		return fmt.Errorf("unit %s is not reported invalid: %+v", id, rep.Units)
	})
}

// fill writes a file until the file system has no space left, then goes
// on taking whatever frees up, every 10 ms, until stop is called.
func fill(t *testing.T, path string) (stop func()) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	take := func() error {
		for {
			if _, err := fh.Write(buf); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					return nil
				}
				return err
			}
		}
	}
	if err := take(); err != nil {
		t.Fatal(err)
	}
	done, stopped := make(chan struct{}), make(chan error, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				stopped <- fh.Close()
				return
			case <-tick.C:
			}
			// A smaller write fills the tail of the last page.
			if err := take(); err != nil {
				stopped <- err
				return
			}
			if _, err := fh.Write(buf[:1]); err != nil && !errors.Is(err, syscall.ENOSPC) {
				stopped <- err
				return
			}
		}
	}()
	return func() {
		close(done)
		if err := <-stopped; err != nil {
			t.Fatalf("filling the state dir: %v", err)
		}
	}
}

// fullDiskReported waits for a pass started after since whose errors say
// the state could not be written for lack of space.
func (n *node) fullDiskReported(since time.Time) error {
	return poll(startWithin, func() error {
		rep, err := n.Status()
		if err != nil {
			return err
		}
		if rep.Partial || rep.Time.Before(since) {
			return errors.New("no pass since the change yet")
		}
		for _, e := range rep.Errors {
			if msg := e.Error(); strings.Contains(msg, "no space left on device") && strings.Contains(msg, n.StateDir) {
				return nil
			}
		}
		return fmt.Errorf("the pass reports no error about the full state dir: %v", rep.Errors)
	})
}

// spaceBackWithin bounds the time from the space coming back to the
// state written: the agent looks at a full state dir's free space every
// second and writes the state first thing in a pass, where its retries are
// 16 s apart by then and its resync 5 min.
const spaceBackWithin = 5 * time.Second

// fullDiskLogged waits for the agent's log to hold the full state dir's
// error: the log comes a moment after the status.
func (n *node) fullDiskLogged() error {
	return poll(10*time.Second, func() error {
		for _, line := range strings.Split(n.a.Log(), "\n") {
			if strings.Contains(line, "no space left on device") && strings.Contains(line, n.StateDir) {
				return nil
			}
		}
		return fmt.Errorf("the agent's log has no line about the full state dir %s", n.StateDir)
	})
}

// fullDiskRetried waits until the agent has met the full state dir in
// passes times (the first pass and its retries, 1 s doubling): the next
// retry is then 2^(passes-1) s away. It reports false when the last pass
// wrote everything it had to (nothing to retry).
func (n *node) fullDiskRetried(passes int) (failing bool, err error) {
	err = poll(convergeWithin, func() error {
		rep, err := n.Status()
		if err != nil {
			return err
		}
		failing = false
		for _, e := range rep.Errors {
			failing = failing || strings.Contains(e.Error(), "no space left on device")
		}
		if !failing {
			return nil
		}
		most := 0
		for _, e := range rep.Events {
			if e.Type == "Warning" && strings.Contains(e.Message, "no space left on device") {
				most = max(most, e.Count)
			}
		}
		if most < passes {
			return fmt.Errorf("the full state dir met in %d passes, want %d", most, passes)
		}
		return nil
	})
	return failing, err
}

// stateWritten waits for a state file to differ from held, what the
// state dir held when the space came back at freed (the agent had a write
// that failed, so it has one to make), within spaceBackWithin.
func (n *node) stateWritten(held map[string][]byte, freed time.Time) error {
	var changed string
	err := poll(convergeWithin, func() error {
		now := stateFiles(n.t, n.StateDir)
		for name, b := range now {
			if old, ok := held[name]; !ok || !bytes.Equal(old, b) {
				changed = name
				return nil
			}
		}
		for name := range held {
			if _, ok := now[name]; !ok {
				changed = name
				return nil
			}
		}
		return errors.New("no state file written since the space came back")
	})
	took := time.Since(freed)
	if err != nil {
		return err
	}
	n.t.Logf("state file %s written %v after the space came back", changed, took.Round(time.Millisecond))
	if took > spaceBackWithin {
		return fmt.Errorf("the state written %v after the space came back, want within %v", took.Round(time.Millisecond), spaceBackWithin)
	}
	return nil
}

// cleanPassAfter waits for a pass without errors that ended after freed.
func (n *node) cleanPassAfter(freed time.Time) error {
	// A pass under way (slow on a busy machine) may hold the next.
	if err := poll(convergeWithin, func() error {
		rep, err := n.Status()
		switch {
		case err != nil:
			return err
		case rep.Time.Add(rep.Duration).Before(freed):
			return errors.New("no pass has ended since the space came back")
		case len(rep.Errors) > 0:
			return fmt.Errorf("errors: %v", rep.Errors)
		}
		n.t.Logf("a clean pass ended %v after the space came back", rep.Time.Add(rep.Duration).Sub(freed).Round(time.Millisecond))
		return nil
	}); err != nil {
		return fmt.Errorf("no clean pass since the space came back: %w", err)
	}
	return nil
}

// portalAllocated reports nil when service has a portal in the status and
// in the state dir, the same.
func (n *node) portalAllocated(service string) error {
	rep, err := n.Status()
	if err != nil {
		return err
	}
	saved, err := savedPortals(n.StateDir)
	if err != nil {
		return err
	}
	for _, s := range rep.Services {
		if s.Name == service && s.PortalIP != "" && s.PortalIP == saved[service] {
			return nil
		}
	}
	return fmt.Errorf("service %s has no portal, or not the one saved (%q)", service, saved[service])
}

// stateFiles reads every file of the state dir but the filler, the lock
// and temp files.
func stateFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name, _ := filepath.Rel(dir, p)
		if name == "filler" || name == "cuelet.lock" || strings.HasPrefix(d.Name(), ".") {
			// The lock, and the temp files of writes under way (a
			// write that fails removes its own).
			return nil
		}
		b, err := os.ReadFile(p)
		out[name] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tornStateFiles compares the state files now with those when the disk
// filled up: each must be there, valid JSON, the same or whole new content
// (a write may get through: the agent frees space itself, removing a
// unit's last good copy, before the filler takes it back), and none
// removed but a unit's last good copy. It logs what changed.
func tornStateFiles(t *testing.T, then, now map[string][]byte) []string {
	t.Helper()
	var problems []string
	for name, b := range now {
		old, ok := then[name]
		switch {
		case !json.Valid(b):
			problems = append(problems, fmt.Sprintf("state file %s is not valid JSON: %q", name, b))
		case !ok:
			t.Logf("state file %s written on a full disk, whole: %q", name, b)
		case !bytes.Equal(old, b):
			t.Logf("state file %s written on a full disk, whole: %q became %q", name, old, b)
		}
	}
	for name := range then {
		if _, ok := now[name]; !ok && !strings.HasPrefix(name, "lastgood/") {
			problems = append(problems, fmt.Sprintf("state file %s removed on a full disk", name))
		}
	}
	return problems
}
