// Package e2e holds the agent's end-to-end tests: the real cuelet binary
// runs `cuelet run` in the background against an isolated podman
// (agenttest), and the tests drop, edit and remove manifest files, signal
// and kill the agent, stop podman, and look at podman, the status socket,
// the metrics and the sd_notify messages. They need root and podman;
// without them they skip, unless CI is set.
package e2e
