package cli

import (
	"context"
	"fmt"

	"github.com/cuelet/cuelet/manifests"
)

// loaded is what the commands that read the units once without podman
// (validate, export) work on.
type loaded struct {
	units []*manifests.Unit
	// problems are the units' problems; with --git-url their files are
	// paths in the repository. Never nil, so that JSON says [].
	problems []manifests.Problem
	opts     manifests.Options
}

// loadUnits is the start that validate and export share, so that CI gets
// the same answer from both: the node's rules, then the manifests from
// --git-url (a one-shot fetch, removed once read) or from paths (default
// dir), loaded and checked. plan and apply fetch through
// AgentFlags.oneShotOptions instead, because the agent loads the units
// itself.
func loadUnits(ctx context.Context, rules *NodeRules, git *GitFlags, dir string, paths []string) (loaded, error) {
	var l loaded
	opts, err := rules.Options()
	if err != nil {
		return l, err
	}
	gitDir, _, cleanup, err := git.fetchOnce(ctx)
	if err != nil {
		return l, err
	}
	defer cleanup()
	switch {
	case gitDir != "" && len(paths) > 0:
		return l, fmt.Errorf("--git-url takes no paths (--git-path picks a folder), got %q", paths)
	case gitDir != "":
		paths = []string{gitDir}
	case len(paths) == 0:
		paths = []string{dir}
	}
	if _, err := rules.DNSAddr(); err != nil {
		return l, err
	}
	// Load reads every file into the units, so the fetched folder can go
	// when it returns.
	units, err := manifests.Load(ctx, paths, opts)
	if err != nil {
		return l, err
	}
	git.repoPaths(gitDir, units)
	problems := []manifests.Problem{}
	for _, u := range units {
		problems = append(problems, u.Problems...)
	}
	return loaded{units: units, problems: problems, opts: opts}, nil
}
