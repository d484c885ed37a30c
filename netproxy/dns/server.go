package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Config configures a Server.
type Config struct {
	// Domain is the cluster domain (--cluster-domain, default
	// cluster.local); services are <service>.svc.<Domain>.
	Domain string
	// Upstreams gives the resolvers other names go to, as "HOST:PORT",
	// each time a name is forwarded (ResolvConf does that from a file).
	Upstreams func() []string
	// ForwardTimeout bounds one exchange with one upstream (default 2 s);
	// on timeout the next upstream is tried.
	ForwardTimeout time.Duration
	Registerer     prometheus.Registerer // nil: no metrics
	Logger         zerolog.Logger
}

// Server answers DNS for the services it was last given.
type Server struct {
	cfg     Config
	zone    atomic.Pointer[zone]
	queries *prometheus.CounterVec
	log     zerolog.Logger
}

// Results counted in cuelet_dns_queries_total.
const (
	resultAnswer    = "answer"    // a service's records
	resultNoData    = "nodata"    // a name of ours, no record of that type
	resultNXDomain  = "nxdomain"  // under svc.<domain>, no such name
	resultForwarded = "forwarded" // an upstream answered (any rcode)
	resultServFail  = "servfail"  // no upstream answered
	resultRefused   = "refused"   // not a query we serve (opcode, no question)
)

// New returns a server that answers no service yet.
func New(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = "cluster.local"
	}
	if _, ok := mdns.IsDomainName(cfg.Domain); !ok {
		return nil, fmt.Errorf("cluster domain %q: not a domain name", cfg.Domain)
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = 2 * time.Second
	}
	if cfg.Upstreams == nil {
		cfg.Upstreams = func() []string { return nil }
	}
	s := &Server{
		cfg: cfg,
		log: cfg.Logger.With().Str("component", "dns").Logger(),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cuelet_dns_queries_total",
			Help: "DNS queries answered, by query type and result (answer, nodata, nxdomain, forwarded, servfail, refused).",
		}, []string{"type", "result"}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.queries); err != nil {
			return nil, fmt.Errorf("dns metrics: %w", err)
		}
	}
	s.zone.Store(newZone(cfg.Domain, nil))
	return s, nil
}

// Update replaces the whole record set at once: a query sees either the
// old set or the new one, never a mix.
func (s *Server) Update(services []Service) {
	s.zone.Store(newZone(s.cfg.Domain, services))
}

// Run listens on addr with UDP and TCP and serves until ctx is done. The
// sockets use IP_FREEBIND, so they open before the address is on the
// node (the agent's first pass puts it there).
func (s *Server) Run(ctx context.Context, addr netip.AddrPort) error {
	lc := net.ListenConfig{Control: freebind}
	pc, err := lc.ListenPacket(ctx, "udp4", addr.String())
	if err != nil {
		return fmt.Errorf("dns: listen udp %s: %w", addr, err)
	}
	l, err := lc.Listen(ctx, "tcp4", addr.String())
	if err != nil {
		pc.Close()
		return fmt.Errorf("dns: listen tcp %s: %w", addr, err)
	}
	s.log.Info().Str("action", "listen").Stringer("address", addr).Msg("serving service names")
	return s.Serve(ctx, pc, l)
}

// Serve answers on pc (UDP) and l (TCP) until ctx is done, and closes them.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: s}, {Listener: l, Handler: s}} {
		var started atomic.Bool
		srv.NotifyStartedFunc = func() { started.Store(true) }
		g.Go(func() error {
			if err := srv.ActivateAndServe(); err != nil && gctx.Err() == nil {
				return fmt.Errorf("dns: serve: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			if !started.Load() {
				// It failed at once (reported above), or never began:
				// close the socket it would have closed.
				return errors.Join(closeIf(pc, srv.PacketConn != nil), closeIf(l, srv.Listener != nil))
			}
			// A fresh bounded context: ctx is already done.
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return srv.ShutdownContext(sctx)
		})
	}
	return g.Wait()
}

