package netproxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Session affinity values of Service.SessionAffinity.
const (
	AffinityNone     = "None"
	AffinityClientIP = "ClientIP"
)

// DefaultAffinityTimeout is the ClientIP stickiness when
// Service.AffinityTimeout is zero (Kubernetes' 10800 s).
const DefaultAffinityTimeout = 10800 * time.Second

// Service is one service as the proxy needs it: the caller has already
// resolved ready endpoints (pod IP and target port of each ready replica,
// or the fixed endpoints of the manifest).
type Service struct {
	Name            string
	PortalIP        netip.Addr    // IPv4, usually from the portal allocator
	SessionAffinity string        // AffinityNone (also "") or AffinityClientIP
	AffinityTimeout time.Duration // ClientIP stickiness; 0 means DefaultAffinityTimeout
	Ports           []Port
}

// Port is one port of a Service. A service port is identified by the
// service name and its label (Name, or the port number when Name is
// empty) plus Protocol: changing anything else (port numbers, endpoints)
// keeps its counters and, where the address stays the same, its listener.
type Port struct {
	Name         string
	Protocol     string // "TCP" (also "") or "UDP"
	Port         int    // portal port, 1..65535
	ExternalPort int    // 0 = none; else also listen on ExternalAddress:ExternalPort
	// Endpoints are the ready endpoints in a stable order (round robin
	// follows it). Endpoints that are not in the list any more get no new
	// connections, and their open connections are closed.
	Endpoints []netip.AddrPort
}

// label is the value of the metrics' port label and the name used in logs.
func (p Port) label() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Port)
}

func (p Port) protocol() string {
	if p.Protocol == "" {
		return "TCP"
	}
	return p.Protocol
}

func (s Service) affinityTimeout() time.Duration {
	if s.SessionAffinity != AffinityClientIP {
		return 0
	}
	if s.AffinityTimeout <= 0 {
		return DefaultAffinityTimeout
	}
	return s.AffinityTimeout
}

func (s Service) validate() error {
	if s.Name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidService)
	}
	if !s.PortalIP.IsValid() {
		return fmt.Errorf("%w: no portal IP", ErrInvalidService)
	}
	switch s.SessionAffinity {
	case "", AffinityNone, AffinityClientIP:
	default:
		return fmt.Errorf("%w: unknown session affinity %q", ErrInvalidService, s.SessionAffinity)
	}
	seen := map[string]bool{}
	for _, p := range s.Ports {
		switch p.protocol() {
		case "TCP", "UDP":
		default:
			return fmt.Errorf("%w: port %s: unknown protocol %q", ErrInvalidService, p.label(), p.Protocol)
		}
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("%w: port %s: port %d out of range", ErrInvalidService, p.label(), p.Port)
		}
		if p.ExternalPort < 0 || p.ExternalPort > 65535 {
			return fmt.Errorf("%w: port %s: external port %d out of range", ErrInvalidService, p.label(), p.ExternalPort)
		}
		key := p.label() + "/" + p.protocol()
		if seen[key] {
			return fmt.Errorf("%w: port %s/%s listed twice", ErrInvalidService, p.label(), p.protocol())
		}
		seen[key] = true
		for _, ep := range p.Endpoints {
			if !ep.IsValid() || ep.Port() == 0 {
				return fmt.Errorf("%w: port %s: invalid endpoint %s", ErrInvalidService, p.label(), ep)
			}
		}
	}
	return nil
}
