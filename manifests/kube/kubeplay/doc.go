// Package kubeplay holds the end-to-end test that podman's own kube play
// runs what cuelet export writes; it is apart from package kube so that the
// fuzz and unit builds of kube stay free of the podman bindings.
package kubeplay
