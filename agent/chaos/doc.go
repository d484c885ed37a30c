// Package chaos is cuelet's fault campaign (issue 10, SPEC §3 and §9): the
// real binary on a real, private podman (agenttest, podmantest), with one
// fault injected again and again, and after every injection the node is
// checked for what the agent promises to keep:
//
//   - every pod replica of the manifests runs, once;
//   - no container that belongs to no wanted replica (orphan), none twice;
//   - a persistent volume keeps the data a pod wrote into it;
//   - the portals answer from the host (a service in front of a listener
//     of the test, and one in front of a pod);
//   - the portal allocations (state dir and status) are the ones from
//     before the fault.
//
// The faults: SIGKILL of the agent while it applies pods; the podman
// service killed and restarted, or frozen (SIGSTOP); the state dir on a
// tiny tmpfs that fills up; git-sync style symlink swaps; a stream of
// random and truncated .cue files; bad rollouts behind a service.
//
// `go test ./agent/chaos` (and so `make test`) runs the short form, a few
// injections of each fault. CUELET_CHAOS=full runs the long form that
// docs/performance.md reports (`make chaos`); CUELET_CHAOS_ROUNDS=n sets
// every fault's rounds to n, to fit a run to the time there is. Both print
// a table of faults injected, survived and lost at the end (go test -v
// shows it).
package chaos
