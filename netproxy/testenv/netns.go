package testenv

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NewNetNS creates a network namespace, with lo up, that lives as long as
// the test holds its handle; closing the handle at cleanup destroys it
// together with every link and rule inside, so a failed test leaves
// nothing behind. It needs root (RequireRoot).
func NewNetNS(t testing.TB) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := inNewThread(func() error {
		var err error
		ns, err = netns.New() // moves this (discarded) thread into it
		if err != nil {
			return err
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// InNS runs f inside ns, on an OS thread of its own that is thrown away
// afterwards, so the namespace switch never leaks to other goroutines.
// Sockets f creates stay in ns when used later from other threads.
func InNS(ns netns.NsHandle, f func() error) error {
	return inNewThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter namespace: %w", err)
		}
		return f()
	})
}

// MustInNS is InNS that fails the test on an error.
func MustInNS(t testing.TB, ns netns.NsHandle, f func() error) {
	t.Helper()
	if err := InNS(ns, f); err != nil {
		t.Fatal(err)
	}
}

// inNewThread runs f on an OS thread of its own that is thrown away
// afterwards: the goroutine exits while locked.
func inNewThread(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked on purpose
		done <- f()
	}()
	return <-done
}
