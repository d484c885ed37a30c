package reconcile

import (
	"sync"
	"time"
)

// The crash-loop backoff of SPEC §9, as the kubelet's: the first restart at
// once, then 10 s, doubling up to 5 min; a container that ran 10 min
// before it exited starts again at once.
const (
	RestartDelayBase  = 10 * time.Second
	RestartDelayMax   = 5 * time.Minute
	RestartDelayReset = 10 * time.Minute
)

// ReasonCrashLoop is what `cuelet status` says of a replica with a
// container waiting out its backoff, in Kubernetes' word.
const ReasonCrashLoop = "CrashLoopBackOff"

// CrashLoop is the restart state of one container. It is kept by
// container ID: a recreated replica has new containers and starts from
// nothing, as a new Kubernetes pod does.
type CrashLoop struct {
	// Restarts counts the restarts cuelet made; podman's RestartCount does
	// not count them (it counts only its own restart policy's).
	Restarts int `json:"restarts"`
	// Delay is the wait after the next exit; 0: restart at once.
	Delay time.Duration `json:"delay"`
	// Exited is set from the exit cuelet saw until the container runs
	// again, so that one exit is counted once.
	Exited   bool      `json:"exited,omitempty"`
	LastExit time.Time `json:"lastExit,omitzero"`
	NextTry  time.Time `json:"nextTry,omitzero"`
}

// Restarts holds the crash-loop state of the containers cuelet restarts.
// It does no I/O and reads no clock: the reconciler passes the time in,
// the agent saves and restores it (Snapshot, Restore) so that an agent
// restart neither forgets a count nor cuts a backoff short.
type Restarts struct {
	base, max, reset time.Duration

	mu      sync.Mutex
	byID    map[string]*CrashLoop
	version uint64 // counts changes, so that a saver knows what it saved
}

// NewRestarts returns an empty state with SPEC §9's delays.
func NewRestarts() *Restarts {
	return &Restarts{base: RestartDelayBase, max: RestartDelayMax, reset: RestartDelayReset, byID: map[string]*CrashLoop{}}
}

// exited records that container c is down and its restart policy wants it
// up, and says whether it may be started again now, or else when.
func (r *Restarts) exited(c ObservedContainer, now time.Time) (due bool, next time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.get(c.ID)
	exit := c.FinishedAt
	if exit.IsZero() {
		exit = now // podman did not say: the exit is when cuelet saw it
	}
	if !st.Exited || (!c.FinishedAt.IsZero() && !exit.Equal(st.LastExit)) {
		// A start time podman does not know is 0 (1970), not zero.
		if c.StartedAt.Unix() > 0 && exit.Sub(c.StartedAt) >= r.reset {
			st.Delay = 0
		}
		st.Exited, st.LastExit, st.NextTry = true, exit, exit.Add(st.Delay)
		r.version++
	}
	return !now.Before(st.NextTry), st.NextTry
}

// running records that container c runs (or is left to run).
func (r *Restarts) running(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.byID[id]; ok && st.Exited {
		st.Exited = false
		r.version++
	}
}

// restarted records a restart of container id by cuelet: one more in the
// count, and a longer wait after its next exit.
func (r *Restarts) restarted(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.get(id)
	st.Restarts++
	st.Exited = false
	switch {
	case st.Delay == 0:
		st.Delay = r.base
	default:
		st.Delay = min(2*st.Delay, r.max)
	}
	r.version++
}

// keep forgets every container not in ids (gone, or recreated).
func (r *Restarts) keep(ids map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.byID {
		if !ids[id] {
			delete(r.byID, id)
			r.version++
		}
	}
}

func (r *Restarts) get(id string) *CrashLoop {
	st, ok := r.byID[id]
	if !ok {
		st = &CrashLoop{}
		r.byID[id] = st
	}
	return st
}

// Get is the state of container id; false when cuelet never saw it exit.
func (r *Restarts) Get(id string) (CrashLoop, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.byID[id]
	if !ok {
		return CrashLoop{}, false
	}
	return *st, true
}

// Snapshot is the whole state, for saving, and its version: a saver that
// saved that version has nothing new to save until it changes.
func (r *Restarts) Snapshot() (map[string]CrashLoop, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]CrashLoop, len(r.byID))
	for id, st := range r.byID {
		out[id] = *st
	}
	return out, r.version
}

// Restore replaces the state with a saved one.
func (r *Restarts) Restore(saved map[string]CrashLoop) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID = make(map[string]*CrashLoop, len(saved))
	for id, st := range saved {
		r.byID[id] = &st
	}
	r.version++
}
