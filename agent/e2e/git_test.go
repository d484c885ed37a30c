package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/manifests/gitsource/gittest"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

// TestGitSourceFollowsTheRepositoryAndKeepsTheLastGood runs SPEC §12 on
// one node, in the order a repository lives through it: first sync, a new
// commit within the period plus 2 s, an invalid commit, a commit that
// deletes every file, the remote gone, a restart that adopts, and SIGHUP.
func TestGitSourceFollowsTheRepositoryAndKeepsTheLastGood(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	up := gittest.New(t, n.Dir) // git, or skip (fail with CI set)
	const period = 3 * time.Second
	first := up.Commit(t, "keep and web", map[string]string{
		"keep.cue": podUnit("keep", 1, "1"),
		"web.cue":  podUnit("web", 1, "1"),
	})
	a := n.Start(agenttest.Options{GitURL: "file://" + up.Bare, Notify: true, Args: []string{"--git-period", period.String()}})
	rep := a.WaitSynced(startWithin, time.Time{}, wantRevision(first, ""))
	waitRunning(t, n, startWithin, "keep", "web")
	if rep.Source.Revision.Subject != "keep and web" {
		t.Errorf("status revision %+v, want the subject \"keep and web\"", rep.Source.Revision)
	}
	stdout, _, _ := n.CLI("status", "--run-dir", n.RunDir)
	if !strings.Contains(stdout, "REVISION  "+first+" keep and web") {
		t.Errorf("cuelet status does not lead with the revision:\n%s", stdout)
	}
	if _, body, err := a.HTTPGet("/metrics"); err != nil || !strings.Contains(body, `cuelet_source_info{revision="`+first+`"`) {
		t.Errorf("no cuelet_source_info for %s in /metrics (%v)", first, err)
	}
	// The series of --git-url are as documented (observe_test has the rest).
	if docs, err := agenttest.DocumentedSeries(); err != nil {
		t.Error(err)
	} else if _, body, err := a.HTTPGet("/metrics"); err != nil {
		t.Error(err)
	} else if err := agenttest.CheckMetrics(body, docs, func(s agenttest.Series) bool { return strings.Contains(s.When, "--git-url") }); err != nil {
		t.Error(err)
	}
	if m, _, err := a.Notify.Wait(0, changeWithin, func(m agenttest.Notification) bool {
		return strings.Contains(m.Fields["STATUS"], "revision "+first[:7]+" keep and web")
	}); err != nil {
		t.Errorf("no STATUS= names the revision: %v", err)
	} else {
		t.Logf("STATUS=%s", m.Fields["STATUS"])
	}
	keep := n.State("keep")

	// A new commit: podman calls within the period plus 2 s of the push.
	// The time runs from the end of the push: before it, the test runs
	// git rm, add and commit, a second or more on a loaded machine, and
	// the agent cannot see the commit until it is pushed.
	at := time.Now()
	second := up.Commit(t, "web v2", map[string]string{
		"keep.cue": podUnit("keep", 1, "1"),
		"web.cue":  podUnit("web", 1, "2"),
	})
	pushed := time.Now()
	call := waitEvent(t, n, at, changeWithin, about("web"))
	if d := call.Time.Sub(pushed); d > period+2*time.Second {
		t.Errorf("new commit: first podman call %v after the push; want within the period %v plus 2s", d, period)
	} else {
		t.Logf("new commit: first podman call %v after the push (period %v)", d.Round(time.Millisecond), period)
	}
	a.WaitSynced(changeWithin, at, wantRevision(second, ""))
	waitRunning(t, n, changeWithin, "web")
	web := n.State("web")
	if !strings.Contains(a.Log(), `"revision":"`+second[:7]+`"`) {
		t.Errorf("the log does not carry the revision %s", second[:7])
	}

	// An invalid commit: that unit keeps its last good state.
	at = time.Now()
	invalid := up.Commit(t, "web broken", map[string]string{
		"keep.cue": podUnit("keep", 1, "1"),
		"web.cue":  strings.Replace(podUnit("web", 1, "3"), "replicas: 1", "replicas: -1", 1),
	})
	a.WaitSynced(changeWithin, at, func(rep *agent.Report) error {
		if err := wantRevision(invalid, "")(rep); err != nil {
			return err
		}
		if u, ok := unit(rep, "web.cue"); !ok || u.Valid || !u.LastGood {
			return fmt.Errorf("web.cue: %+v; want invalid with its last good kept", u)
		}
		return nil
	})

	// A commit that deletes every file deletes nothing.
	at = time.Now()
	empty := up.Commit(t, "delete everything", nil)
	a.WaitSynced(changeWithin, at, func(rep *agent.Report) error {
		if err := wantRevision(empty, "")(rep); err != nil {
			return err
		}
		if len(rep.Errors) == 0 {
			return fmt.Errorf("no empty-directory error yet")
		}
		return nil
	})

	// The remote gone: the last revision stays, the error shows.
	good := up.Commit(t, "web v2 again", map[string]string{
		"keep.cue": podUnit("keep", 1, "1"),
		"web.cue":  podUnit("web", 1, "2"),
	})
	a.WaitSynced(changeWithin, time.Now(), wantRevision(good, ""))
	if err := os.Rename(up.Bare, up.Bare+"-away"); err != nil {
		t.Fatal(err)
	}
	at = time.Now()
	a.WaitSynced(changeWithin, at, wantRevision(good, "list remote refs"))
	if _, body, err := a.HTTPGet("/metrics"); err != nil || strings.Contains(body, "cuelet_git_fetch_errors_total 0") {
		t.Errorf("cuelet_git_fetch_errors_total did not count the failing fetch (%v)", err)
	}
	if n := strings.Count(a.Log(), "git fetch failed"); n != 1 {
		t.Errorf("the failing fetch was logged %d times, want once per change", n)
	}

	// A restart with the state dir kept, the remote still gone: the
	// revision is still live and no container restarts.
	a.Signal(syscall.SIGTERM)
	if _, err := a.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	b := n.Start(agenttest.Options{GitURL: "file://" + up.Bare, Args: []string{"--git-period", "1h"}})
	b.WaitSynced(startWithin, restart, wantRevision(good, "list remote refs"))
	for name, before := range map[string]agenttest.PodState{"keep": keep, "web": web} {
		if d := before.Diff(n.State(name)); len(d) > 0 {
			t.Errorf("%s changed over the git history and the restart: %v", name, d)
		}
	}
	if evs := n.Events.Since(restart, func(e agenttest.Event) bool { return about("keep")(e) || about("web")(e) }); len(evs) > 0 {
		t.Errorf("podman events after the restart: %v", evs)
	}

	// The remote back and a new commit: SIGHUP fetches at once, long
	// before the hour's period.
	if err := os.Rename(up.Bare+"-away", up.Bare); err != nil {
		t.Fatal(err)
	}
	third := up.Commit(t, "web v3", map[string]string{
		"keep.cue": podUnit("keep", 1, "1"),
		"web.cue":  podUnit("web", 1, "3"),
	})
	at = time.Now()
	b.Signal(syscall.SIGHUP)
	call = waitEvent(t, n, at, changeWithin, about("web"))
	spec2s(t, "SIGHUP fetch", at, call, call)
	b.WaitSynced(changeWithin, at, wantRevision(third, ""))
	if d := keep.Diff(n.State("keep")); len(d) > 0 {
		t.Errorf("keep changed: %v", d)
	}
}

// wantRevision accepts a report that read hash, with a fetch error that
// contains fetchErr ("" for none).
func wantRevision(hash, fetchErr string) func(*agent.Report) error {
	return func(rep *agent.Report) error {
		if rep.Source == nil {
			return testenv.Permanent(fmt.Errorf("report without a source"))
		}
		if rep.Source.Revision.Hash != hash {
			return fmt.Errorf("revision %s, want %s", rep.Source.Revision, hash)
		}
		if got := rep.Source.FetchError; (fetchErr == "") != (got == "") || !strings.Contains(got, fetchErr) {
			return fmt.Errorf("fetch error %q, want %q", got, fetchErr)
		}
		return nil
	}
}
