package reconcile

import "errors"

// Sentinel errors. Callers test them with errors.Is; the messages that wrap
// them name the pod or the operation.
var (
	// ErrPodmanUnavailable means podman's API socket did not answer. The
	// adapter wraps it with the URL and a hint (see podman.UnavailableError).
	ErrPodmanUnavailable = errors.New("podman unavailable")

	// ErrNoUnits is the guard of SPEC §3.3: the manifest directory holds no
	// unit while managed pods exist, and deleting them was not allowed.
	ErrNoUnits = errors.New("no unit found while managed pods exist; nothing deleted (use --allow-empty to delete them)")

	// ErrConflict means a pod of a name cuelet manages exists without the
	// label io.cuelet.managed=true (cuelet never touches it), or is
	// managed by another node's agent on the same podman, or two replicas
	// of the desired state have the same name. The last two are a
	// conflictError that says which.
	ErrConflict = errors.New("not managed by cuelet")

	// ErrImageNotPresent means a container's image is missing and its
	// imagePullPolicy is Never.
	ErrImageNotPresent = errors.New("image not present and imagePullPolicy is Never")

	// ErrHostPathNotAllowed means a hostPath volume lies outside every prefix
	// given by --allowed-host-paths.
	ErrHostPathNotAllowed = errors.New("hostPath is not under an allowed prefix (--allowed-host-paths)")

	// ErrNotReady means a recreated replica did not become running (and
	// ready) in time, so the rollout of its pod stopped there.
	ErrNotReady = errors.New("replica did not become ready")
)

// conflictError is a conflict whose plan line gives its own reason (a
// name defined twice, a pod of another node): the reason is the message,
// and errors.Is(err, ErrConflict) holds.
type conflictError struct{ reason string }

func (e conflictError) Error() string        { return e.reason }
func (e conflictError) Is(target error) bool { return target == ErrConflict }
