package manifests_test

import (
	"testing"

	"github.com/cuelet/cuelet/manifests"
)

func TestSelects(t *testing.T) {
	web := map[string]string{"app": "web", "tier": "front"}
	tests := []struct {
		name     string
		selector map[string]string
		labels   map[string]string
		want     bool
	}{
		{"a_selector_whose_labels_are_all_on_the_pod_picks_it", map[string]string{"app": "web"}, web, true},
		{"a_selector_equal_to_the_pod_s_labels_picks_it", map[string]string{"app": "web", "tier": "front"}, web, true},
		{"a_selector_with_a_label_the_pod_lacks_does_not_pick_it", map[string]string{"app": "web", "env": "prod"}, web, false},
		{"a_selector_with_another_value_does_not_pick_the_pod", map[string]string{"app": "api"}, web, false},
		{"a_selector_does_not_pick_a_pod_without_labels", map[string]string{"app": "web"}, nil, false},
		{"an_empty_value_matches_only_an_empty_value", map[string]string{"app": ""}, web, false},
		{"an_empty_selector_picks_nothing_like_a_service_with_fixed_endpoints", map[string]string{}, web, false},
		{"a_nil_selector_picks_nothing", nil, web, false},
		{"a_nil_selector_picks_no_pod_without_labels_either", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := manifests.Selects(tt.selector, tt.labels); got != tt.want {
				t.Errorf("Selects(%v, %v) = %v, want %v", tt.selector, tt.labels, got, tt.want)
			}
		})
	}
}
