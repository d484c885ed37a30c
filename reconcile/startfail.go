package reconcile

import (
	"errors"
	"sync"
)

// failedStarts remembers the replicas whose last start failed although
// podman answered, by replica name, with the infra container ID the
// replica had then: a replica made anew since (another infra ID) starts
// with a clean slate.
//
// Why: a podman killed between creating a container and starting it can
// leave the container "initialized" with runtime state that no later
// start gets past ("runc start ... failed"). Starting it again every pass
// would keep the pod down for good; the kubelet replaces a container it
// cannot start, and so does cuelet, the pass after the failed start.
type failedStarts struct {
	mu    sync.Mutex
	infra map[string]string // replica name → infra ID at the failure
}

// failed records a failed start of replica o, unless podman did not
// answer: then the container is not to blame.
func (f *failedStarts) failed(o ObservedPod, err error) {
	if errors.Is(err, ErrPodmanUnavailable) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.infra == nil {
		f.infra = map[string]string{}
	}
	f.infra[o.Name] = o.InfraID
}

// forget drops what is known about replica name: it started, or was made
// anew or removed.
func (f *failedStarts) forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.infra, name)
}

// current returns the replicas of have whose last start failed on the
// infra container they still have, and forgets the others.
func (f *failedStarts) current(have []ObservedPod) map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bool{}
	seen := map[string]bool{}
	for _, o := range have {
		if id, ok := f.infra[o.Name]; ok && id == o.InfraID {
			out[o.Name] = true
			seen[o.Name] = true
		}
	}
	for name := range f.infra {
		if !seen[name] {
			delete(f.infra, name)
		}
	}
	return out
}
