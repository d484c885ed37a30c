package manifests_test

import (
	"strings"
	"testing"

	"github.com/cuelet/cuelet/manifests"
)

func TestTargetsNode(t *testing.T) {
	node := map[string]string{"kubernetes.io/hostname": "edge-1", "zone": "west", "disk": ""}
	tests := []struct {
		name     string
		selector map[string]string
		labels   map[string]string
		want     bool
	}{
		{name: "a_pod_without_a_node_selector_runs_on_every_node", selector: nil, labels: node, want: true},
		{name: "an_empty_node_selector_runs_on_every_node_unlike_an_empty_service_selector", selector: map[string]string{}, labels: node, want: true},
		{name: "an_empty_node_selector_runs_even_on_a_node_without_labels", selector: map[string]string{}, labels: nil, want: true},
		{name: "a_selector_naming_this_host_targets_it", selector: map[string]string{"kubernetes.io/hostname": "edge-1"}, labels: node, want: true},
		{name: "a_selector_naming_another_host_does_not", selector: map[string]string{"kubernetes.io/hostname": "edge-2"}, labels: node, want: false},
		{name: "every_entry_must_match", selector: map[string]string{"kubernetes.io/hostname": "edge-1", "zone": "east"}, labels: node, want: false},
		{name: "all_entries_matching_targets_the_node", selector: map[string]string{"kubernetes.io/hostname": "edge-1", "zone": "west"}, labels: node, want: true},
		{name: "a_label_the_node_lacks_does_not_match", selector: map[string]string{"gpu": "yes"}, labels: node, want: false},
		{name: "an_empty_value_matches_a_label_with_an_empty_value", selector: map[string]string{"disk": ""}, labels: node, want: true},
		{name: "an_empty_value_does_not_match_a_missing_label", selector: map[string]string{"gpu": ""}, labels: node, want: false},
		{name: "a_node_without_labels_runs_no_pod_with_a_selector", selector: map[string]string{"zone": "west"}, labels: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := manifests.TargetsNode(tt.selector, tt.labels); got != tt.want {
				t.Errorf("TargetsNode(%v, %v) = %v, want %v", tt.selector, tt.labels, got, tt.want)
			}
		})
	}
}

func TestLabelSyntax(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		value   string
		problem string // part of the message; "" for none
	}{
		{name: "a_plain_key_and_value_are_fine", key: "zone", value: "west"},
		{name: "a_prefixed_key_is_fine", key: "kubernetes.io/hostname", value: "edge-1.example"},
		{name: "an_empty_value_is_fine", key: "disk", value: ""},
		{name: "dots_dashes_and_underscores_inside_are_fine", key: "my_label.v-2", value: "A_b.c-D"},
		{name: "an_empty_key_is_refused", key: "", value: "x", problem: `label key ""`},
		{name: "a_key_ending_in_a_dash_is_refused", key: "zone-", value: "x", problem: "the name must be"},
		{name: "an_upper_case_prefix_is_refused", key: "Example.com/zone", value: "x", problem: "prefix before /"},
		{name: "an_empty_prefix_is_refused", key: "/zone", value: "x", problem: "prefix before /"},
		{name: "a_name_of_64_characters_is_refused", key: strings.Repeat("a", 64), value: "x", problem: "1 to 63"},
		{name: "a_value_with_a_space_is_refused", key: "zone", value: "west 1", problem: `label value "west 1"`},
		{name: "a_value_of_64_characters_is_refused", key: "zone", value: strings.Repeat("a", 64), problem: "at most 63"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := manifests.LabelKeyProblem(tt.key) + manifests.LabelValueProblem(tt.value)
			if tt.problem == "" && got != "" || !strings.Contains(got, tt.problem) {
				t.Errorf("key %q value %q: problem %q, want one containing %q", tt.key, tt.value, got, tt.problem)
			}
		})
	}
}
