package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StateWriteError is a write to the state dir that failed: the file system
// full or read-only, an I/O error. Every state file is written atomically,
// so the file on disk is still the last good one; the pass reports the
// error, and the agent runs the pass again soon (1 s, doubling up to its
// resync period) and, when space was short, as soon as there is more of it
// (spaceWatch): not only at its next resync.
type StateWriteError struct {
	// Dir is the state dir.
	Dir string
	// Avail is the space free to cuelet on Dir's file system right after
	// a write failed for lack of space; the agent's spaceWatch waits for
	// more than that.
	Avail uint64
	Err   error
	// msg is Err's message with the temp files' names put back as the
	// files they were to become (stableMessage).
	msg string
}

func (e *StateWriteError) Error() string { return e.msg }
func (e *StateWriteError) Unwrap() error { return e.Err }

// noSpace reports whether err is a write that failed for lack of space,
// which another process freeing space can end at any time. (A quota is
// not seen by statfs: EDQUOT has only the backoff.)
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC)
}

// stateWriteError wraps err, a failed write under the state dir dir, as a
// StateWriteError; nil stays nil.
func stateWriteError(dir string, err error) error {
	if err == nil {
		return nil
	}
	e := &StateWriteError{Dir: dir, Err: err, msg: stableMessage(err)}
	if noSpace(err) {
		e.Avail, _ = availBytes(dir) // 0 when unknown: any room at all is more
	}
	return e
}

// stableMessage is err's message with every temp file of an atomic write
// (renameio writes ".portals.json8293282258575538028" beside
// "portals.json", then renames it) named as the file it was to become. The
// temp name is new on every try, and the same failure must read the same on
// every pass, so that it is logged once and counted as one event
// (logChanges, history), not once a pass.
func stableMessage(err error) string {
	msg := err.Error()
	for temp, final := range tempFiles(err, map[string]string{}) {
		msg = strings.ReplaceAll(msg, temp, final)
	}
	return msg
}

// tempFiles adds the temp files of atomic writes named in err's chain to
// out, each with the file it was to become.
func tempFiles(err error, out map[string]string) map[string]string {
	add := func(p string) {
		base := filepath.Base(p)
		final := strings.TrimRight(strings.TrimPrefix(base, "."), "0123456789")
		if strings.HasPrefix(base, ".") && final != "" && len(final) < len(base)-1 {
			out[p] = filepath.Join(filepath.Dir(p), final)
		}
	}
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		add(pe.Path)
	case errors.As(err, &le):
		add(le.Old)
	}
	if many, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range many.Unwrap() {
			tempFiles(e, out)
		}
	}
	return out
}

// stateWriteFailed returns a StateWriteError of a pass's errors, one for
// lack of space if there is one (the space watch wants it), or nil.
func stateWriteFailed(errs ErrorList) *StateWriteError {
	var first *StateWriteError
	for _, err := range errs {
		var e *StateWriteError
		if !errors.As(err, &e) {
			continue
		}
		if noSpace(e) {
			return e
		}
		if first == nil {
			first = e
		}
	}
	return first
}

// availBytes is the space free to an unprivileged writer on dir's file
// system.
func availBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// spaceEvery is how often spaceWatch looks at a full state dir: one
// statfs, next to nothing, and only while a write fails for lack of space.
const spaceEvery = time.Second

// spaceWatch notices when a state dir whose writes failed for lack of space
// has more room again. Nothing tells a process that another one freed
// space on a file system, and the retry's backoff may have grown to the
// resync period while the disk was full: a statfs every spaceEvery lets
// the agent catch up within about a second of the space coming back.
type spaceWatch struct {
	// avail is availBytes; the tests give their own.
	avail func(dir string) (uint64, error)

	mu       sync.Mutex
	dir      string // "" when not watching
	baseline uint64
}

// watch starts (or moves) the watch on e's state dir, from the space free
// when e's write failed.
func (w *spaceWatch) watch(e *StateWriteError) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dir, w.baseline = e.Dir, e.Avail
}

// stop ends the watch: the state was written.
func (w *spaceWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dir = ""
}

// roomAgain reports whether the watched state dir has more space free than
// when its write failed; then the watch ends (the pass it asks for starts
// a new one if the write fails again).
func (w *spaceWatch) roomAgain() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dir == "" {
		return false
	}
	avail, err := w.avail(w.dir)
	if err != nil || avail <= w.baseline {
		return false
	}
	w.dir = ""
	return true
}

// staleTemp matches the temp file of an atomic write of a state file
// (".portals.json8293282258575538028"): every state file is JSON.
var staleTemp = regexp.MustCompile(`^\..+\.json[0-9]+$`)

// removeStaleTemps removes the temp files that writers of the state dir
// killed in the middle of a write (SIGKILL, a crash) left in it and in its
// lastgood folder: nothing else ever removes them, and on a small state
// dir they take the space the next writes need. Only the holder of the
// state lock may call it: another cuelet's write under way has a temp file
// too.
func removeStaleTemps(stateDir string) error {
	var errs []error
	for _, dir := range []string{stateDir, filepath.Join(stateDir, "lastgood")} {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("state dir: %w", err))
			continue
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !staleTemp.MatchString(e.Name()) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove a temp file of the state dir: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
