package bench_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// BenchmarkPassOneChanged1000 is the agent's load of 1,000 units after one
// file changed: with the cache of units checked in earlier passes, as the
// agent runs it, and without (what every pass cost before the cache).
func BenchmarkPassOneChanged1000(b *testing.B) {
	dir := b.TempDir()
	if err := bench.Write(dir, 1000); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, cached := range []bool{true, false} {
		b.Run(fmt.Sprintf("cached=%v", cached), func(b *testing.B) {
			var c *manifests.Cache
			if cached {
				c = &manifests.Cache{}
				if _, err := c.LoadDir(ctx, dir, manifests.Options{}); err != nil {
					b.Fatal(err)
				}
			}
			name := filepath.Join(dir, "unit-0007.cue")
			orig, err := os.ReadFile(name)
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				// A comment changes the bytes, not the unit.
				if err := os.WriteFile(name, fmt.Appendf(slices.Clip(orig), "// edit %d\n", i), 0o644); err != nil {
					b.Fatal(err)
				}
				units, err := c.LoadDir(ctx, dir, manifests.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if len(units) != 1000 || !units[7].Valid() {
					b.Fatalf("%d units, unit 7: %v", len(units), units[7].Problems)
				}
			}
		})
	}
}
