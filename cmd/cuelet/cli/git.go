package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/gitsource"
)

const defaultGitPeriod = 30 * time.Second

// GitFlags make a git repository the manifest directory (SPEC §12):
// `run` follows it, validate, plan, apply and export read it once.
type GitFlags struct {
	URL, Ref, Path  string
	Period          time.Duration
	CredentialsFile string
	SSHKey          string
	KnownHosts      string
	fs              *pflag.FlagSet // to tell whether --manifests was given
}

// Register adds the --git-* flags.
func (g *GitFlags) Register(fs *pflag.FlagSet) {
	g.fs = fs
	fs.StringVar(&g.URL, "git-url", "", "read the manifests from this git `repository` (path, file://, https:// or ssh://) instead of --manifests")
	fs.StringVar(&g.Ref, "git-ref", "main", "branch or tag (`ref`) to follow, with --git-url")
	fs.StringVar(&g.Path, "git-path", "", "`folder` of the repository that holds the manifests (default: its root)")
	fs.DurationVar(&g.Period, "git-period", defaultGitPeriod, "`interval` between fetches (run)")
	fs.StringVar(&g.CredentialsFile, "git-credentials-file", "", "`file` holding the https token (TOKEN, USER:TOKEN or https://USER:TOKEN@HOST)")
	fs.StringVar(&g.SSHKey, "git-ssh-key", "", "private key `file` for ssh URLs")
	fs.StringVar(&g.KnownHosts, "git-known-hosts", "", "known_hosts `file` for ssh URLs (default: ssh's own)")
}

// enabled reports whether --git-url was given, and refuses it together
// with --manifests: one of them names the manifests, not both.
func (g *GitFlags) enabled() (bool, error) {
	if g.URL == "" {
		return false, nil
	}
	if g.fs != nil && g.fs.Changed("manifests") {
		return false, errors.New("--git-url and --manifests exclude each other")
	}
	if g.Period <= 0 {
		return false, fmt.Errorf("--git-period %s: want a positive interval", g.Period)
	}
	return true, nil
}

func (g *GitFlags) config(dir string) gitsource.Config {
	return gitsource.Config{
		URL: g.URL, Ref: g.Ref, Path: g.Path, Dir: dir,
		CredentialsFile: g.CredentialsFile, SSHKey: g.SSHKey, KnownHosts: g.KnownHosts,
	}
}

// fetchTimeout is the deadline of a one-shot fetch, the agent's (a
// variable for the test of a remote that never answers).
var fetchTimeout = agent.FetchTimeout

// fetchOnce reads the repository into a temporary folder for a one-shot
// command (validate, plan, apply, export), so that CI can check a branch. dir is
// "" without --git-url; cleanup removes the folder.
func (g *GitFlags) fetchOnce(ctx context.Context) (dir string, rev gitsource.Revision, cleanup func(), err error) {
	cleanup = func() {}
	on, err := g.enabled()
	if err != nil || !on {
		return "", rev, cleanup, err
	}
	tmp, err := os.MkdirTemp("", "cuelet-git-")
	if err != nil {
		return "", rev, cleanup, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	src, err := gitsource.New(g.config(tmp))
	if err == nil {
		// A remote that never answers fails a CI job as it fails the
		// agent's fetch, instead of holding it until the job's limit.
		d := fetchTimeout(g.Period)
		fctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("no answer from the remote within %s", d))
		rev, _, err = src.Sync(fctx)
		if fctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("git fetch: %w", context.Cause(fctx))
		}
		cancel()
	}
	if err != nil {
		cleanup()
		return "", rev, func() {}, err
	}
	return src.ManifestDir(), rev, cleanup, nil
}

// repoPaths rewrites the units' files and IDs from the temporary folder
// dir to paths in the repository, as export or validate of --git-path
// from the repository's root would name them: a CI log should point at
// the repository, and export's cuelet.io/unit annotations must not name
// a folder that is gone.
func (g *GitFlags) repoPaths(dir string, units []*manifests.Unit) {
	if dir == "" {
		return
	}
	root := g.Path
	repo := func(p string) string {
		if rel, ok := strings.CutPrefix(p, dir+string(filepath.Separator)); ok {
			return agent.InRepository(root, rel)
		}
		if pkg, ok := strings.CutPrefix(p, dir+":"); ok { // a package unit in the root
			return agent.InRepository(root, ".:"+pkg)
		}
		return p
	}
	for _, u := range units {
		u.ID = repo(u.ID)
		for i, f := range u.Files {
			u.Files[i] = repo(f)
		}
		source := make(map[string][]byte, len(u.Source))
		for f, b := range u.Source {
			source[repo(f)] = b
		}
		u.Source = source
		for i, p := range u.Problems {
			u.Problems[i].File = repo(p.File)
		}
	}
}

// agentConfig is the git source of `cuelet run`, publishing under
// <state-dir>/git; nil without --git-url.
func (g *GitFlags) agentConfig(stateDir string) (*agent.GitOptions, error) {
	on, err := g.enabled()
	if err != nil || !on {
		return nil, err
	}
	return &agent.GitOptions{Source: g.config(filepath.Join(stateDir, "git")), Period: g.Period}, nil
}

// oneShotOptions are the options of plan and apply: the agent flags, and
// with --git-url the manifest folder of a one-shot fetch, which cleanup
// removes. The flags are checked first, so that a bad one costs no fetch.
func (a *AgentFlags) oneShotOptions(ctx context.Context, log zerolog.Logger) (o agent.Options, cleanup func(), err error) {
	o, err = a.options(log)
	if err != nil {
		return o, func() {}, err
	}
	dir, _, cleanup, err := a.Git.fetchOnce(ctx)
	if dir != "" {
		// Units and files are then named by their path in the
		// repository, as validate and the agent name them.
		o.ManifestDir, o.GitPath = dir, a.Git.Path
	}
	return o, cleanup, err
}

// printSource writes the git revision lines of `cuelet status`.
func printSource(w io.Writer, s *agent.SourceStatus) {
	if s == nil {
		return
	}
	if s.Revision.Hash == "" {
		fmt.Fprintln(w, "REVISION  none yet")
	} else {
		fmt.Fprintf(w, "REVISION  %s %s\n", s.Revision.Hash, s.Revision.Subject)
	}
	if s.FetchError != "" {
		fmt.Fprintf(w, "FETCH     failing, the revision above stays live: %s\n", s.FetchError)
	}
}
