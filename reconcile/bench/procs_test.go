package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procTrace follows the programs the podman service runs (netavark and
// the iptables it calls, conmon, runc) with strace, which stops only at
// execve (seccomp-bpf) and reports each process's end, so that a trace shows which of
// them podman runs one at a time. podman's own locks are invisible to
// the API trace: a call that waits for one just takes longer.
type procTrace struct {
	out  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startProcTrace attaches to pid, or returns nil when PROCS is not set
// or strace is missing.
func startProcTrace(b *testing.B, pid int) *procTrace {
	b.Helper()
	if os.Getenv("PROCS") == "" {
		return nil
	}
	if _, err := exec.LookPath("strace"); err != nil {
		b.Log("PROCS set but no strace: programs not traced")
		return nil
	}
	t := &procTrace{out: filepath.Join(b.TempDir(), "strace.out"), done: make(chan struct{})}
	t.cmd = exec.Command("strace", "-f", "-q", "-ttt", "--seccomp-bpf", "-e", "trace=execve",
		"-o", t.out, "-p", strconv.Itoa(pid))
	if err := t.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { t.cmd.Wait(); close(t.done) }()
	// strace prints nothing when it has attached; the service's next
	// execve shows up either way, and one before attaching is not ours.
	time.Sleep(200 * time.Millisecond)
	return t
}

// stop ends the trace and returns its summary.
func (t *procTrace) stop(b *testing.B) string {
	b.Helper()
	if t == nil {
		return ""
	}
	t.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-t.done:
	case <-time.After(30 * time.Second):
		t.cmd.Process.Kill()
		<-t.done
	}
	f, err := os.Open(t.out)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	return procSummary(bufio.NewScanner(f))
}

var (
	straceLine = regexp.MustCompile(`^(\d+)\s+(\d+\.\d+) (.*)$`)
	execLine   = regexp.MustCompile(`^execve\("([^"]+)", \[([^\]]*)`)
)

// procSummary reads strace -f -q -ttt lines and says, for each program (runc
// by subcommand), how many ran, their total and median time, the time at
// least one ran, and the most that ran at once.
func procSummary(sc *bufio.Scanner) string {
	type proc struct {
		prog       string
		start, end float64
	}
	running := map[string]*proc{}
	var done []proc
	for sc.Scan() {
		m := straceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, rest := m[1], m[3]
		at, _ := strconv.ParseFloat(m[2], 64)
		if e := execLine.FindStringSubmatch(rest); e != nil && !strings.Contains(rest, "= -1") {
			prog := filepath.Base(e[1])
			if prog == "exe" { // runc re-executing itself as runc init
				prog = "runc init"
			}
			if prog == "runc" {
				for _, sub := range []string{"create", "start", "kill", "delete", "state"} {
					if strings.Contains(e[2], `"`+sub+`"`) {
						prog += " " + sub
					}
				}
			}
			if p, ok := running[pid]; ok && p.prog == "runc init" {
				// runc init executing the container's command: runc's part ends.
				p.end = at
				done = append(done, *p)
				delete(running, pid)
				continue
			}
			if _, ok := running[pid]; !ok || prog != "" {
				running[pid] = &proc{prog: prog, start: at}
			}
			continue
		}
		// A process's end: strace's own line for its main thread (Go
		// programs call exit_group from any thread).
		if strings.HasPrefix(rest, "+++ exited") || strings.HasPrefix(rest, "+++ killed") {
			if p, ok := running[pid]; ok {
				p.end = at
				done = append(done, *p)
				delete(running, pid)
			}
		}
	}
	byProg := map[string][]proc{}
	var progs []string
	for _, p := range done {
		if _, ok := byProg[p.prog]; !ok {
			progs = append(progs, p.prog)
		}
		byProg[p.prog] = append(byProg[p.prog], p)
	}
	slices.Sort(progs)
	var s strings.Builder
	fmt.Fprintf(&s, "programs the service ran (strace):\n")
	for _, prog := range progs {
		ps := byProg[prog]
		type edge struct {
			at float64
			d  int
		}
		var edges []edge
		var durs []float64
		total := 0.0
		for _, p := range ps {
			edges = append(edges, edge{p.start, 1}, edge{p.end, -1})
			durs = append(durs, p.end-p.start)
			total += p.end - p.start
		}
		slices.SortFunc(edges, func(a, b edge) int {
			if a.at != b.at {
				if a.at < b.at {
					return -1
				}
				return 1
			}
			return a.d - b.d // an end before a start at the same instant
		})
		inFlight, peak, union, prev := 0, 0, 0.0, 0.0
		for _, e := range edges {
			if inFlight > 0 {
				union += e.at - prev
			}
			inFlight += e.d
			peak = max(peak, inFlight)
			prev = e.at
		}
		slices.Sort(durs)
		fmt.Fprintf(&s, "  %-14s %4d runs, total %7.2fs, median %6.3fs, at least one running %7.2fs, at most %d at once\n",
			prog, len(ps), total, durs[len(durs)/2], union, peak)
	}
	return s.String()
}
