package kernel

import "errors"

// ErrNotIPv4 means an endpoint is not an IPv4 address: the data path, like
// the portal range, is IPv4 only. The service's other endpoints are served.
var ErrNotIPv4 = errors.New("not an IPv4 address")