// closeIf closes c when cond holds, ignoring a socket already closed.
func closeIf(c io.Closer, cond bool) error {
	if !cond {
		return nil
	}
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	if r.Opcode != mdns.OpcodeQuery || len(r.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeRefused)
		s.count(r, resultRefused)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	verdict, ans, extra := s.zone.Load().lookup(q)
	if verdict == forward {
		s.forward(w, r)
		return
	}
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Answer, m.Extra = ans, extra
	result := resultAnswer
	switch {
	case verdict == nxdomain:
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{s.zone.Load().soa()}
		result = resultNXDomain
	case len(ans) == 0:
		m.Ns = []mdns.RR{s.zone.Load().soa()}
		result = resultNoData
	}
	if opt := r.IsEdns0(); opt != nil {
		// RFC 6891: a request with OPT gets an OPT back.
		m.SetEdns0(max(opt.UDPSize(), mdns.MinMsgSize), opt.Do())
	}
	if isUDP(w) {
		m.Truncate(udpSize(r))
	}
	s.count(r, result)
	w.WriteMsg(m)
}

// forward passes the query to the upstreams in turn, over the transport
// the client used, and the first answer back unchanged: the client's EDNS
// options go up as they came, a truncated UDP answer comes back truncated
// so that the client retries over TCP, which is then forwarded over TCP.
func (s *Server) forward(w mdns.ResponseWriter, r *mdns.Msg) {
	network := "tcp"
	if isUDP(w) {
		network = "udp"
	}
	c := &mdns.Client{Net: network, Timeout: s.cfg.ForwardTimeout, UDPSize: uint16(udpSize(r))}
	var errs []error
	for _, up := range s.cfg.Upstreams() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ForwardTimeout)
		resp, _, err := c.ExchangeContext(ctx, r, up)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", up, err))
			continue
		}
		if network == "udp" {
			// An upstream that ignored the client's size must not make
			// us send what the client cannot take.
			resp.Truncate(udpSize(r))
		}
		s.count(r, resultForwarded)
		w.WriteMsg(resp)
		return
	}
	s.log.Debug().Str("action", "forward").Str("name", r.Question[0].Name).Err(errors.Join(errs...)).
		Msg("no upstream answered")
	m := new(mdns.Msg)
	m.SetRcode(r, mdns.RcodeServerFailure)
	m.RecursionAvailable = true
	s.count(r, resultServFail)
	w.WriteMsg(m)
}

// queryTypes are the types counted by name; the rest are "other", so that
// a client cannot grow the metric without bound.
var queryTypes = map[uint16]string{
	mdns.TypeA: "A", mdns.TypeAAAA: "AAAA", mdns.TypeSRV: "SRV", mdns.TypePTR: "PTR",
	mdns.TypeTXT: "TXT", mdns.TypeMX: "MX", mdns.TypeCNAME: "CNAME", mdns.TypeNS: "NS",
	mdns.TypeSOA: "SOA", mdns.TypeANY: "ANY", mdns.TypeHTTPS: "HTTPS", mdns.TypeSVCB: "SVCB",
}

func (s *Server) count(r *mdns.Msg, result string) {
	t := "other"
	if len(r.Question) > 0 {
		if name, ok := queryTypes[r.Question[0].Qtype]; ok {
			t = name
		}
	}
	s.queries.WithLabelValues(t, result).Inc()
}

func isUDP(w mdns.ResponseWriter) bool {
	_, ok := w.LocalAddr().(*net.UDPAddr)
	return ok
}

// udpSize is the largest UDP answer the client takes: its EDNS buffer
// size, or 512 bytes without EDNS.
func udpSize(r *mdns.Msg) int {
	if opt := r.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), mdns.MinMsgSize)
	}
	return mdns.MinMsgSize
}

func freebind(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
	})
	return errors.Join(err, serr)
}

// ResolvConf returns Config.Upstreams for a resolv.conf file: its
// nameservers, read again when the file changes (a stat per forwarded
// query is cheap next to the exchange), without skip, so that the server
// never forwards to itself.
// A file that cannot be read keeps the last list.
func ResolvConf(path string, skip netip.Addr, log zerolog.Logger) func() []string {
	var (
		mu      sync.Mutex
		modTime time.Time
		servers []string
	)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		fi, err := os.Stat(path)
		if err != nil || fi.ModTime().Equal(modTime) {
			return servers
		}
		cc, err := mdns.ClientConfigFromFile(path)
		if err != nil {
			log.Warn().Err(err).Str("component", "dns").Str("file", path).Msg("cannot read resolvers; keeping the last list")
			return servers
		}
		modTime = fi.ModTime()
		servers = servers[:0:0]
		for _, h := range cc.Servers {
			if a, err := netip.ParseAddr(h); err == nil && a.Unmap() == skip {
				continue
			}
			servers = append(servers, net.JoinHostPort(h, cc.Port))
		}
		return servers
	}
}
