// Package gittest makes the git repositories that the git source's tests
// and the agent's end-to-end tests follow: a bare repository and a clone
// to commit from, made with the git command line as a user would.
package gittest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// Upstream is a bare repository (Bare, the remote the source follows) and
// a clone (Work) whose origin it is; git runs with Home as its home, so
// that no configuration of the machine's user takes part.
type Upstream struct {
	Bare, Work, Home string
}

// New makes the two repositories under dir, on branch main. It needs the
// git command (skipped without it, failed with CI set).
func New(tb testing.TB, dir string) *Upstream {
	tb.Helper()
	testenv.RequireCommand(tb, "git")
	u := &Upstream{Bare: filepath.Join(dir, "remote.git"), Work: filepath.Join(dir, "work"), Home: filepath.Join(dir, "home")}
	if err := os.MkdirAll(u.Home, 0o755); err != nil {
		tb.Fatal(err)
	}
	u.Run(tb, dir, "init", "-q", "--bare", "-b", "main", u.Bare)
	u.Run(tb, dir, "init", "-q", "-b", "main", u.Work)
	u.Git(tb, "remote", "add", "origin", u.Bare)
	return u
}

// Commit makes the work tree hold exactly files (every other file is
// deleted), commits with msg and force-pushes to main. It returns the
// commit's hash.
func (u *Upstream) Commit(tb testing.TB, msg string, files map[string]string) string {
	tb.Helper()
	u.Git(tb, "rm", "-rqf", "--ignore-unmatch", ".")
	for name, content := range files {
		p := filepath.Join(u.Work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	u.Git(tb, "add", "-A")
	u.Git(tb, "commit", "-q", "--allow-empty", "-m", msg)
	u.Git(tb, "push", "-q", "-f", "origin", "HEAD:main")
	return strings.TrimSpace(u.Git(tb, "rev-parse", "HEAD"))
}

// ForcePush moves main on the remote to hash, backwards or sideways.
func (u *Upstream) ForcePush(tb testing.TB, hash string) {
	tb.Helper()
	u.Git(tb, "push", "-q", "-f", "origin", hash+":refs/heads/main")
}

// Git runs git in the work tree and returns its output.
func (u *Upstream) Git(tb testing.TB, args ...string) string {
	tb.Helper()
	return u.Run(tb, u.Work, args...)
}

// Run runs git in dir and returns its output; a failure fails tb.
func (u *Upstream) Run(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.com"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+u.Home, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// SilentRemote is the URL of a git remote over HTTP on 127.0.0.1 that
// accepts every request and never answers (a hung server or proxy), for
// tb's life.
func SilentRemote(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hang := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang })}
	go srv.Serve(ln)
	tb.Cleanup(func() {
		close(hang)
		srv.Close()
	})
	return "http://" + ln.Addr().String() + "/repo.git"
}
