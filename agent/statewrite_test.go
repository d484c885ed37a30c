package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// fullDisk is what a pass reports when its state could not be written.
func fullDisk(dir string) error {
	return stateWriteError(dir, fmt.Errorf("write portal allocations: %w", &fs.PathError{Op: "write", Path: dir + "/portals.json", Err: syscall.ENOSPC}))
}

// nextRetries makes the retries the agent schedules one after the other and
// checks each delay, and that every pass scheduled exactly one.
func nextRetries(t *testing.T, s *fakeSyncer, scheduled retries, want ...time.Duration) {
	t.Helper()
	for pass, w := range want {
		var r retry
		select {
		case r = <-scheduled:
		case <-time.After(10 * time.Second):
			t.Fatalf("no retry scheduled after pass %d", pass+1)
		}
		if r.after != w {
			t.Fatalf("retry after pass %d in %s, want %s", pass+1, r.after, w)
		}
		if got := s.count(); got != pass+1 {
			t.Fatalf("%d passes before retry %d, want %d (one retry per pass)", got, pass+1, pass+1)
		}
		r.f()
	}
}

func TestAgent_failed_state_write_retries_after_1s_doubling_up_to_the_resync_period(t *testing.T) {
	s := &fakeSyncer{report: Report{Errors: ErrorList{errors.New("pod web: refused"), fullDisk(t.TempDir())}}}
	scheduled := make(retries, 1)
	// The resync (20 s) does not come within the test; only the retries
	// give further passes.
	startAgent(t, Config{ManifestDir: t.TempDir(), Quiet: time.Millisecond, Resync: 20 * time.Second}, s, nil, func(a *Agent) { a.afterFunc = scheduled.afterFunc })
	nextRetries(t, s, scheduled, 1*time.Second, 2*time.Second, 4*time.Second, 8*time.Second, 16*time.Second, 20*time.Second, 20*time.Second)
}

func TestAgent_podman_down_and_state_unwritten_schedule_one_retry_the_earlier(t *testing.T) {
	s := &fakeSyncer{report: Report{PodmanDown: true, Errors: ErrorList{errors.New("cannot reach podman"), fullDisk(t.TempDir())}}}
	scheduled := make(retries, 1)
	// The state's retries stop at the resync period (5 s), podman's at 30 s.
	startAgent(t, Config{ManifestDir: t.TempDir(), Quiet: time.Millisecond, Resync: 5 * time.Second}, s, nil, func(a *Agent) { a.afterFunc = scheduled.afterFunc })
	nextRetries(t, s, scheduled, 1*time.Second, 2*time.Second, 4*time.Second, 5*time.Second, 5*time.Second)
}

func TestAgent_clean_pass_after_a_failed_state_write_schedules_no_retry(t *testing.T) {
	s := &fakeSyncer{report: Report{Errors: ErrorList{fullDisk(t.TempDir())}}}
	scheduled := make(retries, 1)
	r := startAgent(t, Config{ManifestDir: t.TempDir(), Quiet: time.Millisecond}, s, nil, func(a *Agent) { a.afterFunc = scheduled.afterFunc })
	setReport := func(rep Report) {
		s.mu.Lock()
		s.report = rep
		s.mu.Unlock()
	}
	next := func() retry {
		t.Helper()
		select {
		case got := <-scheduled:
			return got
		case <-time.After(10 * time.Second):
			t.Fatal("no retry scheduled")
			return retry{}
		}
	}
	if got := next(); got.after != time.Second {
		t.Fatalf("first retry in %s, want 1s", got.after)
	}
	setReport(Report{})
	r.agent.Kick() // a pass that writes the state
	waitPasses(t, s, 2)
	select {
	case got := <-scheduled:
		t.Fatalf("a clean pass scheduled a retry in %s", got.after)
	case <-time.After(100 * time.Millisecond):
	}
	setReport(Report{Errors: ErrorList{fullDisk(t.TempDir())}})
	r.agent.Kick()
	// The backoff starts again from 1 s.
	if got := next(); got.after != time.Second {
		t.Fatalf("first retry after a clean pass in %s, want 1s", got.after)
	}
}

