package cli

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/cuelet/cuelet/manifests"
)

// nodeName is --node-name: the value of the node's kubernetes.io/hostname
// label. Empty until set: the host name then, looked up when used.
type nodeName struct {
	name string
	set  bool
}

func (n *nodeName) String() string { return n.name }

func (n *nodeName) Type() string { return "name" }

func (n *nodeName) Set(s string) error {
	if s == "" {
		return errors.New("a node name cannot be empty")
	}
	if msg := manifests.LabelValueProblem(s); msg != "" {
		return fmt.Errorf("the node name is the value of the %s label: %s", manifests.HostnameLabel, msg)
	}
	n.name, n.set = s, true
	return nil
}

// resolve is the node name: the flag's, else the host name in lower case
// (as the kubelet does).
func (n *nodeName) resolve(hostname func() (string, error)) (string, error) {
	if n.set {
		return n.name, nil
	}
	h, err := hostname()
	if err != nil {
		return "", fmt.Errorf("--node-name not given and no host name: %w", err)
	}
	h = strings.ToLower(h)
	if h == "" || manifests.LabelValueProblem(h) != "" {
		return "", fmt.Errorf("--node-name not given and the host name %q is not a valid label value; give --node-name", h)
	}
	return h, nil
}

// nodeLabels is --node-labels: k=v pairs, comma-separated, repeatable,
// each checked against Kubernetes' label syntax.
type nodeLabels map[string]string

func (l nodeLabels) String() string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		out = append(out, k+"="+l[k])
	}
	return strings.Join(out, ",")
}

func (l nodeLabels) Type() string { return "labels" }

func (l nodeLabels) Set(s string) error {
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return fmt.Errorf("%q: want KEY=VALUE", e)
		}
		if msg := manifests.LabelKeyProblem(k); msg != "" {
			return errors.New(msg)
		}
		if msg := manifests.LabelValueProblem(v); msg != "" {
			return errors.New(msg)
		}
		if k == manifests.HostnameLabel {
			return fmt.Errorf("%s is the node name: set it with --node-name", k)
		}
		l[k] = v
	}
	return nil
}

// labels are the node's labels: --node-labels and the hostname label.
func (n *NodeRules) labels() (map[string]string, error) {
	hostname := n.hostname
	if hostname == nil {
		hostname = os.Hostname
	}
	name, err := n.NodeName.resolve(hostname)
	if err != nil {
		return nil, err
	}
	out := maps.Clone(map[string]string(n.NodeLabels))
	if out == nil {
		out = map[string]string{}
	}
	out[manifests.HostnameLabel] = name
	return out, nil
}

// nodeGiven reports whether the node was named on the command line, by
// --node-name or --node-labels: export filters pods only then.
func (n *NodeRules) nodeGiven() bool { return n.NodeName.set || len(n.NodeLabels) > 0 }
