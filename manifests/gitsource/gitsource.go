// Package gitsource makes a git repository the manifest directory: it
// fetches one ref shallowly and publishes each new commit the way git-sync
// does (a folder per revision behind an atomically swapped symlink), so
// that the loader and the watcher need to know nothing about git.
package gitsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/google/renameio/v2"
)

// Layout under Config.Dir. The manifest directory is Dir/current, a
// symlink to Dir/rev-<hash>, which holds the files of Config.Path at that
// commit. Names the loader reads never start with "rev-" or ".", so no
// temporary name can be mistaken for a revision.
const (
	repoDir      = "repo.git"
	currentLink  = "current"
	revPrefix    = "rev-"
	revisionFile = ".cuelet-revision.json" // hidden: the loader skips it
	fetchedRef   = "refs/cuelet/fetched"
	defaultRef   = "main"
	// maxPacks bounds the repository's growth: every fetch adds a pack
	// and a shallow repository is never garbage-collected by go-git, so
	// past this many the next fetch starts from an empty repository
	// (fetchDepth commits' objects, no more than the first fetch).
	maxPacks = 64
	// fetchDepth is 2, not 1, so that the fetch of a commit whose parent
	// is the live revision brings only what that commit changed. go-git
	// cannot take thin packs, and without them git's upload-pack, asked
	// for depth 1, cuts the new commit from its parent and so cannot
	// leave out the objects the parent already has: every fetch brought
	// the whole tree again (1,000 blobs for one changed unit). At depth
	// 2 the parent is inside the walk, our "have" excludes its objects,
	// and the pack holds the commit, the changed trees and blobs. A push
	// of several commits, or a force push, costs at most two commits'
	// objects: still shallow.
	fetchDepth = 2
)

// Config says which repository, ref and folder to follow.
type Config struct {
	// URL is a local path, file://, https:// or ssh:// (or scp-like
	// user@host:path) address.
	URL string
	// Ref is a branch or tag name, or a full ref (refs/...); default main.
	Ref string
	// Path is the folder of the repository that holds the manifests;
	// "" is its root.
	Path string
	// Dir holds the repository and the published revisions
	// (<state-dir>/git); it is created if missing.
	Dir string
	// CredentialsFile holds the https token: one line, either TOKEN,
	// USER:TOKEN or git's credential-store form https://USER:TOKEN@HOST.
	// It is read at every fetch, so a rotated token needs no restart.
	CredentialsFile string
	// SSHKey is the private key for ssh URLs; KnownHosts the host keys
	// (default: ssh's own files).
	SSHKey     string
	KnownHosts string
}

// Revision is a published commit.
type Revision struct {
	Hash    string `json:"hash"`
	Subject string `json:"subject"`
}

// Short is the hash abbreviated as git log --oneline does.
func (r Revision) Short() string {
	if len(r.Hash) > 7 {
		return r.Hash[:7]
	}
	return r.Hash
}

func (r Revision) String() string {
	if r.Hash == "" {
		return "none"
	}
	return r.Short() + " " + r.Subject
}

// Times is how long the steps of the last Sync that published a
// revision took, for the log and the benchmarks: where the time from a
// push to the agent's pass goes.
type Times struct {
	// Started is when that Sync began.
	Started time.Time
	// Fetch is asking the remote where the ref points and fetching the
	// commit; Publish writing the revision's folder and swapping the
	// symlink to it; Tidy removing the folders of older revisions.
	Fetch, Publish, Tidy time.Duration
}

// Swapped is when the symlink pointed at the new revision.
func (t Times) Swapped() time.Time { return t.Started.Add(t.Fetch + t.Publish) }

// Source follows one ref of one repository.
type Source struct {
	cfg   Config
	mu    sync.Mutex // one Sync at a time; guards repo
	live  atomic.Pointer[Revision]
	times atomic.Pointer[Times]
	// onPublish is called after each new revision's swap (OnPublish).
	onPublish func(Revision)
	// repo stays open between syncs: opening it decodes every pack's
	// index again, and its object cache still holds the live tree that
	// the next publish compares with.
	repo *git.Repository
}

