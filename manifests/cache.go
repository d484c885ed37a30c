package manifests

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
)

// Cache keeps the units that earlier loads checked, so that a load checks
// again only the units whose files changed: checking is most of a load's
// cost (CUE's unification), and the agent loads every unit on every pass.
// Each unit is kept under a key made of its files' names and bytes and
// the Options, everything its check depends on; the cross-unit rules,
// which depend on the other units, are checked again over all of them on
// every load. The cache holds the units of the last load only. It also
// keeps the files the last load read, and reads again only those whose
// stat changed (see reads). The zero Cache is ready to use; a nil *Cache
// keeps nothing.
type Cache struct {
	mu      sync.Mutex
	units   map[string]cached // by unit ID
	checked int
	reads   reads
	checker keptChecker
}

// spare is the Checker the cache keeps for the next load's first worker.
func (c *Cache) spare() *keptChecker {
	if c == nil {
		return nil
	}
	return &c.checker
}

type cached struct {
	key  [sha256.Size]byte
	unit *Unit // as checked, before the cross-unit rules
}

// LoadDir is LoadDir with the units this cache holds from its last load.
func (c *Cache) LoadDir(ctx context.Context, dir string, opts Options) ([]*Unit, error) {
	if c != nil {
		// One load at a time: two would each check what the other is
		// about to store.
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	var f finder
	if c != nil {
		f.reads = &c.reads
	}
	if err := f.find(dir, "."); err != nil {
		if c != nil {
			c.reads.all = true // nothing of this walk is kept
		}
		return nil, err
	}
	if c != nil {
		c.reads.files = f.next
	}
	return f.load(ctx, opts, c)
}

// ReadAll makes the next load read every file again, whatever its stat
// says: the agent's periodic resync and SIGHUP, so that a change no stat
// shows (a clock set back, a file system that keeps no change time) is
// still picked up in time.
func (c *Cache) ReadAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads.all = true
}

// Reads is how many files the cache's loads have read in all, that is,
// not taken from the last load.
func (c *Cache) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads.count
}

// Checked is how many units the cache's loads have checked in all, that
// is, not taken from the cache.
func (c *Cache) Checked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checked
}

// fill puts a copy of each cached unit whose key still matches in units
// and returns the indexes of the groups left to check, with every group's
// key for keep.
func (c *Cache) fill(groups []group, units []*Unit, opts Options) (todo []int, keys [][sha256.Size]byte) {
	if c == nil {
		for i := range groups {
			todo = append(todo, i)
		}
		return todo, nil
	}
	keys = make([][sha256.Size]byte, len(groups))
	for i, g := range groups {
		keys[i] = unitKey(g, opts)
		if e, ok := c.units[g.id]; ok && e.key == keys[i] {
			// CheckCrossUnit changes the units it is given.
			units[i] = e.unit.Clone()
			continue
		}
		todo = append(todo, i)
	}
	return todo, keys
}

// keep replaces the cache's content with the units of this load, so that
// it holds the units present now and no others. It runs before the
// cross-unit rules change the units, and keeps a copy of each.
func (c *Cache) keep(groups []group, keys [][sha256.Size]byte, units []*Unit, checked int) {
	if c == nil {
		return
	}
	c.checked += checked
	next := make(map[string]cached, len(groups))
	for i, g := range groups {
		next[g.id] = cached{key: keys[i], unit: units[i].Clone()}
	}
	c.units = next
}

// unitKey sums what a unit's check depends on: its files' names, bytes
// and read errors, and the node's options. Lengths are written before
// each variable-length part, so no two inputs run together the same way.
func unitKey(g group, opts Options) [sha256.Size]byte {
	h := sha256.New()
	put := func(b []byte) {
		h.Write(binary.AppendUvarint(nil, uint64(len(b))))
		h.Write(b)
	}
	put([]byte(g.id))
	for _, s := range g.sources {
		put([]byte(s.display))
		if s.err != nil {
			put([]byte("error: " + s.err.Error()))
			continue
		}
		put(s.data)
	}
	put([]byte(opts.PortalCIDR.String()))
	for _, p := range opts.AllowedHostPaths {
		put([]byte(p))
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
