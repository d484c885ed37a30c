// Package testenv is what every test of the project uses to meet the
// machine and the clock: Require decides, in one place, whether a test
// that lacks root, podman or a command skips or fails, and Eventually is
// the one way a test waits for a condition. NewNetNS and InNS give the
// kernel tests (netproxy, netproxy/kernel) their network namespaces.
//
// It imports nothing of the project, so any test package may use it
// without a cycle (the netproxy package's own tests among them); it sits
// beside slotlock, the other piece of test machinery shared across the
// tree.
package testenv
