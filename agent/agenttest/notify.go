package agenttest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// NotifySocket stands in for systemd's notification socket: the agent
// gets its path as $NOTIFY_SOCKET and every datagram it sends is kept.
type NotifySocket struct {
	Path string

	conn *net.UnixConn
	mu   sync.Mutex
	msgs []Notification
	more chan struct{} // closed and replaced on every message
}

// Notification is one sd_notify datagram.
type Notification struct {
	Time   time.Time
	Fields map[string]string // READY=1 → Fields["READY"] == "1"
}

func (n Notification) String() string {
	var parts []string
	for k, v := range n.Fields {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

// newNotifySocket listens on <dir>/notify.sock until the test ends.
func newNotifySocket(tb testing.TB, dir string) *NotifySocket {
	tb.Helper()
	p := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		tb.Fatal(err)
	}
	s := &NotifySocket{Path: p, conn: conn, more: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msg := Notification{Time: time.Now(), Fields: map[string]string{}}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					msg.Fields[k] = v
				}
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, msg)
			close(s.more)
			s.more = make(chan struct{})
			s.mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		conn.Close()
		<-done
		os.Remove(p)
	})
	return s
}

// All returns every notification so far.
func (s *NotifySocket) All() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notification(nil), s.msgs...)
}

// Wait returns the first notification from index from on that match
// accepts, with its index, waiting at most within.
func (s *NotifySocket) Wait(from int, within time.Duration, match func(Notification) bool) (Notification, int, error) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for i := from; ; {
		s.mu.Lock()
		msgs, more := s.msgs, s.more
		s.mu.Unlock()
		for ; i < len(msgs); i++ {
			if match(msgs[i]) {
				return msgs[i], i, nil
			}
		}
		select {
		case <-more:
		case <-deadline.C:
			return Notification{}, -1, fmt.Errorf("no such notification within %s; got %v", within, s.All())
		}
	}
}

// Has is a match function for Wait: the field has the value.
func Has(key, value string) func(Notification) bool {
	return func(n Notification) bool { v, ok := n.Fields[key]; return ok && v == value }
}
