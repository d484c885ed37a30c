package agent

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests/gitsource"
	"github.com/cuelet/cuelet/manifests/gitsource/gittest"
)

func TestGitSource_a_failing_fetch_is_logged_once_counted_every_time_and_keeps_the_revision(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	gitCLI(t, dir, "init", "-q", "-b", "main", repo)
	if err := os.WriteFile(filepath.Join(repo, "web.cue"), []byte("pods: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCLI(t, repo, "add", "-A")
	gitCLI(t, repo, "commit", "-q", "-m", "first")
	head := strings.TrimSpace(gitCLI(t, repo, "rev-parse", "HEAD"))

	src, err := gitsource.New(gitsource.Config{URL: repo, Dir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	g := NewGitSource(GitConfig{Source: src, Period: 1, Registerer: reg, Log: zerolog.New(&logs)})
	ctx := context.Background()

	g.Sync(ctx)
	if st := g.Status(); st.Revision.Hash != head || st.FetchError != "" {
		t.Fatalf("after the first fetch Status = %+v, want %s and no error", st, head)
	}
	if got := testutil.ToFloat64(g.info.WithLabelValues(head, "first")); got != 1 {
		t.Fatalf("cuelet_source_info{revision=%s} = %v, want 1", head, got)
	}

	if err := os.Rename(repo, repo+"-away"); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	for range 3 {
		g.Sync(ctx)
	}
	if n := strings.Count(logs.String(), "git fetch failed"); n != 1 {
		t.Fatalf("three failing fetches logged %d times, want once:\n%s", n, logs.String())
	}
	if got := testutil.ToFloat64(g.fetchErrors); got != 3 {
		t.Fatalf("cuelet_git_fetch_errors_total = %v, want 3", got)
	}
	if st := g.Status(); st.Revision.Hash != head || st.FetchError == "" {
		t.Fatalf("while failing Status = %+v, want %s kept and the error", st, head)
	}

	if err := os.Rename(repo+"-away", repo); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	g.Sync(ctx)
	g.Sync(ctx)
	if n := strings.Count(logs.String(), "git fetch works again"); n != 1 {
		t.Fatalf("the recovery logged %d times, want once:\n%s", n, logs.String())
	}
	if st := g.Status(); st.FetchError != "" {
		t.Fatalf("after recovery Status = %+v, want no error", st)
	}
}

func TestGitSource_a_new_revision_kicks_the_pass_an_unchanged_ref_does_not(t *testing.T) {
	up := gittest.New(t, t.TempDir())
	up.Commit(t, "first", map[string]string{"web.cue": "pods: {}\n"})
	src, err := gitsource.New(gitsource.Config{URL: up.Bare, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	g := NewGitSource(GitConfig{Source: src, Period: 1, Log: zerolog.New(&logs)})
	kicks := 0
	g.OnPublish(func() { kicks++ })
	ctx := context.Background()

	g.Sync(ctx)
	g.Sync(ctx)
	if kicks != 1 {
		t.Fatalf("the first revision and an unchanged ref kicked %d times, want once", kicks)
	}
	second := up.Commit(t, "second", map[string]string{"web.cue": "pods: {}\n// two\n"})
	g.Sync(ctx)
	if kicks != 2 || src.Revision().Hash != second {
		t.Fatalf("after a new commit: %d kicks, revision %s; want 2 and %s", kicks, src.Revision().Hash, second)
	}
	if !strings.Contains(logs.String(), `"fetch_took"`) || !strings.Contains(logs.String(), `"publish_took"`) {
		t.Errorf("the log of a new revision says nothing of the time it took:\n%s", logs.String())
	}
}

// treeSyncer is a pass that reads web.cue from the manifest folder, as the
// node's loader would, and records what each pass read.
type treeSyncer struct {
	dir   string
	mu    sync.Mutex
	reads []string
}

func (s *treeSyncer) Sync(context.Context) *Report {
	b, err := os.ReadFile(filepath.Join(s.dir, "web.cue"))
	if err != nil {
		b = []byte(err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads = append(s.reads, strings.TrimSpace(string(b)))
	return &Report{}
}

func (s *treeSyncer) passes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reads)
}

// SPEC §12: SIGHUP fetches at once. The reload's pass, the one that sends
// READY=1, reads the commit waiting on the remote, and no pass after the
// signal reads the tree of the revision before it.
func TestAgent_SIGHUP_with_git_fetches_first_then_passes_on_the_new_revision(t *testing.T) {
	up := gittest.New(t, t.TempDir())
	up.Commit(t, "first", map[string]string{"web.cue": "first"})
	src, err := gitsource.New(gitsource.Config{URL: up.Bare, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGitSource(GitConfig{Source: src, Period: time.Hour, Log: zerolog.Nop()})
	g.Sync(context.Background())
	s := &treeSyncer{dir: g.ManifestDir()}
	ch := listenNotify(t)
	hup := make(chan os.Signal, 1)
	// A debounce shorter than any fetch: a remote across a network takes
	// longer than the agent's 40 ms, a bare repository on this disk may
	// not, and the pass must wait for the fetch either way.
	startAgent(t, Config{
		ManifestDir: g.ManifestDir(), KeepFile: keepCue, Quiet: time.Microsecond, Reload: hup, Fetch: g.FetchNow,
		Source: g.Status, Components: []func(context.Context) error{g.Run},
	}, s, nil, func(a *Agent) { g.OnPublish(a.KickNow) })
	nextNotify(t, ch) // STATUS=
	if got := nextNotify(t, ch); got != "READY=1" {
		t.Fatalf("got %q, want READY=1 after the first pass", got)
	}

	second := up.Commit(t, "second", map[string]string{"web.cue": "second"})
	hup <- syscall.SIGHUP
	if got := nextNotify(t, ch); !strings.HasPrefix(got, "RELOADING=1") {
		t.Fatalf("got %q, want RELOADING=1", got)
	}
	for {
		got := nextNotify(t, ch)
		if got == "READY=1" {
			break
		}
		if !strings.HasPrefix(got, "STATUS=") {
			t.Fatalf("got %q during the reload, want STATUS= or READY=1", got)
		}
	}
	passes := s.passes()
	if len(passes) < 2 || passes[0] != "first" {
		t.Fatalf("passes read %q, want the first revision, then the reload's pass", passes)
	}
	for i, read := range passes[1:] {
		if read != "second" {
			t.Errorf("pass %d after SIGHUP read %q, want the fetched revision's \"second\" (all passes: %q)", i+1, read, passes)
		}
	}
	if h := src.Revision().Hash; h != second {
		t.Errorf("revision after SIGHUP %s, want %s", h, second)
	}
	t.Logf("passes after SIGHUP, up to READY=1: %d", len(passes)-1)
}

// A remote that accepts the connection and never answers (a proxy, a
// hung git server) must not hold the git source forever: no later fetch
// would run, and SIGHUP, which waits for its fetch, would never end.
func TestGitSource_a_fetch_from_a_remote_that_never_answers_fails_after_its_deadline(t *testing.T) {
	remote := gittest.SilentRemote(t)
	src, err := gitsource.New(gitsource.Config{URL: remote, Dir: filepath.Join(t.TempDir(), "state")})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	g := NewGitSource(GitConfig{Source: src, Period: time.Second, FetchTimeout: 200 * time.Millisecond, Log: zerolog.New(&logs)})
	done := make(chan struct{})
	go func() {
		g.Sync(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a fetch from a remote that never answers still runs after 30 s; want it failed after its 200ms deadline")
	}
	if st := g.Status(); !strings.Contains(st.FetchError, "200ms") {
		t.Errorf("Status after the hung fetch: %+v, want a fetch error naming the deadline", st)
	}
	if !strings.Contains(logs.String(), "git fetch failed") {
		t.Errorf("log: %s; want the failed fetch", logs.String())
	}
}

func TestGitSource_nil_is_no_source(t *testing.T) {
	var g *GitSource
	if g.Status() != nil {
		t.Fatal("a nil GitSource reported a status")
	}
	g.OnPublish(func() {}) // no --git-url: nothing to wire
	g.FetchNow(context.Background())
	if err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func gitCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.com"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}
