package dns

import (
	"encoding/binary"
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
	// plain holds, by name in lower-case wire format, what lookup answers
	// for the A and AAAA queries of each service name: answerPlain's
	// table, made from lookup so that both give one answer.
	plain map[string]plainName
	// soaWire is soa() packed, for answerPlain's NODATA.
	soaWire []byte
}

// plainName is what a service name answers to A and AAAA.
type plainName struct {
	a          [4]byte // the A record's address, when hasA
	hasA       bool    // A: one A record, nothing else
	aaaaNoData bool    // AAAA: no record (NODATA), the SOA in authority
}

func newZone(domain string, services []Service) *zone {
	z := &zone{
		suffix:   "svc." + mdns.Fqdn(strings.ToLower(domain)),
		services: make(map[string]*Service, len(services)),
		plain:    make(map[string]plainName, 2*len(services)),
	}
	for i := range services {
		s := services[i]
		z.services[strings.ToLower(s.Name)] = &s
	}
	soa := make([]byte, mdns.MaxMsgSize)
	if n, err := mdns.PackRR(z.soa(), soa, 0, nil, false); err == nil {
		z.soaWire = soa[:n:n]
	}
	var wire [256]byte
	for _, s := range z.services {
		for _, name := range []string{z.fqdn(s), mdns.Fqdn(strings.ToLower(s.Name))} {
			var p plainName
			p.a, p.hasA = onlyA(z.lookup(mdns.Question{Name: name, Qtype: mdns.TypeA, Qclass: mdns.ClassINET}))
			v, ans, extra := z.lookup(mdns.Question{Name: name, Qtype: mdns.TypeAAAA, Qclass: mdns.ClassINET})
			p.aaaaNoData = v == answer && len(ans) == 0 && len(extra) == 0 && z.soaWire != nil
			n, err := mdns.PackDomainName(name, wire[:], 0, nil, false)
			if err != nil || !p.hasA && !p.aaaaNoData {
				continue
			}
			z.plain[string(wire[:n])] = p
		}
	}
	return z
}

// onlyA is the address of an answer made of one IPv4 A record alone.
func onlyA(v verdict, ans, extra []mdns.RR) ([4]byte, bool) {
	if v != answer || len(ans) != 1 || len(extra) != 0 {
		return [4]byte{}, false
	}
	a, ok := ans[0].(*mdns.A)
	if !ok {
		return [4]byte{}, false
	}
	ip := a.A.To4()
	if ip == nil {
		return [4]byte{}, false
	}
	return [4]byte(ip), true
}

// answerPlain is the wire answer to req, appended to out, when req is the
// plainest query for a service name, of type A or AAAA (what a resolver
// in a pod asks, most often both at once): a query (not a response),
// opcode QUERY, one question of class IN, no other record (so no EDNS),
// the name without compression. ok is false for every other packet,
// which ServeDNS then answers. The answer is what ServeDNS gives for it:
// the question as asked, RD and CD copied, AA and RA set, and for A the
// address record, whose owner points at the question's name (so it keeps
// the client's spelling), for AAAA no record and the zone's SOA. It
// stays within 512 bytes, as ServeDNS's would without truncation.
func (z *zone) answerPlain(req, out []byte) (_ []byte, qtype uint16, res result, ok bool) {
	// ID, flags, QDCOUNT 1, ANCOUNT, NSCOUNT, ARCOUNT 0.
	if len(req) < headerLen+1+4 || req[2]&0xf8 != 0 || // QR 0, opcode 0
		req[4] != 0 || req[5] != 1 || req[6]|req[7]|req[8]|req[9]|req[10]|req[11] != 0 {
		return out, 0, 0, false
	}
	var name [255]byte
	off, n := headerLen, 0
	for {
		l := int(req[off])
		if l == 0 {
			name[n] = 0
			n++
			off++
			break
		}
		if l > 63 || off+1+l >= len(req) || n+1+l >= len(name) {
			return out, 0, 0, false // a pointer, a bad label, too long
		}
		name[n] = byte(l)
		for i, c := range req[off+1 : off+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name[n+1+i] = c
		}
		n += 1 + l
		off += 1 + l
	}
	if off+4 != len(req) || binary.BigEndian.Uint16(req[off+2:]) != mdns.ClassINET {
		return out, 0, 0, false
	}
	qtype = binary.BigEndian.Uint16(req[off:])
	p, found := z.plain[string(name[:n])]
	switch {
	case !found:
		return out, 0, 0, false
	case qtype == mdns.TypeA && p.hasA:
		res = resultAnswer
	case qtype == mdns.TypeAAAA && p.aaaaNoData && off+4+len(z.soaWire) <= mdns.MinMsgSize:
		res = resultNoData
	default:
		return out, 0, 0, false
	}
	out = append(out, req[0], req[1],
		0x84|req[2]&0x01, // QR, AA, the client's RD
		0x80|req[3]&0x10, // RA, the client's CD
		0, 1)
	if res == resultAnswer {
		out = append(out, 0, 1, 0, 0, 0, 0)
	} else {
		out = append(out, 0, 0, 0, 1, 0, 0)
	}
	out = append(out, req[headerLen:off+4]...)
	if res == resultNoData {
		return append(out, z.soaWire...), qtype, res, true
	}
	out = append(out, 0xc0, headerLen, // a pointer to the question's name
		byte(mdns.TypeA>>8), byte(mdns.TypeA), byte(mdns.ClassINET>>8), byte(mdns.ClassINET))
	out = binary.BigEndian.AppendUint32(out, TTL)
	out = append(out, 0, 4, p.a[0], p.a[1], p.a[2], p.a[3])
	return out, qtype, res, true
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
