package portal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// addrRange is the set of allocatable addresses of an IPv4 prefix, as
// offsets from the network address.
type addrRange struct {
	prefix netip.Prefix // masked; invalid when the range is unusable
	err    error        // why the range is unusable
	// first and last allocatable offsets.
	first, last uint32
	// dynamicStart is the offset where dynamic allocation starts; offsets
	// below it are used only once the upper part is full.
	dynamicStart uint32
	// reserved addresses are never allocated, fixed or dynamic.
	reserved []netip.Addr
}

func newRange(p netip.Prefix) addrRange {
	switch {
	case !p.IsValid():
		return addrRange{err: errors.New("no portal range configured")}
	case !p.Addr().Is4():
		return addrRange{err: fmt.Errorf("portal range %s is not IPv4", p)}
	}
	r := addrRange{prefix: p.Masked()}
	size := uint64(1) << (32 - p.Bits())
	if size <= 2 {
		// /31 and /32 have no network or broadcast address (RFC 3021).
		r.first, r.last = 0, uint32(size-1)
	} else {
		r.first, r.last = 1, uint32(size-2)
	}
	r.dynamicStart = r.first
	// Kubernetes' split (KEP-3070): the lowest min(max(16, size/16), 256)
	// addresses are kept for fixed addresses as long as possible. Small
	// ranges are not split: the lower band would be most of the range.
	if size >= 64 {
		r.dynamicStart = uint32(min(max(16, size/16), 256))
	}
	return r
}

func (r addrRange) base() uint32 {
	b := r.prefix.Addr().As4()
	return binary.BigEndian.Uint32(b[:])
}

func (r addrRange) addr(off uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], r.base()+off)
	return netip.AddrFrom4(b)
}

// whyNot says why a cannot be allocated from r, or returns nil.
func (r addrRange) whyNot(a netip.Addr) error {
	if r.err != nil {
		return r.err
	}
	if !a.Is4() || !r.prefix.Contains(a) {
		return fmt.Errorf("is outside the portal range %s", r.prefix)
	}
	b := a.As4()
	off := binary.BigEndian.Uint32(b[:]) - r.base()
	switch {
	case off < r.first:
		return fmt.Errorf("is the network address of the portal range %s", r.prefix)
	case off > r.last:
		return fmt.Errorf("is the broadcast address of the portal range %s", r.prefix)
	case slices.Contains(r.reserved, a):
		return errors.New("is reserved for the node's DNS server (--dns-address)")
	}
	return nil
}

func (r addrRange) contains(a netip.Addr) bool { return r.whyNot(a) == nil }

// iter returns a function yielding the free addresses in allocation
// order: the upper part of the range, then the lower band.
func (r addrRange) iter(taken func(netip.Addr) bool) func() (netip.Addr, bool) {
	if r.err != nil {
		return func() (netip.Addr, bool) { return netip.Addr{}, false }
	}
	off, end := uint64(r.dynamicStart), uint64(r.last)+1
	lowerLeft := r.dynamicStart > r.first
	return func() (netip.Addr, bool) {
		for {
			if off >= end {
				if !lowerLeft {
					return netip.Addr{}, false
				}
				lowerLeft = false
				off, end = uint64(r.first), uint64(r.dynamicStart)
				continue
			}
			a := r.addr(uint32(off))
			off++
			if !taken(a) && !slices.Contains(r.reserved, a) {
				return a, true
			}
		}
	}
}
