package kube_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/bench"
	"github.com/cuelet/cuelet/manifests/kube"
)

// The benchmarks below take manifests/bench's 1,000 units. Validate is
// the yardstick (`cuelet validate`, less the process start); Export is
// `cuelet export` (load and check, then convert), Convert only the part
// export adds; Import is `cuelet import` of the export, CUE included.

func units1000(b *testing.B) (string, []*manifests.Unit) {
	dir := b.TempDir()
	if err := bench.Write(dir, 1000); err != nil {
		b.Fatal(err)
	}
	return dir, load(b, dir)
}

func BenchmarkValidate1000(b *testing.B) {
	dir, _ := units1000(b)
	for b.Loop() {
		load(b, dir)
	}
}

func BenchmarkExport1000(b *testing.B) {
	dir, _ := units1000(b)
	for b.Loop() {
		if err := kube.Export(io.Discard, load(b, dir)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConvert1000(b *testing.B) {
	_, units := units1000(b)
	for b.Loop() {
		if err := kube.Export(io.Discard, units); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkImport1000(b *testing.B) {
	_, units := units1000(b)
	var buf bytes.Buffer
	if err := kube.Export(&buf, units); err != nil {
		b.Fatal(err)
	}
	in := []kube.Input{{Name: "bench.yaml", Data: buf.Bytes()}}
	for b.Loop() {
		res, err := kube.Import(in)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Units) != 1000 || len(res.Unsupported) != 0 {
			b.Fatalf("%d units, %d unsupported", len(res.Units), len(res.Unsupported))
		}
		for _, u := range res.Units {
			if _, err := u.CUE(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
