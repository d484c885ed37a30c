package portal

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestAllocatorKeepsAllocationsAcrossRestarts(t *testing.T) {
	cidr := netip.MustParsePrefix("10.96.0.0/16")
	path := filepath.Join(t.TempDir(), "state", StateFile)

	a, err := Open(path, cidr)
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.Allocate(addrs("web", "", "db", "10.96.0.11"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(first.Addrs), "db=10.96.0.11 web=10.96.1.0"; got != want {
		t.Fatalf("first Allocate = %s, want %s", got, want)
	}

	// A new agent process: same file, the desired set now lists the
	// services in another order and adds one.
	b, err := Open(path, cidr)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(b.Addrs()), "db=10.96.0.11 web=10.96.1.0"; got != want {
		t.Fatalf("after reopening Addrs = %s, want %s", got, want)
	}
	second, err := b.Allocate(addrs("api", "", "db", "", "web", ""))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(second.Addrs), "api=10.96.1.1 db=10.96.0.11 web=10.96.1.0"; got != want {
		t.Fatalf("second Allocate = %s, want %s", got, want)
	}

	// Removing web frees its address; the next new service gets it.
	if _, err := b.Allocate(addrs("api", "", "db", "")); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, cidr)
	if err != nil {
		t.Fatal(err)
	}
	third, err := c.Allocate(addrs("api", "", "db", "", "cache", ""))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(third.Addrs), "api=10.96.1.1 cache=10.96.1.0 db=10.96.0.11"; got != want {
		t.Fatalf("third Allocate = %s, want %s", got, want)
	}

	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state folder holds %d entries, want only %s (no temp files left)", len(entries), StateFile)
	}
}

func TestOpenRejectsACorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFile)
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, netip.MustParsePrefix("10.96.0.0/16")); err == nil {
		t.Fatal("Open of a corrupt file succeeded, want an error (allocations must not be silently lost)")
	}
}

func TestAllocateWithUnwritableStateChangesNothing(t *testing.T) {
	sub := filepath.Join(t.TempDir(), "sub")
	a, err := Open(filepath.Join(sub, StateFile), netip.MustParsePrefix("10.96.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	// A file where the state folder should be: writing fails, even as root.
	if err := os.WriteFile(sub, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate(addrs("web", "")); err == nil {
		t.Fatal("Allocate succeeded although the state file cannot be written")
	}
	if len(a.Addrs()) != 0 {
		t.Errorf("Addrs = %s after a failed save, want none", show(a.Addrs()))
	}
}
