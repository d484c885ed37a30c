// Package svcenv renders the Kubernetes-format service variables
// (REDIS_PRIMARY_SERVICE_HOST, REDIS_PRIMARY_PORT_6379_TCP, …) exactly as
// the kubelet does, for every container's environment and for a replica's
// services.env file.
package svcenv
