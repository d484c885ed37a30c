// Command candidate puts cuelet's userspace proxy (package netproxy) in
// front of the proxy benchmark harness's backends: one service whose
// endpoints are the backends, with its external port on the harness's
// candidate address. bench/proxy/run.sh builds and starts it; once
// `cuelet run` can serve a manifest with fixed endpoints, run.sh starts
// that instead and this command can go.
//
//	candidate -listen 127.0.0.1:19205 -backends 127.0.0.1:19101,127.0.0.1:19102,127.0.0.1:19103
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/netproxy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "candidate:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", os.Getenv("CANDIDATE_ADDR"), "loopback address of the external port")
	backends := flag.String("backends", os.Getenv("BENCH_BACKENDS"), "comma-separated loopback backend addresses")
	portal := flag.String("portal", "127.0.0.2", "loopback address used as the service's portal")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	ext, err := netip.ParseAddrPort(*listen)
	if err != nil || !ext.Addr().IsLoopback() {
		return fmt.Errorf("-listen %q: need a loopback address:port", *listen)
	}
	portalIP, err := netip.ParseAddr(*portal)
	if err != nil || !portalIP.IsLoopback() {
		return fmt.Errorf("-portal %q: need a loopback address", *portal)
	}
	var eps []netip.AddrPort
	for _, b := range strings.Split(*backends, ",") {
		if b = strings.TrimSpace(b); b == "" {
			continue
		}
		ep, err := netip.ParseAddrPort(b)
		if err != nil || !ep.Addr().IsLoopback() {
			return fmt.Errorf("backend %q: need a loopback address:port", b)
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return fmt.Errorf("no backends (-backends or $BENCH_BACKENDS)")
	}

	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	// A registry of its own: the counters cost the same as in the agent.
	p, err := netproxy.New(netproxy.Config{
		Logger:          log,
		Registerer:      prometheus.NewRegistry(),
		ExternalAddress: ext.Addr(),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if errs := p.Update([]netproxy.Service{{
		Name:     "bench",
		PortalIP: portalIP,
		Ports: []netproxy.Port{{
			Name: "tcp", Protocol: "TCP", Port: int(ext.Port()), ExternalPort: int(ext.Port()),
			Endpoints: eps,
		}},
	}}); errs != nil {
		return fmt.Errorf("listen: %v", errs)
	}
	fmt.Fprintf(os.Stderr, "candidate: cuelet netproxy on %s (portal %s:%d) -> %v, pid %d\n", ext, portalIP, ext.Port(), eps, os.Getpid())
	return p.Run(ctx)
}
