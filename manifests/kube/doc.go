// Package kube converts cuelet units to Kubernetes objects and back, for
// `cuelet export` and `cuelet import` (SPEC §11).
package kube
