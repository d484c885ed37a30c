// Package probe runs a container's readinessProbe (SPEC §7: exec,
// tcpSocket or httpGet, with initialDelaySeconds, periodSeconds,
// timeoutSeconds, successThreshold and failureThreshold) and reports
// ready/not-ready transitions, so that the caller can put the replica into
// or take it out of its services' rotation.
//
// A [Worker] probes one container: create it with [New], run it with
// [Worker.Run] under the agent's errgroup (one per container with a
// probe, stopped with its context when the container goes), and read the
// state with [Worker.Ready] or get each transition through
// [Config.OnChange]. Ports are numbers: the caller resolves named ports
// against the container's ports. exec probes go through the one-method
// [Execer] interface, which the podman adapter implements.
//
// Semantics follow the kubelet's: a container is not ready until
// SuccessThreshold probes in a row succeed, and ready until
// FailureThreshold probes in a row fail. Probes start after InitialDelay
// and then run on a fixed-rate ticker every Period; each is bounded by
// Timeout. So a replica that starts failing leaves the rotation within
// FailureThreshold×Period + Timeout, which with the default timeout of
// 1 s is SPEC §7's "failureThreshold × periodSeconds + 1 s". A probe that
// outlasts the period makes the ticker drop ticks; it never queues them.
//
// httpGet succeeds with a status from 200 to 399 (redirects are not
// followed; a 3xx counts as success, as in Kubernetes); tcpSocket when a
// connection opens; exec when the command exits 0.
package probe