// New returns a source publishing under cfg.Dir. A revision published by
// an earlier run is live at once, so an agent that restarts while the
// remote is away keeps serving what it served.
func New(cfg Config) (*Source, error) {
	if cfg.URL == "" {
		return nil, errors.New("git source: no URL")
	}
	if cfg.Ref == "" {
		cfg.Ref = defaultRef
	}
	p := path.Clean("/" + filepath.ToSlash(cfg.Path))
	if cfg.Path != "" && p != "/" && strings.Contains(cfg.Path, "..") {
		return nil, fmt.Errorf("git path %q: must stay inside the repository", cfg.Path)
	}
	cfg.Path = strings.TrimPrefix(p, "/")
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("git source: %w", err)
	}
	s := &Source{cfg: cfg}
	if rev, ok := s.readPublished(); ok {
		s.live.Store(&rev)
	}
	return s, nil
}

// ManifestDir is where the loader reads: the symlink that each new
// revision replaces. It does not exist before the first Sync succeeds.
func (s *Source) ManifestDir() string { return filepath.Join(s.cfg.Dir, currentLink) }

// OnPublish makes Sync call fn for each new revision right after its
// symlink swap, before the old folders are removed: a reader told of the
// revision then reads it while the removal goes on. Call it before the
// first Sync.
func (s *Source) OnPublish(fn func(Revision)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onPublish = fn
}

// LastTimes says how long the steps of the last Sync that published a
// revision took; zero before one has. Tidy is zero until that Sync has
// removed the old folders.
func (s *Source) LastTimes() Times {
	if t := s.times.Load(); t != nil {
		return *t
	}
	return Times{}
}

// Revision is the live revision; its Hash is "" before the first one.
func (s *Source) Revision() Revision {
	if r := s.live.Load(); r != nil {
		return *r
	}
	return Revision{}
}

// Sync asks the remote where the ref points and, when that is not the
// live revision, fetches that commit (shallow: fetchDepth), writes it
// into a folder of its own and swaps the symlink to it. Any commit is followed, also one
// that is not a descendant of the live one (a force push). On error the
// live revision stays as it was. changed reports a new revision.
func (s *Source) Sync(ctx context.Context) (rev Revision, changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rev, changed, err = s.sync(ctx)
	if err != nil {
		s.repo = nil // open it afresh: its files may be what failed
		return s.Revision(), false, fmt.Errorf("git %s %s: %w", redact(s.cfg.URL), s.cfg.Ref, err)
	}
	return rev, changed, nil
}

func (s *Source) sync(ctx context.Context) (Revision, bool, error) {
	t := Times{Started: time.Now()}
	auth, err := s.auth()
	if err != nil {
		return Revision{}, false, err
	}
	repo, err := s.openRepo()
	if err != nil {
		return Revision{}, false, err
	}
	remote := git.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{s.cfg.URL}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return Revision{}, false, fmt.Errorf("list remote refs: %w", err)
	}
	name, tip, err := pickRef(refs, s.cfg.Ref)
	if err != nil {
		return Revision{}, false, err
	}
	if live := s.Revision(); live.Hash == tip.String() && s.published(live.Hash) {
		return live, false, nil // the common case: nothing new, nothing fetched
	}
	if _, err := repo.CommitObject(tip); err != nil {
		// Not here yet (a commit we once had, after a force push back to
		// it, needs no fetch).
		err := remote.FetchContext(ctx, &git.FetchOptions{
			RefSpecs: []config.RefSpec{config.RefSpec("+" + name.String() + ":" + fetchedRef)},
			Depth:    fetchDepth,
			Auth:     auth,
			Tags:     git.NoTags,
			Force:    true,
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return Revision{}, false, fmt.Errorf("fetch: %w", err)
		}
		ref, err := repo.Reference(fetchedRef, true)
		if err != nil {
			return Revision{}, false, fmt.Errorf("fetch: %w", err)
		}
		tip = ref.Hash() // the ref may have moved since we listed it
	}
	commit, err := commitOf(repo, tip)
	if err != nil {
		return Revision{}, false, err
	}
	rev := Revision{Hash: commit.Hash.String(), Subject: subject(commit.Message)}
	if live := s.Revision(); live.Hash == rev.Hash && s.published(rev.Hash) {
		return live, false, nil
	}
	t.Fetch = time.Since(t.Started)
	if err := s.publish(repo.Storer, commit, rev); err != nil {
		return Revision{}, false, err
	}
	s.live.Store(&rev)
	t.Publish = time.Since(t.Started) - t.Fetch
	published := t
	s.times.Store(&published) // for a reader told by onPublish
	if s.onPublish != nil {
		s.onPublish(rev)
	}
	s.removeOld(revPrefix + rev.Hash)
	t.Tidy = time.Since(t.Started) - t.Fetch - t.Publish
	s.times.Store(&t)
	return rev, true, nil
}

