package slotlock

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// A slot that Take holds cannot be taken by another process until it is
// closed; a slot another process holds is refused with nil, nil. flock(1)
// (util-linux) plays the other process.
func TestTakeHoldsAndRefusesAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	f, err := Take(dir, 3)
	if err != nil || f == nil {
		t.Fatalf("Take of a free slot = %v, %v", f, err)
	}
	lock3 := filepath.Join(dir, "slot-3.lock")
	if exec.Command("flock", "-n", lock3, "true").Run() == nil {
		t.Fatal("another process took slot 3 while Take held it")
	}
	f.Close()
	if err := exec.Command("flock", "-n", lock3, "true").Run(); err != nil {
		t.Fatalf("slot 3 still held after Close: %v", err)
	}

	lock4 := filepath.Join(dir, "slot-4.lock")
	hold := exec.Command("flock", lock4, "sleep", "30")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { hold.Process.Kill(); hold.Wait() }()
	testenv.Eventually(t, 5*time.Second, testenv.True("flock(1) holds slot 4", func() bool {
		return exec.Command("flock", "-n", lock4, "true").Run() != nil
	}))
	if g, err := Take(dir, 4); err != nil || g != nil {
		t.Fatalf("Take of a slot another process holds = %v, %v; want nil, nil", g, err)
	}
}
