package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/netproxy"
)

func runCommand() *Command {
	return &Command{
		Name: "run",
		Short: `Run the agent until SIGTERM: watch the manifest directory and podman's
events, reconcile, and serve the service portals. SIGHUP re-reads
everything at once. Pods keep running when the agent stops; the portals of
the userspace proxy stop with it.`,
		Setup: agentSetup(runAgent),
	}
}

func runAgent(ctx context.Context, f *AgentFlags, env *Env, log zerolog.Logger) error {
	if err := f.checkProxyMode(); err != nil {
		return err
	}
	ext, err := f.externalAddr()
	if err != nil {
		return err
	}
	network, closeNode, err := f.claimNode(ctx, log)
	if err != nil {
		return err
	}
	defer closeNode()

	registry := prometheus.NewRegistry()
	proxy, err := netproxy.New(netproxy.Config{
		Logger: log, Registerer: registry, ExternalAddress: ext, PortalCIDR: f.PortalCIDR,
	})
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	pm := agent.NewLazyPodman(f.PodmanURL)
	var a *agent.Agent
	cfg := f.nodeConfig(pm, log)
	cfg.Network = network
	cfg.Proxy = proxy
	components := []func(context.Context) error{proxy.Run}
	if dnsAddr, _ := f.DNSAddr(); dnsAddr.IsValid() { // checked by agentSetup
		names, serve, err := agent.NewDNS(agent.DNSConfig{
			Address: dnsAddr, Domain: f.ClusterDomain, ResolvConf: f.ResolvConf, Registerer: registry, Log: log,
		})
		if err != nil {
			return err
		}
		cfg.Names = names
		components = append(components, serve)
	}
	cfg.StepRollouts = true
	// A probe that changes state changes endpoints: sync at once. The
	// agent exists before any probe runs (probes start in its first pass).
	cfg.OnProbeChange = func() { a.Kick() }
	cfg.Progress = func(r *agent.Report) { a.Progress(r) }
	node, err := agent.NewNode(ctx, cfg)
	if err != nil {
		return err
	}
	a = agent.New(agent.Config{
		ManifestDir:    f.Manifests,
		KeepFile:       manifests.IsManifest,
		RunDir:         f.RunDir,
		MetricsAddress: f.MetricsAddress,
		Resync:         f.Resync,
		Reload:         hup,
		Registry:       registry,
		Components:     components,
		Log:            log,
	}, node, pm)
	log.Info().Str("action", "start").Str("version", versionString()).Str("manifests", f.Manifests).
		Str("podman", f.PodmanURL).Msg("cuelet agent starting")
	err = a.Run(ctx)
	log.Info().Str("action", "stop").Msg("cuelet agent stopped; pods keep running")
	return err
}
