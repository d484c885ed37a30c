// Command evgap measures how the inotify events of common ways to change a
// manifest spread out in time: for each, the number of events, their span
// and the longest quiet gap between two of them. The agent's debounce
// window (agent.Config.Quiet) must be longer than the gaps within one save
// for that save to be one pass. Run as `go run ./agent/bench/evgap` (it
// uses a temporary folder, git, and vim when installed).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/google/renameio/v2"
)

// gaps runs act while watching dir and prints the number of events, their
// span and the longest gap between two of them.
func gaps(name, dir string, act func()) {
	w, err := fsnotify.NewWatcher()
	check(err)
	defer w.Close()
	check(w.Add(dir))
	var ts []time.Time
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-w.Events:
				ts = append(ts, time.Now())
			case <-done:
				return
			}
		}
	}()
	act()
	time.Sleep(500 * time.Millisecond)
	close(done)
	time.Sleep(10 * time.Millisecond)
	var maxGap time.Duration
	for i := 1; i < len(ts); i++ {
		maxGap = max(maxGap, ts[i].Sub(ts[i-1]))
	}
	span := time.Duration(0)
	if len(ts) > 1 {
		span = ts[len(ts)-1].Sub(ts[0])
	}
	fmt.Printf("%-40s events %5d span %10v max gap %10v\n", name, len(ts), span, maxGap)
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func run(dir string, args ...string) {
	c := exec.Command(args[0], args[1:]...)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		panic(fmt.Sprint(args, err, string(out)))
	}
}

func main() {
	root, err := os.MkdirTemp("", "evgap")
	check(err)
	defer os.RemoveAll(root)
	data := []byte(`pods: x: containers: app: image: "busybox"` + "\n")
	for i := 0; i < 3; i++ {
		gaps("os.WriteFile (in place)", root, func() { check(os.WriteFile(filepath.Join(root, "a.cue"), data, 0o644)) })
		gaps("renameio.WriteFile (temp+rename)", root, func() { check(renameio.WriteFile(filepath.Join(root, "b.cue"), data, 0o644)) })
		gaps("cp", root, func() { run(root, "cp", "/etc/hostname", "c.cue") })
	}
	if _, err := exec.LookPath("vim"); err == nil {
		for i := 0; i < 3; i++ {
			gaps("vim :wq", root, func() { run(root, "vim", "-E", "-s", "-c", "normal Goadd", "-c", "wq", "a.cue") })
		}
	}
	// A git repository of 1,000 units: checkouts that change one file or all.
	repo := filepath.Join(root, "repo")
	check(os.Mkdir(repo, 0o755))
	run(repo, "git", "init", "-q")
	for i := 0; i < 1000; i++ {
		check(os.WriteFile(filepath.Join(repo, fmt.Sprintf("u%04d.cue", i)), data, 0o644))
	}
	run(repo, "git", "add", ".")
	run(repo, "git", "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "one")
	for i := 0; i < 1000; i++ {
		check(os.WriteFile(filepath.Join(repo, fmt.Sprintf("u%04d.cue", i)), append(data, '\n'), 0o644))
	}
	run(repo, "git", "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qam", "all")
	check(os.WriteFile(filepath.Join(repo, "u0007.cue"), append(data, '\n', '\n'), 0o644))
	run(repo, "git", "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qam", "onefile")
	for i := 0; i < 3; i++ {
		gaps("git checkout, 1 of 1000 files", repo, func() { run(repo, "git", "checkout", "-q", "HEAD~1") })
		gaps("git checkout back, 1 file", repo, func() { run(repo, "git", "checkout", "-q", "-") })
		gaps("git checkout, 1000 files changed", repo, func() { run(repo, "git", "checkout", "-q", "HEAD~2") })
		gaps("git checkout back, 1000 files", repo, func() { run(repo, "git", "checkout", "-q", "-") })
	}
}
