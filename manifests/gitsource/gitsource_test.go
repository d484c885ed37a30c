package gitsource

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestFirstSyncPublishesTheCommitBehindTheSymlink(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "first units", map[string]string{"web.cue": "pods: web: {}\n", "sub/db.cue": "pods: db: {}\n"})
	s := newSource(t, Config{URL: up.Bare})

	rev, changed, err := s.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !changed || rev.Hash != head || rev.Subject != "first units" {
		t.Fatalf("Sync = %+v changed=%v, want %s \"first units\" changed", rev, changed, head)
	}
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "pods: web: {}\n", "sub/db.cue": "pods: db: {}\n"})
	target, err := os.Readlink(s.ManifestDir())
	if err != nil || target != "rev-"+head {
		t.Fatalf("current -> %q (%v), want rev-%s", target, err, head)
	}
	if s.Revision() != rev {
		t.Fatalf("Revision() = %+v, want %+v", s.Revision(), rev)
	}
}

func TestANewCommitIsPublishedAndTheOldFolderRemoved(t *testing.T) {
	up := newUpstream(t)
	first := up.Commit(t, "one", map[string]string{"web.cue": "a\n", "same.cue": "s\n", "gone.cue": "g\n"})
	s := newSource(t, Config{URL: "file://" + up.Bare})
	mustSync(t, s, first)

	// same.cue is linked from the old folder, which then goes: its
	// content must stay.
	second := up.Commit(t, "two", map[string]string{"web.cue": "b\n", "new.cue": "c\n", "same.cue": "s\n"})
	rev, changed, err := s.Sync(context.Background())
	if err != nil || !changed || rev.Hash != second || rev.Subject != "two" {
		t.Fatalf("Sync = %+v changed=%v err=%v, want %s changed", rev, changed, err, second)
	}
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "b\n", "new.cue": "c\n", "same.cue": "s\n"})
	if _, err := os.Stat(filepath.Join(s.cfg.Dir, "rev-"+first)); !os.IsNotExist(err) {
		t.Fatalf("the old revision's folder is still there (%v)", err)
	}
}

func TestAnUnchangedRefChangesNothing(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "one", map[string]string{"web.cue": "a\n"})
	s := newSource(t, Config{URL: up.Bare})
	mustSync(t, s, head)

	rev, changed, err := s.Sync(context.Background())
	if err != nil || changed || rev.Hash != head {
		t.Fatalf("second Sync = %+v changed=%v err=%v, want %s unchanged", rev, changed, err, head)
	}
}

func TestAFailingFetchKeepsTheLastRevision(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "one", map[string]string{"web.cue": "a\n"})
	dir := t.TempDir()
	s := newSource(t, Config{URL: up.Bare, Dir: dir})
	mustSync(t, s, head)

	for name, url := range map[string]string{
		"remote gone":     up.Bare + "-moved",
		"invalid remote":  "file:///nonexistent/repo.git",
		"unknown scheme":  "gopher://127.0.0.1:1/repo",
		"refused address": "http://127.0.0.1:1/repo.git",
	} {
		t.Run(name, func(t *testing.T) {
			bad := newSource(t, Config{URL: url, Dir: dir})
			if got := bad.Revision(); got.Hash != head {
				t.Fatalf("before the fetch: Revision = %+v, want the published %s", got, head)
			}
			rev, changed, err := bad.Sync(context.Background())
			if err == nil || changed || rev.Hash != head {
				t.Fatalf("Sync = %+v changed=%v err=%v, want an error and %s kept", rev, changed, err, head)
			}
			wantFiles(t, bad.ManifestDir(), map[string]string{"web.cue": "a\n"})
		})
	}
}

func TestTheRemoteGoneAndBackKeepsThenFollows(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "one", map[string]string{"web.cue": "a\n"})
	s := newSource(t, Config{URL: up.Bare})
	mustSync(t, s, head)

	next := up.Commit(t, "two", map[string]string{"web.cue": "b\n"})
	if err := os.Rename(up.Bare, up.Bare+"-away"); err != nil {
		t.Fatal(err)
	}
	if rev, _, err := s.Sync(context.Background()); err == nil || rev.Hash != head {
		t.Fatalf("remote gone: Sync = %+v err=%v, want an error and %s kept", rev, err, head)
	}
	if err := os.Rename(up.Bare+"-away", up.Bare); err != nil {
		t.Fatal(err)
	}
	mustSync(t, s, next)
}

func TestForcePushedHistoryIsFollowed(t *testing.T) {
	up := newUpstream(t)
	first := up.Commit(t, "one", map[string]string{"web.cue": "a\n"})
	second := up.Commit(t, "two", map[string]string{"web.cue": "b\n"})
	up.Commit(t, "three", map[string]string{"web.cue": "d\n"})
	s := newSource(t, Config{URL: up.Bare})
	mustSync(t, s, strings.TrimSpace(up.Git(t, "rev-parse", "HEAD")))

	// Back to a commit the source had never fetched (the shallow fetch
	// gave it the tip and its parent only).
	up.ForcePush(t, first)
	mustSync(t, s, first)
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "a\n"})

	// And onward to a rewritten history that shares no commit with it.
	up.Git(t, "checkout", "--orphan", "rewritten")
	rewritten := up.Commit(t, "rewritten", map[string]string{"other.cue": "c\n"})
	up.ForcePush(t, rewritten)
	mustSync(t, s, rewritten)
	wantFiles(t, s.ManifestDir(), map[string]string{"other.cue": "c\n"})

	// And back to one it has fetched before.
	up.ForcePush(t, second)
	mustSync(t, s, second)
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "b\n"})
}

