// Package agenttest runs the real cuelet binary as a node agent in the
// background, against an isolated podman service (podmantest), for
// end-to-end tests and benchmarks: each node has its own manifest, state
// and run dirs, portal range, portal link, nftables table and metrics
// port, and all of it is removed when the test ends.
package agenttest
