package manifests

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/cuelet/cuelet/schema"
)

// Problem is one thing wrong with the input, positioned in the user's file.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

// String formats the problem as FILE:LINE:COL: PATH: MESSAGE, or as
// FILE:LINE:COL: MESSAGE when it is about no field (a syntax error).
func (p Problem) String() string {
	if p.Path == "" {
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Message)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", p.File, p.Line, p.Column, p.Path, p.Message)
}

// Unit is what is validated and applied as a whole: one .cue file, or the
// .cue files of one folder that share a package clause.
type Unit struct {
	// ID is a stable key for the unit, relative to the root it was found
	// under: the file's path, or "<dir>:<package>" for a package unit.
	ID string
	// Files are the unit's files as shown to the user (FILE of a Problem).
	Files []string
	// Source holds each file's content, keyed like Files, so the agent can
	// keep a unit's last known good version.
	Source map[string][]byte

	// Pods and Services are sorted by name, defaults applied. They are
	// empty when the unit has problems.
	Pods     []Pod
	Services []Service

	// Problems, when not empty, make the whole unit invalid.
	Problems []Problem

	// places tells where the unit's fields are written, for the problems
	// found after the schema: node and cross-unit rules.
	places *schema.Places
}

// Clone returns a copy of the unit that CheckCrossUnit can change without
// touching u. Pods, services and sources are shared: they are not changed.
func (u *Unit) Clone() *Unit {
	c := *u
	c.Problems = slices.Clone(u.Problems)
	c.Pods = slices.Clip(u.Pods)
	c.Services = slices.Clip(u.Services)
	return &c
}

// Valid reports whether the unit has no problems.
func (u *Unit) Valid() bool { return len(u.Problems) == 0 }

// Options are the node settings that validation depends on.
type Options struct {
	// AllowedHostPaths are the prefixes a hostPath volume may lie under;
	// with none, every hostPath is an error.
	AllowedHostPaths []string
	// PortalCIDR is the range a fixed portalIP must lie in.
	PortalCIDR netip.Prefix
	// DNSAddress is the node's DNS server (SPEC §10), which no fixed
	// portalIP may take and every pod uses; the zero Addr when DNS is off.
	DNSAddress netip.Addr
	// ClusterDomain names services in DNS, <service>.svc.<ClusterDomain>;
	// pods search svc.<ClusterDomain> first (default cluster.local).
	ClusterDomain string
	// NodeLabels are this node's labels (--node-labels and
	// kubernetes.io/hostname): a pod runs here only when its nodeSelector
	// matches them (TargetsNode). They make no unit invalid.
	NodeLabels map[string]string
}