func TestGitPathSelectsAFolder(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "one", map[string]string{"README": "x\n", "nodes/a/web.cue": "a\n", "nodes/b/db.cue": "b\n"})
	s := newSource(t, Config{URL: up.Bare, Path: "nodes/a/"})
	mustSync(t, s, head)
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "a\n"})

	missing := newSource(t, Config{URL: up.Bare, Path: "nodes/c"})
	if _, _, err := missing.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), `"nodes/c"`) {
		t.Fatalf("Sync with a missing folder: err=%v, want one naming it", err)
	}
	if _, err := New(Config{URL: up.Bare, Path: "../x", Dir: t.TempDir()}); err == nil {
		t.Fatal("a path leaving the repository was accepted")
	}
}

func TestARefThatIsATagOrAnotherBranchIsFollowed(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "one", map[string]string{"web.cue": "a\n"})
	up.Git(t, "tag", "-a", "-m", "release", "v1")
	up.Git(t, "push", "origin", "v1")
	s := newSource(t, Config{URL: up.Bare, Ref: "v1"})
	mustSync(t, s, head)

	missing := newSource(t, Config{URL: up.Bare, Ref: "nope"})
	if _, _, err := missing.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Sync of a missing ref: err=%v, want one naming it", err)
	}
}

func TestARestartKeepsThePublishedRevisionLive(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "one", map[string]string{"web.cue": "a\n"})
	dir := t.TempDir()
	mustSync(t, newSource(t, Config{URL: up.Bare, Dir: dir}), head)

	again := newSource(t, Config{URL: up.Bare, Dir: dir})
	if got := again.Revision(); got.Hash != head || got.Subject != "one" {
		t.Fatalf("after restart Revision = %+v, want %s \"one\"", got, head)
	}
	rev, changed, err := again.Sync(context.Background())
	if err != nil || changed || rev.Hash != head {
		t.Fatalf("Sync after restart = %+v changed=%v err=%v, want %s unchanged", rev, changed, err, head)
	}
}

func TestHTTPSWithATokenFromTheCredentialsFile(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "over http", map[string]string{"web.cue": "a\n"})
	const token = "s3cret-token"
	srv := gitHTTPServer(t, filepath.Dir(up.Bare), token)
	url := srv.URL + "/" + filepath.Base(up.Bare)
	creds := filepath.Join(t.TempDir(), "token")

	noCreds := newSource(t, Config{URL: url})
	if _, _, err := noCreds.Sync(context.Background()); err == nil {
		t.Fatal("a fetch without the token succeeded")
	}
	write(t, creds, "wrong\n")
	wrong := newSource(t, Config{URL: url, CredentialsFile: creds})
	if _, _, err := wrong.Sync(context.Background()); err == nil {
		t.Fatal("a fetch with a wrong token succeeded")
	}

	write(t, creds, token+"\n")
	s := newSource(t, Config{URL: url, CredentialsFile: creds})
	mustSync(t, s, head)
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "a\n"})

	next := up.Commit(t, "second over http", map[string]string{"web.cue": "b\n"})
	mustSync(t, s, next)
}

func TestParseCredentials(t *testing.T) {
	for _, tc := range []struct {
		name, content, user, token string
		fails                      bool
	}{
		{name: "a bare token goes with a fixed user", content: "tok\n", user: tokenUser, token: "tok"},
		{name: "user and token", content: "bot:tok", user: "bot", token: "tok"},
		{name: "git's credential store line", content: "https://bot:tok@git.example.com\n", user: "bot", token: "tok"},
		{name: "comments and blank lines are skipped", content: "# rotated monthly\n\n  tok  \n", user: tokenUser, token: "tok"},
		{name: "an empty file fails", content: "\n", fails: true},
		{name: "a store line without a token fails", content: "https://bot@git.example.com", fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, token, err := parseCredentials(tc.content)
			if tc.fails {
				if err == nil {
					t.Fatalf("parseCredentials(%q) = %q, %q, want an error", tc.content, user, token)
				}
				return
			}
			if err != nil || user != tc.user || token != tc.token {
				t.Fatalf("parseCredentials(%q) = %q, %q, %v; want %q, %q", tc.content, user, token, err, tc.user, tc.token)
			}
		})
	}
}

// gitHTTPServer serves the bare repositories under root with git's own
// smart HTTP server, and only to requests that carry token.
func gitHTTPServer(t *testing.T, root, token string) *httptest.Server {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); !ok || pw != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTheRepositoryIsMadeAnewWhenItsPacksPileUp(t *testing.T) {
	up := newUpstream(t)
	s := newSource(t, Config{URL: up.Bare})
	mustSync(t, s, up.Commit(t, "one", map[string]string{"web.cue": "a\n"}))
	packs := filepath.Join(s.cfg.Dir, repoDir, "objects", "pack")
	for i := range maxPacks + 1 {
		write(t, filepath.Join(packs, fmt.Sprintf("pack-stale%d.pack", i)), "")
	}

	head := up.Commit(t, "two", map[string]string{"web.cue": "b\n"})
	mustSync(t, s, head)
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "b\n"})
	left, _ := filepath.Glob(filepath.Join(packs, "*.pack"))
	if len(left) > 2 {
		t.Fatalf("%d packs after the fetch, want the repository made anew", len(left))
	}
}
