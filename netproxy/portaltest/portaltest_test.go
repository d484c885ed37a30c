package portaltest

import (
	"testing"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

func TestClaim_holds_a_slot_until_the_test_ends(t *testing.T) {
	testenv.RequireRoot(t)
	held := map[string]bool{}
	for range 3 {
		s := Claim(t)
		if held[s.CIDR.String()] || held[s.Link] || held[s.Table] {
			t.Fatalf("slot %+v shares a range, link or table with one still held", s)
		}
		held[s.CIDR.String()], held[s.Link], held[s.Table] = true, true, true
		if !s.CIDR.Addr().Is4() || s.CIDR.Bits() != 24 {
			t.Fatalf("slot %+v: want an IPv4 /24", s)
		}
	}
	// A slot released at the end of a subtest can be claimed again.
	var first Slot
	t.Run("a", func(t *testing.T) { first = Claim(t) })
	t.Run("b", func(t *testing.T) {
		if again := Claim(t); again != first {
			t.Fatalf("after release got %+v, want %+v again", again, first)
		}
	})
}
