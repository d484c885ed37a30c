package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/reconcile/podman"
	"github.com/cuelet/cuelet/systemd"
)

// agentCommand is a command that takes the agent flags and no arguments
// (plan, apply, run): it registers the flags and hands run the flags and
// the logger they ask for. add registers the command's own flags, if any.
func agentCommand(env *Env, cmd *cobra.Command, add func(*pflag.FlagSet), run func(ctx context.Context, f *AgentFlags, env *Env, log zerolog.Logger) error) *cobra.Command {
	var f AgentFlags
	f.Register(flagsOf(cmd), env)
	if add != nil {
		add(cmd.Flags())
	}
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if _, err := f.DNSAddr(); err != nil {
			return err
		}
		// Every command that takes the flag checks it: plan and apply
		// must not accept a mode run would refuse.
		if _, err := agent.ParseProxyMode(f.ProxyMode); err != nil {
			return err
		}
		log, err := f.logger(env.Stderr, env.Getenv("JOURNAL_STREAM"))
		if err != nil {
			return err
		}
		return run(cmd.Context(), &f, env, log)
	}
	return cmd
}

// logger builds the zerolog logger the agent flags ask for, with
// priorities for the journal when w is its stream (journalStream is
// $JOURNAL_STREAM), and routes the podman bindings' logrus lines into it.
func (a *AgentFlags) logger(w io.Writer, journalStream string) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(a.LogLevel)
	if err != nil || a.LogLevel == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", a.LogLevel)
	}
	if a.LogFormat != "json" && a.LogFormat != "console" {
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want json or console", a.LogFormat)
	}
	log := zerolog.New(systemd.LogWriter(w, journalStream, a.LogFormat == "console")).Level(level).With().Timestamp().Logger()
	podman.ForwardBindingsLog(log)
	return log, nil
}

// options are the flags plan, apply and run share, as the agent takes
// them; run adds its own (runOptions).
func (a *AgentFlags) options(log zerolog.Logger) (agent.Options, error) {
	rules, err := a.NodeRules.Options()
	if err != nil {
		return agent.Options{}, err
	}
	mode, err := agent.ParseProxyMode(a.ProxyMode)
	if err != nil {
		return agent.Options{}, err
	}
	return agent.Options{
		ManifestDir: a.Manifests,
		Manifests:   rules,
		AllowEmpty:  a.AllowEmpty,
		PodmanURL:   a.PodmanURL,
		StateDir:    a.StateDir,
		RunDir:      a.RunDir,
		PortalLink:  a.PortalLink,
		NftTable:    a.NftTable,
		ProxyMode:   mode,
		Log:         log,
	}, nil
}

// runOptions are the options of `cuelet run`: the shared ones, and the
// proxy and loop settings, checked.
func (a *AgentFlags) runOptions(log zerolog.Logger) (agent.Options, error) {
	ip, err := netip.ParseAddr(a.ExternalAddress)
	if err != nil || !ip.Is4() {
		return agent.Options{}, fmt.Errorf("--external-address %q: want an IPv4 address", a.ExternalAddress)
	}
	o, err := a.options(log)
	if err != nil {
		return agent.Options{}, err
	}
	o.ExternalAddress = ip
	o.Resync = a.Resync
	o.MetricsAddress = a.MetricsAddress
	o.ResolvConf = a.ResolvConf
	return o, nil
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

// failed reports whether a pass must exit 1 (SPEC §7).
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