// waitPasses waits until s has run n passes.
func waitPasses(t *testing.T, s *fakeSyncer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d passes, want %d", s.count(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSpaceWatch_sees_room_only_above_what_was_free_when_the_write_failed(t *testing.T) {
	free := map[string]uint64{}
	w := spaceWatch{avail: func(dir string) (uint64, error) {
		b, ok := free[dir]
		if !ok {
			return 0, errors.New("no such file system")
		}
		return b, nil
	}}
	steps := []struct {
		do   func()
		want bool
	}{
		{func() {}, false}, // not watching
		{func() { free["/state"] = 4096; w.watch(&StateWriteError{Dir: "/state", Avail: 4096}) }, false},
		{func() { free["/state"] = 0 }, false},      // someone took the rest
		{func() { free["/state"] = 4096 }, false},   // back to where it failed
		{func() { free["/state"] = 1 << 20 }, true}, // space came back
		{func() {}, false},                          // once: the pass it asks for watches again if it must
		{func() { w.watch(&StateWriteError{Dir: "/state", Avail: 1 << 20}); w.stop() }, false}, // written
		{func() { w.watch(&StateWriteError{Dir: "/gone"}) }, false},                            // statfs fails
	}
	for i, s := range steps {
		s.do()
		if got := w.roomAgain(); got != s.want {
			t.Fatalf("step %d: roomAgain %v, want %v", i, got, s.want)
		}
	}
}

func TestStateWriteError_keeps_the_message_and_the_cause(t *testing.T) {
	dir := t.TempDir()
	err := fullDisk(dir)
	var e *StateWriteError
	if !errors.As(err, &e) || e.Dir != dir || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%#v: not a StateWriteError for %s wrapping ENOSPC", err, dir)
	}
	if want := "write portal allocations: write " + dir + "/portals.json: no space left on device"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if e.Avail == 0 {
		t.Fatalf("the free space of %s when the write failed is not recorded", dir)
	}
	if stateWriteError(dir, nil) != nil {
		t.Fatal("nil wrapped is not nil")
	}
	if got := stateWriteFailed(ErrorList{errors.New("x"), fmt.Errorf("pass: %w", err)}); got != e {
		t.Fatalf("stateWriteFailed found %v, want %v", got, e)
	}
	eio := stateWriteError(dir, &fs.PathError{Op: "write", Path: dir + "/services.json", Err: syscall.EIO})
	if got := stateWriteFailed(ErrorList{eio, err}); got != e {
		t.Fatalf("stateWriteFailed found %v, want the one for lack of space, %v", got, e)
	}
	if got := stateWriteFailed(ErrorList{eio}); got != eio {
		t.Fatalf("stateWriteFailed found %v, want %v", got, eio)
	}
	if got := stateWriteFailed(ErrorList{errors.New("x")}); got != nil {
		t.Fatalf("stateWriteFailed found %v in a list without one", got)
	}
}

func TestStateWriteError_names_the_file_not_the_temp_file_renameio_tried(t *testing.T) {
	enospc := func(op, p string) error { return &fs.PathError{Op: op, Path: p, Err: syscall.ENOSPC} }
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{name: "write of a temp file",
			err:  fmt.Errorf("save last good a.cue: %w", enospc("write", "/s/lastgood/.e7fa.json8293282258575538028")),
			want: "save last good a.cue: write /s/lastgood/e7fa.json: no space left on device"},
		{name: "rename of a temp file",
			err:  fmt.Errorf("record applied services: %w", &os.LinkError{Op: "rename", Old: "/s/.services.json42", New: "/s/services.json", Err: syscall.EIO}),
			want: "record applied services: rename /s/services.json /s/services.json: input/output error"},
		{name: "a file that is no temp file",
			err:  fmt.Errorf("write portal allocations: %w", enospc("open", "/s/portals.json")),
			want: "write portal allocations: open /s/portals.json: no space left on device"},
		{name: "a hidden file without the random number",
			err:  enospc("write", "/s/.hidden"),
			want: "write /s/.hidden: no space left on device"},
		{name: "every error of a join, as LastGood.Forget returns",
			err:  errors.Join(enospc("write", "/s/lastgood/.a.json1"), enospc("write", "/s/lastgood/.b.json2")),
			want: "write /s/lastgood/a.json: no space left on device\nwrite /s/lastgood/b.json: no space left on device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := stateWriteError("/s", c.err)
			if got := err.Error(); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			if !errors.Is(err, c.err) {
				t.Fatalf("%v does not wrap %v", err, c.err)
			}
		})
	}
}

func TestLockState_removes_the_temp_files_a_killed_writer_left(t *testing.T) {
	dir := t.TempDir()
	files := map[string]bool{ // name → kept
		"portals.json":                           true,
		".portals.json8293282258575538028":       false, // SIGKILLed while writing
		".services.json42":                       false,
		"lastgood/e7fa.json":                     true,
		"lastgood/.e7fa.json3957120596799216147": false,
		".hidden":                                true, // not a temp file of ours
		".notes.json.bak1":                       true,
		"git/.x.json1":                           true, // the git source's own
	}
	for name := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	release, err := lockState(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for name, kept := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if got := err == nil; got != kept {
			t.Errorf("%s: kept %v, want %v (%v)", name, got, kept, err)
		}
	}
}
