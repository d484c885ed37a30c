package agent

import (
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cuelet/cuelet/manifests"
)

// InRepository names a unit ID or a file that the loader found in the
// folder gitPath of a git repository (--git-path, "" for its root) by its
// path in the repository: "web.cue" becomes "nodes/a/web.cue", the package
// unit ".:node" of the folder itself "nodes/a:node". That is what the
// user's repository shows and what validate and export print; the loader's
// own IDs start at the folder it reads, a temporary or published copy.
func InRepository(gitPath, p string) string {
	root := strings.Trim(path.Clean("/"+filepath.ToSlash(gitPath)), "/")
	if root == "" || p == "" {
		return p
	}
	if pkg, ok := strings.CutPrefix(p, ".:"); ok {
		return root + ":" + pkg
	}
	return path.Join(root, filepath.ToSlash(p))
}

// inRepository is rep as users see it with --git-path (NodeConfig.GitPath):
// its units, their files and the units of its pods, services and rollouts
// named by their path in the repository. It is a copy: rep, which the node
// keeps, and the loader's units keep the IDs the node works with (the pod
// label io.cuelet.unit and the last good copies stay what they were).
func (n *Node) inRepository(rep *Report) *Report {
	root := n.cfg.GitPath
	if root == "" {
		return rep
	}
	r := *rep
	r.Units = unitsInRepository(root, rep.Units)
	r.Pods = slices.Clone(rep.Pods)
	for i := range r.Pods {
		r.Pods[i].Unit = InRepository(root, r.Pods[i].Unit)
	}
	r.Services = slices.Clone(rep.Services)
	for i := range r.Services {
		r.Services[i].Unit = InRepository(root, r.Services[i].Unit)
	}
	r.Rollouts = slices.Clone(rep.Rollouts)
	for i := range r.Rollouts {
		r.Rollouts[i].Unit = InRepository(root, r.Rollouts[i].Unit)
	}
	return &r
}

// planInRepository does for a plan what inRepository does for a report.
func (n *Node) planInRepository(res *PlanResult) *PlanResult {
	root := n.cfg.GitPath
	if root == "" {
		return res
	}
	for i := range res.Actions {
		res.Actions[i].Unit = InRepository(root, res.Actions[i].Unit)
	}
	res.Invalid = unitsInRepository(root, res.Invalid)
	res.Problems = problemsInRepository(root, res.Problems)
	return res
}

func unitsInRepository(root string, units []UnitStatus) []UnitStatus {
	out := slices.Clone(units)
	for i := range out {
		out[i].ID = InRepository(root, out[i].ID)
		out[i].Problems = problemsInRepository(root, out[i].Problems)
	}
	return out
}

func problemsInRepository(root string, problems []manifests.Problem) []manifests.Problem {
	out := slices.Clone(problems)
	for i := range out {
		out[i].File = InRepository(root, out[i].File)
	}
	return out
}
