package cli

// The test binary gets a fixed version, as `make build` gives the real one
// with -ldflags -X, so that the scripts can compare `cuelet version`'s
// output whole.
func init() { version = "v0.0.0-test" }
