package agent

import (
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells the service manager about the agent's state. Without
// $NOTIFY_SOCKET (not started by systemd) every call is a no-op.
//
// github.com/coreos/go-systemd/v22/daemon speaks the sd_notify datagram
// protocol (abstract sockets, credentials) the way systemd documents it;
// it is small, has no cgo and is what most Go daemons under systemd use.
type Notifier struct{}

// Ready says the first sync pass is done and the proxies listen.
func (Notifier) Ready() { notify(daemon.SdNotifyReady) }

// Status sets the one-line summary `systemctl status` shows.
func (Notifier) Status(line string) { notify("STATUS=" + line) }

// Reloading brackets a SIGHUP re-read; systemd waits for READY=1 again.
func (Notifier) Reloading() {
	notify(daemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + monotonicUsec())
}

// Stopping says the agent is shutting down.
func (Notifier) Stopping() { notify(daemon.SdNotifyStopping) }

// Watchdog pings the service manager's watchdog.
func (Notifier) Watchdog() { notify(daemon.SdNotifyWatchdog) }

// WatchdogInterval is how often to ping: half the configured WatchdogSec,
// as sd_watchdog_enabled(3) advises; 0 when no watchdog is set.
func (Notifier) WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

func notify(state string) {
	// Errors only mean the manager went away or the socket is
	// misconfigured; neither is a reason to stop managing the node.
	_, _ = daemon.SdNotify(false, state)
}
