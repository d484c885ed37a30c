package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/netproxy"
)

// noArgs is for the commands that take flags only.
func noArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments, got %q", args)
	}
	return nil
}

// agentSetup is the Setup of the commands that take the agent flags and no
// arguments (plan, apply, run): it registers the flags and hands run the
// logger they ask for.
func agentSetup(run func(ctx context.Context, f *AgentFlags, env *Env, log zerolog.Logger) error) func(*flag.FlagSet, *Env) func(context.Context, []string) error {
	return func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
		var f AgentFlags
		f.Register(fs, env)
		return func(ctx context.Context, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			if _, err := f.DNSAddr(); err != nil {
				return err
			}
			log, err := f.logger(env.Stderr)
			if err != nil {
				return err
			}
			return run(ctx, &f, env, log)
		}
	}
}

// logger builds the zerolog logger the agent flags ask for.
func (a *AgentFlags) logger(w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(a.LogLevel)
	if err != nil || a.LogLevel == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", a.LogLevel)
	}
	switch a.LogFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want json or console", a.LogFormat)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// externalAddr parses --external-address.
func (a *AgentFlags) externalAddr() (netip.Addr, error) {
	ip, err := netip.ParseAddr(a.ExternalAddress)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("--external-address %q: want an IPv4 address", a.ExternalAddress)
	}
	return ip, nil
}

// nodeConfig is what plan, apply and run share.
func (a *AgentFlags) nodeConfig(pm agent.Podman, log zerolog.Logger) agent.NodeConfig {
	return agent.NodeConfig{
		ManifestDir: a.Manifests,
		Options:     a.Options(),
		AllowEmpty:  a.AllowEmpty,
		StateDir:    a.StateDir,
		RunDir:      a.RunDir,
		Podman:      pm,
		Log:         log,
	}
}

// claimNode is what apply and run do before they touch the node: take the
// state lock, so that no other cuelet works on it at once, and open the
// portal programming (netlink, nftables). close undoes both.
func (a *AgentFlags) claimNode(ctx context.Context, log zerolog.Logger) (network *netproxy.Node, close func(), err error) {
	release, err := lockState(ctx, a.StateDir)
	if err != nil {
		return nil, nil, err
	}
	n, err := netproxy.NewNode(netproxy.NodeConfig{
		CIDR: a.PortalCIDR, LinkName: a.PortalLink, TableName: a.NftTable, Logger: log,
	})
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("portals need root (CAP_NET_ADMIN): %w", err)
	}
	return n, func() { n.Close(); release() }, nil
}

// checkProxyMode refuses modes not built yet rather than ignoring them.
func (a *AgentFlags) checkProxyMode() error {
	if a.ProxyMode != "userspace" {
		return fmt.Errorf("--proxy-mode %q: only userspace is supported", a.ProxyMode)
	}
	return nil
}

// printProblems writes the problems of invalid units, one a line.
func printProblems(w io.Writer, units []agent.UnitStatus) int {
	n := 0
	for _, u := range units {
		if u.Valid {
			continue
		}
		for _, p := range u.Problems {
			fmt.Fprintln(w, p)
			n++
		}
	}
	return n
}

// lockState takes <state-dir>/cuelet.lock, so that two agents (or an agent
// and an apply) never reconcile one node at once. The lock goes with the
// process.
func lockState(ctx context.Context, stateDir string) (release func(), err error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	p := filepath.Join(stateDir, "cuelet.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: another cuelet works on this node (%v)", p, err)
	}
	return func() { f.Close() }, nil
}

// hasProblemsOrErrors reports whether a pass must exit 1 (SPEC §7).
func failed(rep *agent.Report) bool {
	if len(rep.Errors) > 0 {
		return true
	}
	for _, u := range rep.Units {
		if !u.Valid {
			return true
		}
	}
	return false
}
