// Package podman is cuelet's adapter to podman's REST API: it implements
// reconcile.Podman over the podman v4 bindings and hides their
// connection-in-context, so callers pass one context per call.
package podman
