package portal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/renameio/v2"
)

// StateFile is the name of the allocation file under the state dir.
const StateFile = "portals.json"

// stateVersion is written into the file so that a later format can tell
// old files apart.
const stateVersion = 1

type stateJSON struct {
	Version int                   `json:"version"`
	CIDR    string                `json:"cidr"`
	Portals map[string]netip.Addr `json:"portals"`
}

// Allocator keeps portal allocations in a JSON file, so that a service's
// portal survives agent restarts. It is safe for concurrent use.
type Allocator struct {
	path     string
	cidr     netip.Prefix
	reserved []netip.Addr

	mu   sync.Mutex
	have map[string]netip.Addr
}

// Open reads the allocations kept in path (usually
// <state-dir>/portals.json); a missing file means none yet. Allocations
// outside cidr (after a change of --portal-cidr) are dropped by the next
// Allocate, which gives those services new addresses; so are allocations
// of a reserved address (a service that had the address before it was
// reserved for DNS gets a new one).
func Open(path string, cidr netip.Prefix, reserved ...netip.Addr) (*Allocator, error) {
	a := &Allocator{path: path, cidr: cidr.Masked(), reserved: reserved, have: map[string]netip.Addr{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read portal allocations: %w", err)
	}
	var st stateJSON
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read portal allocations %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("read portal allocations %s: unknown version %d", path, st.Version)
	}
	for name, addr := range st.Portals {
		if addr.IsValid() {
			a.have[name] = addr
		}
	}
	return a, nil
}

// Allocate plans the portals of the desired services (see Plan), persists
// the result and returns it. Services not in want lose their address. The
// returned error is only about the state file; per-service problems are in
// Allocation.Errors. When the file cannot be written, nothing changes in
// memory either, so the next call tries the same again.
func (a *Allocator) Allocate(want map[string]netip.Addr) (Allocation, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := Plan(a.cidr, a.have, want, a.reserved...)
	if maps.Equal(out.Addrs, a.have) {
		return out, nil
	}
	if err := a.save(out.Addrs); err != nil {
		return Allocation{}, err
	}
	a.have = maps.Clone(out.Addrs)
	return out, nil
}

// Addrs returns the current allocations.
func (a *Allocator) Addrs() map[string]netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.have)
}

func (a *Allocator) save(addrs map[string]netip.Addr) error {
	b, err := json.MarshalIndent(stateJSON{Version: stateVersion, CIDR: a.cidr.String(), Portals: addrs}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode portal allocations: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(a.path), 0o755); err != nil {
		return fmt.Errorf("write portal allocations: %w", err)
	}
	// renameio writes a temp file in the same folder, fsyncs it and renames
	// it over the old one: a crash leaves the old or the new file.
	if err := renameio.WriteFile(a.path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write portal allocations %s: %w", a.path, err)
	}
	return nil
}
