// Package podmantest starts an isolated podman service for end-to-end
// tests: its own storage, run and temp dirs, socket, network bridge and
// subnet, with a busybox image built from the host's busybox, and tears it
// all down afterwards.
package podmantest
