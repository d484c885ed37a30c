package podman

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containers/podman/v4/pkg/errorhandling"
)

func TestIsNotFound(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"404", &errorhandling.ErrorModel{ResponseCode: 404, Because: "no such container"}, true},
		{"removed_between_lookup_and_inspect", fmt.Errorf("inspect: %w", &errorhandling.ErrorModel{
			ResponseCode: 500, Because: "no such container",
			Message: "container 3a13 does not exist in database: no such container",
		}), true},
		{"other_500", &errorhandling.ErrorModel{ResponseCode: 500, Because: "database is locked"}, false},
		{"not_a_podman_error", errors.New("no such container"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isNotFound(tc.err); got != tc.want {
				t.Fatalf("isNotFound(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
