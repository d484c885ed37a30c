// Package agent is cuelet's long-running node agent: it turns every trigger
// (manifest changes, podman events, a resync ticker, SIGHUP) into one
// level-triggered sync of the whole node, and reports what it did to
// systemd, to `cuelet status` and to Prometheus.
//
// Run, Apply and Plan are where the parts are made from the parsed flags
// (Options): the state lock, the portal programming, the proxy, the podman
// client, the Node and the Agent's loops. The command line only parses.
package agent
