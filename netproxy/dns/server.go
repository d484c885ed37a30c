package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
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
	// counters caches the children of queries by type index (see
	// queryTypes) and result: WithLabelValues hashes its labels and takes
	// a lock on every call, which a query should not pay. Filled on first
	// use, so that /metrics shows only the series that happened.
	counters [len(typeNames)][numResults]atomic.Pointer[prometheus.Counter]
	log      zerolog.Logger
	// udpSockets is the number of UDP sockets Run opens; 0 is GOMAXPROCS
	// (the benchmark varies it).
	udpSockets int
}

// Results counted in cuelet_dns_queries_total.
type result int

const (
	resultAnswer    result = iota // a service's records
	resultNoData                  // a name of ours, no record of that type
	resultNXDomain                // under svc.<domain>, no such name
	resultForwarded               // an upstream answered (any rcode)
	resultServFail                // no upstream answered
	resultRefused                 // not a query we serve (opcode, no question)
	numResults
)

var resultNames = [numResults]string{"answer", "nodata", "nxdomain", "forwarded", "servfail", "refused"}

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
// node (the agent's first pass puts it there). UDP gets one socket per
// GOMAXPROCS, bound together with SO_REUSEPORT, each with its own read
// loop: the kernel spreads the clients over them by their address, so
// that a single read loop does not become the queue every query waits in
// (CoreDNS's multisocket does the same).
func (s *Server) Run(ctx context.Context, addr netip.AddrPort) error {
	lc := net.ListenConfig{Control: freebind}
	var pcs []*net.UDPConn
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
	}
	n := runtime.GOMAXPROCS(0)
	if s.udpSockets > 0 {
		n = s.udpSockets
	}
	for range n {
		ulc := lc
		if n > 1 {
			ulc.Control = freebindReusePort
		}
		pc, err := ulc.ListenPacket(ctx, "udp4", addr.String())
		if err != nil {
			closeAll()
			return fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		pcs = append(pcs, pc.(*net.UDPConn))
	}
	l, err := lc.Listen(ctx, "tcp4", addr.String())
	if err != nil {
		closeAll()
		return fmt.Errorf("dns: listen tcp %s: %w", addr, err)
	}
	s.log.Info().Str("action", "listen").Stringer("address", addr).Int("udp_sockets", n).Msg("serving service names")
	return s.serve(ctx, pcs, l)
}

// Serve answers on pc (UDP) and l (TCP) until ctx is done, and closes them.
func (s *Server) Serve(ctx context.Context, pc *net.UDPConn, l net.Listener) error {
	return s.serve(ctx, []*net.UDPConn{pc}, l)
}

// serve answers on every socket of pcs (UDP, see serveUDP) and on l (TCP,
// miekg's server) until ctx is done, and closes them.
func (s *Server) serve(ctx context.Context, pcs []*net.UDPConn, l net.Listener) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, pc := range pcs {
		g.Go(func() error { return s.serveUDP(gctx, pc) })
	}
	srv := &mdns.Server{Listener: l, Handler: s}
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
			return closeIf(srv.Listener, true)
		}
		// A fresh bounded context: ctx is already done.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return srv.ShutdownContext(sctx)
	})
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
	res := resultAnswer
	switch {
	case verdict == nxdomain:
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{s.zone.Load().soa()}
		res = resultNXDomain
	case len(ans) == 0:
		m.Ns = []mdns.RR{s.zone.Load().soa()}
		res = resultNoData
	}
	if opt := r.IsEdns0(); opt != nil {
		// RFC 6891: a request with OPT gets an OPT back.
		m.SetEdns0(max(opt.UDPSize(), mdns.MinMsgSize), opt.Do())
	}
	if isUDP(w) {
		m.Truncate(udpSize(r))
	}
	s.count(r, res)
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

// typeNames are the types counted by name; the rest are "other" (the
// last), so that a client cannot grow the metric without bound.
var typeNames = [...]string{"A", "AAAA", "SRV", "PTR", "TXT", "MX", "CNAME", "NS", "SOA", "ANY", "HTTPS", "SVCB", "other"}

// queryTypes maps a query type to its index in typeNames.
var queryTypes = map[uint16]int{
	mdns.TypeA: 0, mdns.TypeAAAA: 1, mdns.TypeSRV: 2, mdns.TypePTR: 3,
	mdns.TypeTXT: 4, mdns.TypeMX: 5, mdns.TypeCNAME: 6, mdns.TypeNS: 7,
	mdns.TypeSOA: 8, mdns.TypeANY: 9, mdns.TypeHTTPS: 10, mdns.TypeSVCB: 11,
}

func (s *Server) count(r *mdns.Msg, res result) {
	qtype := uint16(mdns.TypeNone)
	if len(r.Question) > 0 {
		qtype = r.Question[0].Qtype
	}
	s.countType(qtype, res)
}

func (s *Server) countType(qtype uint16, res result) {
	t := len(typeNames) - 1
	if i, ok := queryTypes[qtype]; ok {
		t = i
	}
	slot := &s.counters[t][res]
	c := slot.Load()
	if c == nil {
		// Two first queries may both get here: the vec returns the same
		// child to both, so either store is right.
		child := s.queries.WithLabelValues(typeNames[t], resultNames[res])
		c = &child
		slot.Store(c)
	}
	(*c).Inc()
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

// freebindReusePort is freebind with SO_REUSEPORT, for the UDP sockets
// that share the address.
func freebindReusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1))
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
