package gitsource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/manifests/gitsource/gittest"
)

// newUpstream is a bare repository and a clone to commit from, in a
// folder of the test's own.
func newUpstream(tb testing.TB) *gittest.Upstream {
	tb.Helper()
	return gittest.New(tb, tb.TempDir())
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
