package testenv

import (
	"net"
	"testing"
)

// FreeTCPPort is a TCP port free on every address right now, for an
// external port or a listener a test starts later.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
