// Command gen writes the units of the validate benchmark into a folder:
//
//	go run ./manifests/bench/gen -n 1000 -o /tmp/units
package main

import (
	"flag"
	"log"

	"github.com/cuelet/cuelet/manifests/bench"
)

func main() {
	n := flag.Int("n", 1000, "number of units")
	out := flag.String("o", "units", "output folder")
	flag.Parse()
	if err := bench.Write(*out, *n); err != nil {
		log.Fatal(err)
	}
}
