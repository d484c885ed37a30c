package bench_test

import (
	"context"
	"testing"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/bench"
)

// BenchmarkValidate1000 loads and checks the benchmark's 1,000 units, as
// `cuelet validate` does, without the process start.
func BenchmarkValidate1000(b *testing.B) {
	dir := b.TempDir()
	if err := bench.Write(dir, 1000); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		units, err := manifests.Load(ctx, []string{dir}, manifests.Options{})
		if err != nil {
			b.Fatal(err)
		}
		for _, u := range units {
			if !u.Valid() {
				b.Fatalf("unit %s: %v", u.ID, u.Problems)
			}
		}
	}
}
