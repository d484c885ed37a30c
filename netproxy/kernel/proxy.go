package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/cuelet/cuelet/netproxy"
)

// Config configures a Proxy.
type Config struct {
	// PortalCIDR is the portal range (--portal-cidr): external ports are
	// served on every local address except those of the range, which
	// only their own service ports reach (netproxy.Node guards the rest).
	PortalCIDR netip.Prefix
	// ExternalAddress is where external ports are served; the zero value
	// and 0.0.0.0 mean every local IPv4 address of the host, 127.0.0.1
	// included.
	ExternalAddress netip.Addr
	// TableName is the agent's nftables table, family ip (default
	// netproxy.DefaultTableName), which it shares with netproxy.Node's
	// guard.
	TableName string
	// NetNS is the network namespace to program; 0 or less means the
	// caller's (the host's, for the agent).
	NetNS  netns.NsHandle
	Logger zerolog.Logger
	// Registerer gets cuelet_proxy_connections_total, read from the
	// nftables counters when scraped; nil registers nothing.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if !c.PortalCIDR.IsValid() || !c.PortalCIDR.Addr().Is4() {
		return c, fmt.Errorf("portal range %s: must be an IPv4 prefix", c.PortalCIDR)
	}
	c.PortalCIDR = c.PortalCIDR.Masked()
	if !c.ExternalAddress.IsValid() {
		c.ExternalAddress = netip.IPv4Unspecified()
	}
	if !c.ExternalAddress.Is4() {
		return c, fmt.Errorf("external address %s: must be IPv4", c.ExternalAddress)
	}
	if c.TableName == "" {
		c.TableName = netproxy.DefaultTableName
	}
	return c, nil
}

// Proxy serves service ports from the kernel: Update programs nftables
// (one transaction per change), and the kernel relays every connection;
// no packet crosses the agent. See the package documentation.
type Proxy struct {
	cfg Config
	log zerolog.Logger

	mu     sync.Mutex
	conn   *nftables.Conn // reads
	batch  *batcher       // transactions
	nl     *netlink.Handle
	closed bool
	// have is what the kernel holds; nil until the first Update adopts
	// the table (and after a failed transaction, which is retried from a
	// fresh look at the kernel).
	have *state
	// tweaks are the interface settings recorded in the table.
	tweaks tweaks
	// last is the ruleset last sent, lastText its text (an unchanged
	// one is not sent again).
	last     *ruleset
	lastText string
}

// New opens the netlink and nftables handles; it changes nothing yet.
func New(cfg Config) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	conn, nl, err := open(cfg)
	if err != nil {
		return nil, err
	}
	batch, err := newBatcher(cfg.NetNS)
	if err != nil {
		conn.CloseLasting()
		nl.Close()
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With().Str("component", "kernel-proxy").Logger(), conn: conn, batch: batch, nl: nl}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(&collector{p: p}); err != nil {
			p.Close()
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return p, nil
}

func open(cfg Config) (*nftables.Conn, *netlink.Handle, error) {
	ns := netns.None()
	var opts []nftables.ConnOption
	if cfg.NetNS > 0 {
		ns = cfg.NetNS
		opts = append(opts, nftables.WithNetNSFd(int(cfg.NetNS)))
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink: %w", err)
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		nl.Close()
		return nil, nil, fmt.Errorf("open nftables: %w", err)
	}
	return conn, nl, nil
}

