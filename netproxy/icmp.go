package netproxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// portUnreachable answers a UDP datagram that no endpoint can take (a
// service port without ready endpoints) with ICMP port unreachable, the
// way the kernel answers one to a closed port (SPEC §7): the client learns
// at once, as a TCP client does from a reset, instead of waiting for its
// timeout. The kernel cannot do it here: a listener is bound, so for the
// kernel the port is open.
//
// The message is sent from a raw ICMP socket, opened on first use and
// shared by every listener of the proxy. It receives nothing (an ICMP
// filter blocks every type), so the node's ICMP traffic is not copied to
// it. Like the kernel's own ICMP errors, the messages are rate limited.
type portUnreachable struct {
	once sync.Once
	pc   *ipv4.PacketConn
	err  error

	mu     sync.Mutex
	second int64 // the Unix second that sent counts
	sent   int
}

// unreachablePerSecond bounds the messages sent, as the kernel's
// net.ipv4.icmp_msgs_per_sec (default 1000) bounds its own.
const unreachablePerSecond = 1000

func (u *portUnreachable) open() error {
	u.once.Do(func() {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			u.err = fmt.Errorf("open ICMP socket: %w", err)
			return
		}
		pc := ipv4.NewPacketConn(c)
		var none ipv4.ICMPFilter
		none.SetAll(true)
		if err := pc.SetICMPFilter(&none); err != nil {
			c.Close()
			u.err = fmt.Errorf("filter ICMP socket: %w", err)
			return
		}
		u.pc = pc
	})
	return u.err
}

// allow counts a message against the rate limit.
func (u *portUnreachable) allow(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s := now.Unix(); s != u.second {
		u.second, u.sent = s, 0
	}
	if u.sent >= unreachablePerSecond {
		return false
	}
	u.sent++
	return true
}

// send tells client that local (the address and port it sent to) is
// unreachable; payloadLen is the length of the client's datagram.
// Nothing is sent about a datagram to or from an address that is not a
// single host (RFC 1122 3.2.2).
func (u *portUnreachable) send(client, local netip.AddrPort, payloadLen int) error {
	if !unicast(client.Addr()) || !unicast(local.Addr()) || !u.allow(time.Now()) {
		return nil
	}
	if err := u.open(); err != nil {
		return err
	}
	b, err := portUnreachableMessage(client, local, payloadLen)
	if err != nil {
		return err
	}
	// The message comes from the address the client sent to (IP_PKTINFO),
	// as a reply from the kernel would.
	_, err = u.pc.WriteTo(b, &ipv4.ControlMessage{Src: local.Addr().AsSlice()}, &net.IPAddr{IP: client.Addr().AsSlice()})
	return err
}

func unicast(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// portUnreachableMessage builds the ICMP message: type 3 code 3, quoting
// the IP header and the UDP header of the client's datagram, which is
// what the client's kernel matches the message to its socket by.
func portUnreachableMessage(client, local netip.AddrPort, payloadLen int) ([]byte, error) {
	const ipHeader, udpHeader = 20, 8
	q := make([]byte, ipHeader+udpHeader)
	q[0] = 0x45 // IPv4, a header of 5 words
	binary.BigEndian.PutUint16(q[2:], uint16(min(ipHeader+udpHeader+payloadLen, 0xffff)))
	q[8] = 64 // TTL
	q[9] = 17 // UDP
	src, dst := client.Addr().As4(), local.Addr().As4()
	copy(q[12:16], src[:])
	copy(q[16:20], dst[:])
	binary.BigEndian.PutUint16(q[10:], ipChecksum(q[:ipHeader]))
	binary.BigEndian.PutUint16(q[20:], client.Port())
	binary.BigEndian.PutUint16(q[22:], local.Port())
	binary.BigEndian.PutUint16(q[24:], uint16(min(udpHeader+payloadLen, 0xffff)))
	m := icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 3, Body: &icmp.DstUnreach{Data: q}}
	return m.Marshal(nil)
}

// ipChecksum is the Internet checksum (RFC 1071) of an IP header.
func ipChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
