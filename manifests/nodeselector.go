package manifests

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// HostnameLabel is the node label that carries the node's name, as in
// Kubernetes; a pod pins itself to one node with
// nodeSelector: "kubernetes.io/hostname": "<node>".
const HostnameLabel = "kubernetes.io/hostname"

// TargetsNode reports whether a pod with this nodeSelector runs on a node
// with these labels: every entry of the selector is among the node's
// labels, with the same value (SPEC §11).
//
// Unlike Selects, an empty selector matches every node: a pod that says
// nothing about nodes runs everywhere, as in Kubernetes.
func TargetsNode(nodeSelector, nodeLabels map[string]string) bool {
	for k, v := range nodeSelector {
		if l, ok := nodeLabels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

// Kubernetes' label syntax: a name part, optionally prefixed by a DNS
// subdomain and a slash; values are empty or a name part.
var (
	labelName      = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	labelSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// LabelKeyProblem says what is wrong with a label key, or "" when it is a
// valid Kubernetes label key ([prefix/]name).
func LabelKeyProblem(key string) string {
	name := key
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		prefix := key[:i]
		name = key[i+1:]
		if len(prefix) > 253 || !labelSubdomain.MatchString(prefix) {
			return fmt.Sprintf("label key %q: the prefix before / must be a DNS subdomain (lower case letters, digits, '-' and '.', at most 253 characters)", key)
		}
	}
	if len(name) > 63 || !labelName.MatchString(name) {
		return fmt.Sprintf("label key %q: the name must be 1 to 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", key)
	}
	return ""
}

// LabelValueProblem says what is wrong with a label value, or "" when it
// is a valid Kubernetes label value (empty, or like a key's name part).
func LabelValueProblem(value string) string {
	if value == "" {
		return ""
	}
	if len(value) > 63 || !labelName.MatchString(value) {
		return fmt.Sprintf("label value %q: must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", value)
	}
	return ""
}

// selectorProblems checks the syntax of nodeSelector entries: a key or
// value no node label can have is a mistake, not a pod that runs nowhere.
func selectorProblems(u *Unit) []Problem {
	var out []Problem
	for _, p := range u.Pods {
		for _, k := range slices.Sorted(maps.Keys(p.NodeSelector)) {
			path := []string{"pods", p.Name, "nodeSelector", k}
			if msg := LabelKeyProblem(k); msg != "" {
				out = append(out, u.problem(path, false, msg))
			}
			if msg := LabelValueProblem(p.NodeSelector[k]); msg != "" {
				out = append(out, u.problem(path, true, msg))
			}
		}
	}
	return out
}