// openRepo returns the repository the last sync used, or opens the bare
// repository under Dir, or makes it. One that cannot be opened (a half-written first run) or has grown past maxPacks
// is made anew: it holds nothing the remote does not, and the published
// folders do not depend on it.
func (s *Source) openRepo() (*git.Repository, error) {
	dir := filepath.Join(s.cfg.Dir, repoDir)
	packs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
	if len(packs) <= maxPacks {
		if s.repo != nil {
			return s.repo, nil
		}
		if repo, err := git.PlainOpen(dir); err == nil {
			s.repo = repo
			return repo, nil
		}
	}
	s.repo = nil
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("reset repository: %w", err)
	}
	repo, err := git.PlainInit(dir, true)
	if err != nil {
		return nil, fmt.Errorf("init repository %s: %w", dir, err)
	}
	s.repo = repo
	return repo, nil
}

// pickRef finds the ref the user named among the remote's: a branch
// first, then a tag, then a full ref name.
func pickRef(refs []*plumbing.Reference, want string) (plumbing.ReferenceName, plumbing.Hash, error) {
	candidates := []plumbing.ReferenceName{
		plumbing.NewBranchReferenceName(want),
		plumbing.NewTagReferenceName(want),
		plumbing.ReferenceName(want),
	}
	for _, c := range candidates {
		for _, r := range refs {
			if r.Name() == c && r.Type() == plumbing.HashReference {
				return c, r.Hash(), nil
			}
		}
	}
	return "", plumbing.ZeroHash, fmt.Errorf("ref %q not found on the remote", want)
}

// commitOf resolves a hash that may be an annotated tag to its commit.
func commitOf(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	if tag, err := repo.TagObject(h); err == nil {
		c, err := tag.Commit()
		if err != nil {
			return nil, fmt.Errorf("tag %s: %w", h, err)
		}
		return c, nil
	}
	c, err := repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

func subject(msg string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(msg), "\n")
	return strings.TrimSpace(line)
}

// publish writes the commit's files below Path into rev-<hash> and swaps
// the current symlink to it (the caller then removes the other
// revisions): the git-sync layout (SPEC §2), so a reader sees the old
// tree or the new one, never a mix.
func (s *Source) publish(st storer.EncodedObjectStorer, commit *object.Commit, rev Revision) error {
	tree, err := commit.Tree()
	if err != nil {
		return fmt.Errorf("tree of %s: %w", rev.Short(), err)
	}
	if s.cfg.Path != "" {
		tree, err = tree.Tree(s.cfg.Path)
		if err != nil {
			return fmt.Errorf("folder %q in %s: %w", s.cfg.Path, rev.Short(), err)
		}
	}
	final := revPrefix + rev.Hash
	tmp, err := os.MkdirTemp(s.cfg.Dir, ".tmp-"+final+"-")
	if err != nil {
		return fmt.Errorf("publish %s: %w", rev.Short(), err)
	}
	defer os.RemoveAll(tmp) // gone by the rename on success
	prev := s.previousFiles(st)
	if err := checkout(st, tree, tmp, prev); err != nil {
		return fmt.Errorf("check out %s: %w", rev.Short(), err)
	}
	meta, err := json.Marshal(rev)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, revisionFile), meta, 0o644); err != nil {
		return fmt.Errorf("publish %s: %w", rev.Short(), err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("publish %s: %w", rev.Short(), err)
	}
	// A folder of that name is left by a run that died before its swap,
	// or is the live one when the revision file was lost: never trust it.
	dst := filepath.Join(s.cfg.Dir, final)
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("publish %s: %w", rev.Short(), err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("publish %s: %w", rev.Short(), err)
	}
	// renameio.Symlink makes a temporary link and renames it over the
	// live one: readers never see the name missing.
	if err := renameio.Symlink(final, s.ManifestDir()); err != nil {
		return fmt.Errorf("publish %s: swap symlink: %w", rev.Short(), err)
	}
	return nil
}

