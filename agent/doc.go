// Package agent is cuelet's long-running node agent: it turns every trigger
// (manifest changes, podman events, a resync ticker, SIGHUP) into one
// level-triggered sync of the whole node, and reports what it did to
// systemd, to `cuelet status` and to Prometheus.
package agent
