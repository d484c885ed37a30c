package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/renameio/v2"
)

// LastGood keeps the last valid content of every unit in the state dir, so
// an agent restarted while a unit is invalid still knows what that unit
// applied and keeps it (SPEC §3.2) instead of treating it as removed.
type LastGood struct {
	dir string

	mu sync.Mutex
	// saved is what this process wrote or found on disk per unit, so a
	// pass over unchanged units reads no file back.
	saved map[string]string
	// kept is the set of units the last Forget left, after which the
	// folder held no other unit's file: a Forget with the same set has
	// nothing to remove (Save writes only units of that set), so it
	// does not list the folder again.
	kept map[string]bool
}

// lastGoodUnit is one unit's saved content.
type lastGoodUnit struct {
	ID    string            `json:"id"`
	Files map[string][]byte `json:"files"` // file name as shown to the user -> content
}

// NewLastGood stores under <stateDir>/lastgood.
func NewLastGood(stateDir string) *LastGood {
	return &LastGood{dir: filepath.Join(stateDir, "lastgood"), saved: map[string]string{}}
}

func (l *LastGood) path(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(l.dir, hex.EncodeToString(sum[:12])+".json")
}

// Save records files as the unit's last good content. It writes only when
// the content changed, so a steady node does not wear its disk.
func (l *LastGood) Save(id string, files map[string][]byte) error {
	b, err := json.Marshal(lastGoodUnit{ID: id, Files: files})
	if err != nil {
		return fmt.Errorf("save last good %s: %w", id, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.kept[id] {
		l.kept = nil // the folder may now hold a unit the next Forget drops
	}
	if l.saved[id] == string(b) {
		return nil
	}
	p := l.path(id)
	if old, err := os.ReadFile(p); err == nil && string(old) == string(b) {
		l.saved[id] = string(b)
		return nil
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return fmt.Errorf("save last good %s: %w", id, err)
	}
	// The temporary file in l.dir: without WithTempDir renameio tries a
	// file in $TMPDIR and a rename across first (five more calls of the
	// file system on every save, an eighth of a pass's CPU after one
	// unit of 1,000 changed).
	if err := renameio.WriteFile(p, b, 0o600, renameio.WithTempDir(l.dir)); err != nil {
		return fmt.Errorf("save last good %s: %w", id, err)
	}
	l.saved[id] = string(b)
	return nil
}

// Get returns the unit's last good files, or ok=false when none is kept.
func (l *LastGood) Get(id string) (files map[string][]byte, ok bool, err error) {
	b, err := os.ReadFile(l.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read last good %s: %w", id, err)
	}
	var u lastGoodUnit
	if err := json.Unmarshal(b, &u); err != nil || u.ID != id {
		return nil, false, fmt.Errorf("read last good %s: damaged file %s", id, l.path(id))
	}
	return u.Files, true, nil
}

// Forget drops every unit not in keep: a unit whose files are gone is
// removed, not kept (its pods are pruned).
func (l *LastGood) Forget(keep map[string]bool) error {
	l.mu.Lock()
	for id := range l.saved {
		if !keep[id] {
			delete(l.saved, id)
		}
	}
	same := maps.Equal(keep, l.kept)
	l.kept = nil
	l.mu.Unlock()
	if same {
		l.remember(keep)
		return nil
	}
	entries, err := os.ReadDir(l.dir)
	if errors.Is(err, os.ErrNotExist) {
		l.remember(keep)
		return nil
	}
	if err != nil {
		return fmt.Errorf("list last good units: %w", err)
	}
	wanted := map[string]bool{}
	for id := range keep {
		wanted[filepath.Base(l.path(id))] = true
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || wanted[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(l.dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		l.remember(keep)
	}
	return errors.Join(errs...)
}

// remember records keep as the set the folder holds no more than.
func (l *LastGood) remember(keep map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kept = maps.Clone(keep)
}
