package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/renameio/v2"

	"github.com/cuelet/cuelet/reconcile"
)

// restartsFile keeps, under the state dir, the crash-loop state of the
// containers cuelet restarts (reconcile.Restarts), by container ID. Podman
// cannot keep it: its RestartCount counts only its own restart policy's
// restarts, and a container's labels cannot change. Without the file an
// agent restart would reset every count and restart a crash-looping
// container at once.
const restartsFile = "restarts.json"

// loadRestarts reads the saved crash-loop state; a missing file is an empty
// state, an unreadable one too (with an error to report): counts are
// worth less than a running agent.
func loadRestarts(path string) (*reconcile.Restarts, error) {
	r := reconcile.NewRestarts()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read restart counts: %w", err)
	}
	var saved map[string]reconcile.CrashLoop
	if err := json.Unmarshal(b, &saved); err != nil {
		return r, fmt.Errorf("read restart counts %s: %w", path, err)
	}
	r.Restore(saved)
	return r, nil
}

// restartsSaver writes the crash-loop state when it changed.
type restartsSaver struct {
	path  string
	saved uint64 // the version last written; 0: none (a fresh state is empty)
}

func (s *restartsSaver) save(r *reconcile.Restarts) error {
	state, version := r.Snapshot()
	if version == s.saved {
		return nil
	}
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("record restart counts: %w", err)
	}
	if err := renameio.WriteFile(s.path, b, 0o600); err != nil {
		return fmt.Errorf("record restart counts: %w", err) // the next pass tries again
	}
	s.saved = version
	return nil
}

// containerRestarts is what status says of a replica's crash loops: the
// restarts cuelet made (and podman's, for a pod of an older cuelet), and,
// when a container waits out its backoff, CrashLoopBackOff with the
// earliest next try.
func containerRestarts(p reconcile.ObservedPod, r *reconcile.Restarts, now time.Time) (restarts int, reason string, next time.Time) {
	for _, c := range p.Containers {
		restarts += c.RestartCount
		st, ok := r.Get(c.ID)
		if !ok {
			continue
		}
		restarts += st.Restarts
		if st.Exited && st.NextTry.After(now) && (c.State == "exited" || c.State == "stopped") {
			reason = reconcile.ReasonCrashLoop
			if next.IsZero() || st.NextTry.Before(next) {
				next = st.NextTry
			}
		}
	}
	return restarts, reason, next
}
