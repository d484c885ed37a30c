// Command gen writes the units of the validate benchmark into a folder:
//
//	go run ./bench/validate/gen -n 1000 -o /tmp/units
package main

import (
	"flag"
	"log"

	"github.com/cuelet/cuelet/bench/validate"
)

func main() {
	n := flag.Int("n", 1000, "number of units")
	out := flag.String("o", "units", "output folder")
	flag.Parse()
	if err := validate.Write(*out, *n); err != nil {
		log.Fatal(err)
	}
}
