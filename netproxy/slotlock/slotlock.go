// Package slotlock hands out numbered slots to the processes of one host
// with lock files, for test harnesses that give each test a share of the
// node (a subnet, a link name) that no parallel test binary uses too. A
// slot is held while its file stays open and is freed when the holder
// closes it or dies.
package slotlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Take tries to take slot n of the folder dir (made if needed). It returns
// the open lock file, or nil when another process holds the slot.
func Take(dir string, n int) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("slot-%d.lock", n)), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil // another process holds it
		}
		return nil, fmt.Errorf("lock slot %d in %s: %w", n, dir, err)
	}
	return f, nil
}
