package dns

import (
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// TTL of every local answer, SPEC §10: short, because a service's portal
// changes only when it is removed and added again, and a new service must
// not be hidden long by a cached NXDOMAIN.
const TTL = 5

// Service is what the server answers for one service.
type Service struct {
	Name  string
	Addr  netip.Addr // the portal
	Ports []Port
}

// Port is a service port; named ports get SRV records.
type Port struct {
	Name     string
	Protocol string // "TCP" | "UDP"
	Port     int
}

// zone is one immutable record set; the server swaps it whole.
type zone struct {
	suffix   string // "svc.<domain>." in lower case
	services map[string]*Service
}

func newZone(domain string, services []Service) *zone {
	z := &zone{suffix: "svc." + mdns.Fqdn(strings.ToLower(domain)), services: make(map[string]*Service, len(services))}
	for i := range services {
		s := services[i]
		z.services[strings.ToLower(s.Name)] = &s
	}
	return z
}

// verdict is what the zone says of a question.
type verdict int

const (
	forward  verdict = iota // not ours
	answer                  // records (possibly none: NOERROR, no data)
	nxdomain                // under svc.<domain>, and no such name
)

// lookup answers q from the zone. Names are compared in lower case and
// answered with the spelling of the question, as resolvers expect.
func (z *zone) lookup(q mdns.Question) (verdict, []mdns.RR, []mdns.RR) {
	name := strings.ToLower(q.Name)
	rel, under := strings.CutSuffix(name, "."+z.suffix)
	switch {
	case name == z.suffix:
		return answer, nil, nil // an empty non-terminal: the name exists
	case !under:
		// The bare <service> (a single label): answered when it is a
		// service, so that a client that does not use the search list
		// still finds it; every other name belongs to the world.
		label := strings.TrimSuffix(name, ".")
		if s, ok := z.services[label]; ok && label != "" && !strings.Contains(label, ".") {
			ans, extra := z.serviceRecords(q, s)
			return answer, ans, extra
		}
		return forward, nil, nil
	}
	labels := strings.Split(rel, ".")
	switch len(labels) {
	case 1:
		s, ok := z.services[labels[0]]
		if !ok {
			return nxdomain, nil, nil
		}
		ans, extra := z.serviceRecords(q, s)
		return answer, ans, extra
	case 3:
		// _<port>._<proto>.<service>: Kubernetes' form of a named port.
		s, ok := z.services[labels[2]]
		if !ok || !strings.HasPrefix(labels[0], "_") || !strings.HasPrefix(labels[1], "_") {
			return nxdomain, nil, nil
		}
		for _, p := range s.Ports {
			if p.Name == "" || "_"+p.Name != labels[0] || "_"+strings.ToLower(p.Protocol) != labels[1] {
				continue
			}
			if q.Qtype != mdns.TypeSRV && q.Qtype != mdns.TypeANY {
				return answer, nil, nil
			}
			target := z.fqdn(s)
			return answer, []mdns.RR{z.srv(q.Name, target, p)}, []mdns.RR{z.a(target, s.Addr)}
		}
		return nxdomain, nil, nil
	case 2:
		// _<proto>.<service> exists as an empty non-terminal when the
		// service has a named port of that protocol.
		if s, ok := z.services[labels[1]]; ok {
			for _, p := range s.Ports {
				if p.Name != "" && "_"+strings.ToLower(p.Protocol) == labels[0] {
					return answer, nil, nil
				}
			}
		}
	}
	return nxdomain, nil, nil
}

// serviceRecords are the records of a service's own name: its A record,
// and for SRV every named port (as CoreDNS's kubernetes plugin answers),
// each pointing at the full name, whose A record goes in extra.
func (z *zone) serviceRecords(q mdns.Question, s *Service) (ans, extra []mdns.RR) {
	if q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY {
		ans = append(ans, z.a(q.Name, s.Addr))
	}
	if q.Qtype == mdns.TypeSRV || q.Qtype == mdns.TypeANY {
		target := z.fqdn(s)
		for _, p := range s.Ports {
			if p.Name != "" {
				ans = append(ans, z.srv(q.Name, target, p))
			}
		}
		if len(ans) > 0 {
			extra = append(extra, z.a(target, s.Addr))
		}
	}
	return ans, extra
}

// fqdn is the full name of a service, <service>.svc.<domain>.
func (z *zone) fqdn(s *Service) string { return strings.ToLower(s.Name) + "." + z.suffix }

func (z *zone) a(owner string, addr netip.Addr) mdns.RR {
	return &mdns.A{
		Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: TTL},
		A:   addr.AsSlice(),
	}
}

func (z *zone) srv(owner, target string, p Port) mdns.RR {
	return &mdns.SRV{
		Hdr:      mdns.RR_Header{Name: owner, Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: TTL},
		Priority: 0, Weight: 100, Port: uint16(p.Port), Target: target,
	}
}

// soa goes in the authority section of negative answers, so that resolvers
// cache NXDOMAIN and NODATA for TTL seconds only (RFC 2308).
func (z *zone) soa() mdns.RR {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: z.suffix, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: TTL},
		Ns:      "ns.dns." + z.suffix,
		Mbox:    "hostmaster." + z.suffix,
		Serial:  1,
		Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: TTL,
	}
}
