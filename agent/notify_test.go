package agent

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listenNotify plays systemd: it owns a NOTIFY_SOCKET and returns the
// datagrams the agent sends.
func listenNotify(t *testing.T) <-chan string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	out := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(out)
				return
			}
			out <- string(buf[:n])
		}
	}()
	return out
}

// flushNotify sends a marker to the NOTIFY_SOCKET of listenNotify and
// drops what ch holds up to it: everything sent to the socket before the
// call. A datagram socket queues in the order datagrams arrive.
func flushNotify(t *testing.T, ch <-chan string) {
	t.Helper()
	const marker = "TEST-FLUSH=1"
	c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(marker)); err != nil {
		t.Fatal(err)
	}
	for nextNotify(t, ch) != marker {
	}
}

func nextNotify(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5 s")
		return ""
	}
}

func TestNotifier_sends_sd_notify_datagrams(t *testing.T) {
	ch := listenNotify(t)
	var n Notifier
	n.Ready()
	if got := nextNotify(t, ch); got != "READY=1" {
		t.Fatalf("got %q, want READY=1", got)
	}
	n.Status("2 pods, 1 service, 0 invalid units")
	if got := nextNotify(t, ch); got != "STATUS=2 pods, 1 service, 0 invalid units" {
		t.Fatalf("got %q", got)
	}
	n.Reloading()
	if got := nextNotify(t, ch); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("got %q", got)
	}
	n.Watchdog()
	if got := nextNotify(t, ch); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
}

func TestNotifier_watchdog_interval_is_half_of_WATCHDOG_USEC(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "20000000")
	t.Setenv("WATCHDOG_PID", "")
	var n Notifier
	if got := n.WatchdogInterval(); got != 10*time.Second {
		t.Fatalf("interval = %s, want 10s", got)
	}
	t.Setenv("WATCHDOG_USEC", "")
	if got := n.WatchdogInterval(); got != 0 {
		t.Fatalf("interval without watchdog = %s, want 0", got)
	}
}