// Update makes the kernel serve services (the whole desired set), in one
// nftables transaction, or none when nothing changed. It returns, per
// service name, why a service is not served fully (as netproxy.Proxy's
// Update does); when the transaction fails, every service gets that error
// and the kernel keeps what it had.
func (p *Proxy) Update(services []netproxy.Service) map[string]error {
	ports, planErrs := netproxy.PlanPorts(services, p.cfg.ExternalAddress)
	rs := build(buildConfig{table: p.cfg.TableName, cidr: p.cfg.PortalCIDR, external: p.cfg.ExternalAddress}, ports, planErrs)
	errs := rs.errs

	p.mu.Lock()
	defer p.mu.Unlock()
	failAll := func(err error) map[string]error {
		if errs == nil {
			errs = map[string]error{}
		}
		for _, s := range services {
			errs[s.Name] = joinErr(errs[s.Name], err)
		}
		return errs
	}
	if p.closed {
		return failAll(netproxy.ErrClosed)
	}
	if p.have == nil {
		have, err := listState(p.conn, p.cfg.TableName)
		if err != nil {
			return failAll(err)
		}
		p.have = &have
		p.tweaks = readTweaks(p.conn, p.cfg.TableName)
	}
	// The settings are checked on every Update, even one that changes no
	// rule: a pod recreated with its old address is a new bridge port.
	tw, err := p.ensureTweaks(rs, p.tweaks)
	if err != nil {
		// The rules go in all the same: only 127.0.0.1 or hairpin
		// connections of some endpoints fail until the next Update.
		p.log.Warn().Err(err).Msg("interface settings for localhost external ports and hairpin")
	}
	rs.addTweaks(tw)
	text := rs.String()
	if p.last != nil && p.lastText == text {
		return nilIfEmpty(errs)
	}
	have, err := send(p.batch, rs, *p.have)
	if err != nil {
		p.have = nil
		p.log.Error().Err(err).Msg("nftables transaction failed")
		return failAll(err)
	}
	p.have = &have
	p.tweaks = tw
	if p.last == nil {
		p.log.Info().Str("action", "nftables").Str("table", p.cfg.TableName).Int("service_ports", len(rs.ports)).Msg("kernel data path programmed")
	}
	if err := p.forgetUDPFlows(p.last, rs); err != nil {
		// The rules are in place; a stale UDP flow only delays its client.
		p.log.Warn().Err(err).Msg("delete UDP conntrack entries of endpoints that left")
	}
	p.last, p.lastText = rs, text
	return nilIfEmpty(errs)
}

func nilIfEmpty(errs map[string]error) map[string]error {
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// Run waits for ctx to end and then closes the proxy's handles. The rules
// stay in the kernel: the portals outlive the agent (SPEC §8), and the
// next agent adopts them. Update returns netproxy.ErrClosed afterwards.
func (p *Proxy) Run(ctx context.Context) error {
	<-ctx.Done()
	return p.Close()
}

// Close releases the handles and leaves the rules.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.nl.Close()
	p.batch.Close()
	return p.conn.CloseLasting()
}

// Counter is the count of one service port's new connections (TCP) and
// flows (UDP) since the port was first programmed.
type Counter struct {
	Service string
	// Port is the port's label as in the metrics: its name, or its
	// number when it has none. Protocol is "TCP" or "UDP".
	Port, Protocol string
	Connections    uint64
}

// Counters reads the service ports' counters from the kernel. The counts
// survive Updates and agent restarts; they start again from zero when a
// service port disappears and comes back.
func (p *Proxy) Counters() ([]Counter, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, netproxy.ErrClosed
	}
	table := &nftables.Table{Name: p.cfg.TableName, Family: nftables.TableFamilyIPv4}
	objs, err := p.conn.GetNamedObjects(table)
	if err != nil {
		return nil, fmt.Errorf("read nftables counters of %s: %w", p.cfg.TableName, err)
	}
	var out []Counter
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok || no.Type != nftables.ObjTypeCounter {
			continue
		}
		service, port, protocol, ok := parseCounterName(no.Name)
		if !ok {
			continue
		}
		c := Counter{Service: service, Port: port, Protocol: protocol}
		if ce, ok := no.Obj.(*expr.Counter); ok {
			c.Connections = ce.Packets
		}
		out = append(out, c)
	}
	return out, nil
}

// Remove deletes everything of the kernel data path from the table in
// cfg (chains, maps, sets, counters) in one transaction, and leaves the
// rest of the table, netproxy.Node's guard, alone. It is what switching
// to the userspace proxy does; nothing to remove is not an error.
func Remove(cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	conn, nl, err := open(cfg)
	if err != nil {
		return err
	}
	defer nl.Close()
	defer conn.CloseLasting()
	batch, err := newBatcher(cfg.NetNS)
	if err != nil {
		return err
	}
	defer batch.Close()
	t := readTweaks(conn, cfg.TableName)
	if err := removeAll(conn, batch, cfg.TableName); err != nil {
		return err
	}
	return undoTweaks(cfg, nl, t)
}
