package gitsource

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// upstream is a bare repository and a clone to commit from, made with
// the git command line as a user would.
type upstream struct {
	bare, work, home string
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	u := &upstream{bare: filepath.Join(dir, "remote.git"), work: filepath.Join(dir, "work"), home: filepath.Join(dir, "home")}
	if err := os.Mkdir(u.home, 0o755); err != nil {
		t.Fatal(err)
	}
	u.run(t, dir, "init", "-q", "--bare", "-b", "main", u.bare)
	u.run(t, dir, "init", "-q", "-b", "main", u.work)
	u.git(t, "remote", "add", "origin", u.bare)
	return u
}

// commit makes the work tree hold exactly files (every other file is
// deleted), commits with msg and pushes to main. It returns the hash.
func (u *upstream) commit(t testing.TB, msg string, files map[string]string) string {
	t.Helper()
	u.git(t, "rm", "-rqf", "--ignore-unmatch", ".")
	for name, content := range files {
		write(t, filepath.Join(u.work, name), content)
	}
	u.git(t, "add", "-A")
	u.git(t, "commit", "-q", "--allow-empty", "-m", msg)
	u.git(t, "push", "-q", "-f", "origin", "HEAD:main")
	return strings.TrimSpace(u.git(t, "rev-parse", "HEAD"))
}

// forcePush moves main on the remote to hash, backwards or sideways.
func (u *upstream) forcePush(t testing.TB, hash string) {
	t.Helper()
	u.git(t, "push", "-q", "-f", "origin", hash+":refs/heads/main")
}

func (u *upstream) git(t testing.TB, args ...string) string {
	t.Helper()
	return u.run(t, u.work, args...)
}

func (u *upstream) run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.com"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+u.home, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newSource(t testing.TB, cfg Config) *Source {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSync(t testing.TB, s *Source, want string) {
	t.Helper()
	rev, _, err := s.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rev.Hash != want {
		t.Fatalf("Sync published %s, want %s", rev.Hash, want)
	}
}

func write(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantFiles checks that dir holds exactly files (hidden names aside: the
// loader skips them).
func wantFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir+"/", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir+"/", p)
		got[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files) {
		t.Fatalf("%s holds %v, want %v", dir, got, files)
	}
	for name, content := range files {
		if got[name] != content {
			t.Fatalf("%s holds %v, want %v", dir, got, files)
		}
	}
}
