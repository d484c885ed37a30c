package netproxy

import "errors"

var (
	// ErrClosed is returned for every service by Update once Run has
	// returned.
	ErrClosed = errors.New("proxy is closed")
	// ErrNoEndpoints means a service port has no ready endpoint; its TCP
	// clients are reset at once.
	ErrNoEndpoints = errors.New("no ready endpoints")
	// ErrListenerConflict means two service ports want the same listening
	// address (a duplicate external port or portal that validation should
	// have caught).
	ErrListenerConflict = errors.New("address is already used by another service port")
	// ErrInvalidService means a Service value breaks a rule of the Service
	// type (see its documentation).
	ErrInvalidService = errors.New("invalid service")
)
