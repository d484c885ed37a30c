package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/google/renameio/v2"
)

// readyFile records, under the state dir, the containers (by ID) whose
// readiness probes passed when the agent last looked. A restarted agent
// starts their probes ready (probe.Config.InitialReady): the kernel data
// path kept them in their services while no agent ran, and taking them
// out until the first probe would refuse every connection to a service
// whose replicas all have probes, for a moment or, with
// initialDelaySeconds, for that long. A recreated container has a new ID
// and starts unready, as always.
const readyFile = "ready.json"

// readyRecord reads and writes readyFile.
type readyRecord struct {
	path string
	last []byte
}

// load returns the recorded container IDs; a missing or unreadable file
// is an empty record (the containers then wait for their first probe).
func (r *readyRecord) load() (map[string]bool, error) {
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return map[string]bool{}, fmt.Errorf("read ready containers: %w", err)
	}
	var ids []string
	if err := json.Unmarshal(b, &ids); err != nil {
		return map[string]bool{}, fmt.Errorf("read ready containers %s: %w", r.path, err)
	}
	r.last = b
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// save records ids, when they differ from what the file holds.
func (r *readyRecord) save(ids []string) error {
	ids = slices.Sorted(slices.Values(ids))
	if ids == nil {
		ids = []string{}
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("record ready containers: %w", err)
	}
	if string(b) == string(r.last) {
		return nil
	}
	if err := renameio.WriteFile(r.path, b, 0o600); err != nil {
		return fmt.Errorf("record ready containers: %w", err)
	}
	r.last = b
	return nil
}