// removeOld deletes every revision folder but keep, and temporary folders
// of publishes that died. Failing to is harmless: the next publish tries
// again.
func (s *Source) removeOld(keep string) {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if n != keep && (strings.HasPrefix(n, revPrefix) || strings.HasPrefix(n, ".tmp-"+revPrefix)) {
			_ = os.RemoveAll(filepath.Join(s.cfg.Dir, n))
		}
	}
}

// checkout writes tree's files below dir: folders, regular and executable
// files, and symlinks as git itself would; submodules are left out (their
// content is in another repository).
// A file that the live revision has with the same content and mode is
// hard-linked from its folder rather than written again: a commit that
// changes one unit of 1,000 then reads one blob, not 1,000. Sharing
// inodes between revisions is safe because no file is ever changed in
// place: a revision's folder is written once, under a temporary name, and
// a changed blob always becomes a new file (a new inode) in the new
// folder, so the old revision, which a reader may still have open, keeps
// its content (TestTheLiveRevisionsFilesStayAsTheyAreWhenTheNextOneIsPublished).
func checkout(st storer.EncodedObjectStorer, tree *object.Tree, dir string, prev prevFiles) error {
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, entry, err := w.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if name == revisionFile {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch entry.Mode {
		case filemode.Dir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			if prev.link(name, entry, dst) {
				continue
			}
			perm := os.FileMode(0o644)
			if entry.Mode == filemode.Executable {
				perm = 0o755
			}
			if err := writeBlob(st, entry.Hash, dst, perm); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case filemode.Symlink:
			target, err := readBlob(st, entry.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := os.Symlink(string(target), dst); err != nil {
				return err
			}
		}
	}
}

// prevFiles are the files of the live revision's folder by their path:
// what checkout may link instead of writing.
type prevFiles struct {
	dir   string
	files map[string]object.TreeEntry
}

// previousFiles lists the live revision's files, or none when that
// revision's objects are gone (a repository made anew).
func (s *Source) previousFiles(st storer.EncodedObjectStorer) prevFiles {
	live := s.Revision()
	if live.Hash == "" || !s.published(live.Hash) {
		return prevFiles{}
	}
	c, err := object.GetCommit(st, plumbing.NewHash(live.Hash))
	if err != nil {
		return prevFiles{}
	}
	tree, err := c.Tree()
	if err == nil && s.cfg.Path != "" {
		tree, err = tree.Tree(s.cfg.Path)
	}
	if err != nil {
		return prevFiles{}
	}
	p := prevFiles{dir: filepath.Join(s.cfg.Dir, revPrefix+live.Hash), files: map[string]object.TreeEntry{}}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, entry, err := w.Next()
		if err != nil {
			break
		}
		if entry.Mode.IsFile() {
			p.files[name] = entry
		}
	}
	return p
}

// link hard-links name from the previous revision when it is the same
// blob with the same mode there, and reports whether it did.
func (p prevFiles) link(name string, entry object.TreeEntry, dst string) bool {
	old, ok := p.files[name]
	if !ok || old.Hash != entry.Hash || old.Mode != entry.Mode {
		return false
	}
	return os.Link(filepath.Join(p.dir, filepath.FromSlash(name)), dst) == nil
}

func writeBlob(st storer.EncodedObjectStorer, h plumbing.Hash, dst string, perm os.FileMode) error {
	b, err := readBlob(st, h)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, perm)
}

func readBlob(st storer.EncodedObjectStorer, h plumbing.Hash) ([]byte, error) {
	blob, err := object.GetBlob(st, h)
	if err != nil {
		return nil, err
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// published reports whether rev-<hash> is what current points to.
func (s *Source) published(hash string) bool {
	target, err := os.Readlink(s.ManifestDir())
	if err != nil || target != revPrefix+hash {
		return false
	}
	_, err = os.Stat(filepath.Join(s.cfg.Dir, target))
	return err == nil
}

// readPublished reads the revision a previous run published.
func (s *Source) readPublished() (Revision, bool) {
	b, err := os.ReadFile(filepath.Join(s.ManifestDir(), revisionFile))
	if err != nil {
		return Revision{}, false
	}
	var rev Revision
	if json.Unmarshal(b, &rev) != nil || !s.published(rev.Hash) {
		return Revision{}, false
	}
	return rev, true
}

// redact drops a password from a URL before it goes into an error.
func redact(u string) string {
	ep, err := transport.NewEndpoint(u)
	if err != nil || ep.Password == "" {
		return u
	}
	ep.Password = "xxxxx"
	return ep.String()
}
