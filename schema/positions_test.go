package schema_test

import (
	"sync"
	"testing"

	"github.com/cuelet/cuelet/schema"
)

// A valid unit's Places index its files only when first asked, possibly
// from several goroutines at once (go test -race): they must still point
// where the user wrote each field.
func TestPlacesOfAValidUnitPointAtTheFieldsAsWritten(t *testing.T) {
	const src = `pods: web: {
	replicas: 2
	containers: app: {
		image: "busybox"
		ports: [{name: "http", containerPort: 80}]
	}
}
`
	c, err := schema.NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	res := c.Check([]schema.File{{Name: "t.cue", Data: []byte(src)}})
	if len(res.Issues) > 0 {
		t.Fatalf("issues in a valid unit: %v", res.Issues)
	}
	tests := []struct {
		name   string
		path   []string
		label  bool
		wantAt string
	}{
		{"a_field_at_its_value", []string{"pods", "web", "replicas"}, false, "t.cue:2:12"},
		{"a_field_at_its_label", []string{"pods", "web", "replicas"}, true, "t.cue:2:2"},
		{"a_list_element", []string{"pods", "web", "containers", "app", "ports", "0", "containerPort"}, false, "t.cue:5:41"},
		{"a_default_at_the_nearest_field_written", []string{"pods", "web", "restartPolicy"}, false, "t.cue:1:7"},
	}
	var wg sync.WaitGroup
	for _, tt := range tests {
		wg.Go(func() {
			var got string
			if tt.label {
				got = res.Places.Label(tt.path...).String()
			} else {
				got = res.Places.Value(tt.path...).String()
			}
			if got != tt.wantAt {
				t.Errorf("%s: at %s, want %s", tt.name, got, tt.wantAt)
			}
		})
	}
	wg.Wait()
}
