package cli

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestNodeRules_labels_are_the_flags_plus_the_hostname_label(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		hostname string
		hostErr  error
		want     map[string]string
		err      string // part of the error; "" for none
	}{
		{
			name: "the_host_name_in_lower_case_is_the_default_node_name", hostname: "Edge-1.Example",
			want: map[string]string{"kubernetes.io/hostname": "edge-1.example"},
		},
		{
			name: "node_name_wins_over_the_host_name", args: []string{"--node-name", "edge-2"}, hostname: "edge-1",
			want: map[string]string{"kubernetes.io/hostname": "edge-2"},
		},
		{
			name: "node_labels_join_the_hostname_label", args: []string{"--node-labels", "zone=west,disk=", "--node-labels", "rack=r1"}, hostname: "edge-1",
			want: map[string]string{"kubernetes.io/hostname": "edge-1", "zone": "west", "disk": "", "rack": "r1"},
		},
		{
			name: "a_host_name_that_is_no_label_value_asks_for_node_name", hostname: strings.Repeat("h", 64),
			err: "give --node-name",
		},
		{
			name: "no_host_name_says_so", hostErr: errors.New("uname failed"),
			err: "--node-name not given and no host name: uname failed",
		},
		{
			name: "a_given_node_name_needs_no_host_name", args: []string{"--node-name", "edge-3"}, hostErr: errors.New("uname failed"),
			want: map[string]string{"kubernetes.io/hostname": "edge-3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n NodeRules
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			n.Register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			n.hostname = func() (string, error) { return tt.hostname, tt.hostErr }
			opts, err := n.Options()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(opts.NodeLabels, tt.want) {
				t.Errorf("labels %v, want %v", opts.NodeLabels, tt.want)
			}
		})
	}
}
