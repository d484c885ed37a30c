package agenttest

import (
	"fmt"
	"net"
	"testing"
)

// HelloServer accepts TCP connections on 127.0.0.1 and answers each with
// the line "hello", until the test ends; it returns its address. Tests put
// a service with a fixed endpoint in front of it to reach a portal without
// a pod.
func HelloServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello")
			c.Close()
		}
	}()
	return ln.Addr().String()
}
