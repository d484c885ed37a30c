package schema

import "testing"

// BenchmarkNewChecker is what compiling the schema into a fresh context
// costs, paid once per worker and again each time a worker recycles its
// context (see NewChecker).
func BenchmarkNewChecker(b *testing.B) {
	for b.Loop() {
		if _, err := NewChecker(); err != nil {
			b.Fatal(err)
		}
	}
}
