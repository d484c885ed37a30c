package gitsource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/manifests/bench"
)

// BenchmarkFetchAndPublishOneChangedUnitOf1000 times what the agent's git
// source does for a commit that changes one unit of the validate
// benchmark's 1,000: ask the remote, fetch (shallow), write the revision's
// folder and swap the symlink. Making the commit is not timed; cpu-ms/op
// is the CPU time of the timed part.
func BenchmarkFetchAndPublishOneChangedUnitOf1000(b *testing.B) {
	up := newUpstream(b)
	if err := bench.Write(up.Work, 1000); err != nil {
		b.Fatal(err)
	}
	up.Git(b, "add", "-A")
	up.Git(b, "commit", "-q", "-m", "1000 units")
	up.Git(b, "push", "-q", "origin", "HEAD:main")
	s, err := New(Config{URL: "file://" + up.Bare, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := s.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	unit := filepath.Join(up.Work, "unit-0500.cue")
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f, err := os.OpenFile(unit, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(f, "// change %d\n", i)
		f.Close()
		up.Git(b, "commit", "-q", "-am", fmt.Sprintf("change %d", i))
		up.Git(b, "push", "-q", "origin", "HEAD:main")
		b.StartTimer()
		before := cpuTime(b)
		if _, changed, err := s.Sync(context.Background()); err != nil || !changed {
			b.Fatalf("Sync: changed=%v err=%v", changed, err)
		}
		cpu += cpuTime(b) - before
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU the benchmark and its waited-for children (git
// upload-pack for file:// URLs) have used: on a loaded machine it says
// more than the wall clock, which also counts waiting for a core.
func cpuTime(b *testing.B) time.Duration {
	var self, children syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
		b.Fatal(err)
	}
	var d time.Duration
	for _, tv := range []syscall.Timeval{self.Utime, self.Stime, children.Utime, children.Stime} {
		d += time.Duration(tv.Nano())
	}
	return d
}
