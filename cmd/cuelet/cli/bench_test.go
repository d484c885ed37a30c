package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/cmd/cuelet/cli"
	"github.com/cuelet/cuelet/manifests/bench"
)

// BenchmarkExportImport1000VsValidate runs `cuelet validate`, `cuelet
// export` and `cuelet import` (of that export) in-process on
// manifests/bench's 1,000 units, one after the other in each iteration,
// so that validate, the peer, runs under the same load as the two it is
// compared with (make bench-export prints the medians). Goal: export and
// import under 1 s each (issue 11). It reports, per command, wall and CPU
// milliseconds, and the ratios of the wall times to validate's.
func BenchmarkExportImport1000VsValidate(b *testing.B) {
	dir := b.TempDir()
	units := filepath.Join(dir, "units")
	if err := bench.Write(units, 1000); err != nil {
		b.Fatal(err)
	}
	exported := filepath.Join(dir, "units.yaml")
	var out bytes.Buffer
	run(b, &out, "export", units)
	if err := os.WriteFile(exported, out.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	var wall, cpu [3]time.Duration
	commands := [3][]string{{"validate", units}, {"export", units}, {"import", exported}}
	for b.Loop() {
		for i, args := range commands {
			out.Reset()
			w0, c0 := time.Now(), cpuTime(b)
			run(b, &out, args...)
			wall[i] += time.Since(w0)
			cpu[i] += cpuTime(b) - c0
		}
	}
	n := float64(b.N)
	for i, name := range []string{"validate", "export", "import"} {
		b.ReportMetric(float64(wall[i].Milliseconds())/n, name+"-ms/op")
		b.ReportMetric(float64(cpu[i].Milliseconds())/n, name+"-cpu-ms/op")
	}
	b.ReportMetric(float64(wall[1])/float64(wall[0]), "export/validate")
	b.ReportMetric(float64(wall[2])/float64(wall[0]), "import/validate")
	b.ReportMetric(0, "ns/op") // the sum of the three says nothing
}

// run runs one command line in-process, failing b on a non-zero exit.
func run(b *testing.B, stdout *bytes.Buffer, args ...string) {
	b.Helper()
	var stderr bytes.Buffer
	if code := cli.Run(context.Background(), &cli.Env{Stdout: stdout, Stderr: &stderr, Getenv: os.Getenv}, args); code != 0 || stderr.Len() > 0 {
		b.Fatalf("cuelet %s: exit %d\n%s", args[0], code, stderr.String())
	}
	if stdout.Len() == 0 && args[0] != "validate" {
		b.Fatalf("cuelet %s printed nothing", args[0])
	}
}

// cpuTime is the CPU time the process has used, user and system: under a
// load that stretches wall times, it says what the command itself cost.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
