package netproxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Defaults of Config fields left zero.
const (
	DefaultUDPIdleTimeout = 30 * time.Second
	DefaultUDPMaxSessions = 1024
	DefaultDialTimeout    = time.Second
	DefaultDrainTimeout   = 30 * time.Second
)

// Config configures a Proxy. The zero value works.
type Config struct {
	Logger zerolog.Logger
	// Registerer gets the proxy's collectors; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// ExternalAddress is where external ports listen; the zero value means
	// 0.0.0.0 (every IPv4 address of the host, 127.0.0.1 included).
	ExternalAddress netip.Addr
	// UDPIdleTimeout ends a UDP session that saw no datagram either way
	// for this long (default 30 s, like conntrack's UDP stream timeout).
	UDPIdleTimeout time.Duration
	// UDPMaxSessions bounds the sessions of one UDP listener (default
	// 1024); datagrams of new clients beyond it are dropped. Each session
	// holds a socket and a 64 KiB buffer.
	UDPMaxSessions int
	// DialTimeout bounds each attempt to connect to a TCP endpoint (default
	// 1 s); after a failed attempt the next endpoint is tried.
	DialTimeout time.Duration
	// DrainTimeout is how long open TCP connections to an endpoint that
	// left the rotation may go on before the proxy closes them (default
	// 30 s, Kubernetes' default grace period for a terminating pod); a
	// negative value closes them at once. A replica that fails readiness
	// finishes the requests it has, as behind kube-proxy; one whose
	// process stopped closes its connections itself.
	DrainTimeout time.Duration
	// Now is the clock for ClientIP affinity; nil means time.Now.
	Now func() time.Time
	// PortalCIDR is the portal range (--portal-cidr). The node makes the
	// whole range local (see Node), so a listener on a wildcard external
	// address would also receive traffic for any portal address at its
	// port number; with PortalCIDR set, such listeners reset those TCP
	// connections and drop those datagrams, so that an address or port of
	// the range without a service stays refused.
	PortalCIDR netip.Prefix
}

// Proxy is the userspace proxy: it listens on every service port's portal
// (and external port) and relays connections to the endpoints. Create it
// with New, start it with Run, and hand it the desired services with
// Update whenever they change.
type Proxy struct {
	cfg     Config
	log     zerolog.Logger
	metrics *metrics
	// ctx ends when Run returns; dials and sessions hang off it.
	ctx    context.Context
	cancel context.CancelFunc

	// poll watches the sockets of TCP connections and listeners; it is
	// started with the first TCP listener and stopped by Run at its end.
	poll  *poller
	pipes *pipePool // splice pipes of bulk transfers

	mu        sync.Mutex
	closed    bool
	ports     map[portKey]*servicePort
	listeners map[listenerKey]*listener
	errs      map[portKey]error // last listen errors, for Status

	wg sync.WaitGroup // every goroutine the proxy starts

	unreachable portUnreachable // refuses UDP to ports without endpoints

	work       chan func() // hands tasks to idle workers (see spawn)
	workerIdle time.Duration

	// testHookDialed, when set by a test, runs after every successful
	// dial of an endpoint, before the connection is relayed.
	testHookDialed func(ep netip.AddrPort)
}

type portKey struct {
	service, port, protocol string
}

type listenerKey struct {
	protocol string
	addr     netip.AddrPort
	// shared marks a wildcard external listener whose port number is also
	// a portal port: it must share the port with the portal listeners
	// (SO_REUSEPORT, see setListenOptions).
	shared bool
}

func (k listenerKey) String() string { return k.protocol + " " + k.addr.String() }

// New returns a Proxy; it listens on nothing until Update.
func New(cfg Config) (*Proxy, error) {
	cfg.ExternalAddress = cmp.Or(cfg.ExternalAddress, netip.IPv4Unspecified())
	cfg.UDPIdleTimeout = cmp.Or(cfg.UDPIdleTimeout, DefaultUDPIdleTimeout)
	cfg.UDPMaxSessions = cmp.Or(cfg.UDPMaxSessions, DefaultUDPMaxSessions)
	cfg.DialTimeout = cmp.Or(cfg.DialTimeout, DefaultDialTimeout)
	cfg.DrainTimeout = cmp.Or(cfg.DrainTimeout, DefaultDrainTimeout)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		pipes:      &pipePool{},
		cfg:        cfg,
		log:        cfg.Logger.With().Str("component", "proxy").Logger(),
		metrics:    m,
		ctx:        ctx,
		cancel:     cancel,
		ports:      map[portKey]*servicePort{},
		listeners:  map[listenerKey]*listener{},
		errs:       map[portKey]error{},
		work:       make(chan func()),
		workerIdle: defaultWorkerIdle,
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(newActiveCollector(p)); err != nil {
			cancel()
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return p, nil
}

// Run serves until ctx ends, then closes every listener and connection and
// waits for all of the proxy's goroutines; it returns nil then. Listeners
// opened by Update before Run are served already; Run is what ends them.
func (p *Proxy) Run(ctx context.Context) error {
	// Affinity entries are swept now and then rather than on every pick,
	// which keeps the pick cheap.
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			p.shutdown()
			return nil
		case <-sweep.C:
			p.mu.Lock()
			for _, sp := range p.ports {
				sp.lb.expire()
			}
			p.mu.Unlock()
		}
	}
}

func (p *Proxy) shutdown() {
	p.mu.Lock()
	p.closed = true
	for k, l := range p.listeners {
		l.close()
		delete(p.listeners, k)
	}
	for k, sp := range p.ports {
		sp.close()
		delete(p.ports, k)
	}
	poll := p.poll
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	// Last, as every connection and listener used it until now.
	if poll != nil {
		poll.stop()
	}
	p.pipes.close()
}

// poller returns the proxy's poller, started on first use. Callers hold
// p.mu.
func (p *Proxy) poller() (*poller, error) {
	if p.poll == nil {
		poll, err := newPoller()
		if err != nil {
			return nil, err
		}
		p.poll = poll
	}
	return p.poll, nil
}

// Update makes the proxy serve exactly services (the whole desired set,
// every time). Listeners that stay the same keep listening without a gap;
// removed ones are closed with their connections; new ones are opened.
// Endpoint changes apply to the next connection at once.
//
// It returns, per service name, why a service is not (fully) served: an
// invalid Service, or a listener that could not be opened, for example
// because the port is already used on the host. The other ports of that
// service and all other services are served regardless. A failed listener
// is tried again on the next Update, so a level-triggered caller heals it
// once the port is free. The result is nil when everything listens.
//
// What to listen on, and who owns each address, is planListeners'
// decision; Update only carries it out on the sockets.
func (p *Proxy) Update(services []Service) map[string]error {
	var errs map[string]error
	fail := func(service string, err error) {
		if errs == nil {
			errs = map[string]error{}
		}
		errs[service] = errors.Join(errs[service], err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, s := range services {
			fail(s.Name, ErrClosed)
		}
		return errs
	}

	current := make(map[listenerKey]portKey, len(p.listeners))
	for lk, l := range p.listeners {
		current[lk] = l.sp.key
	}
	plan := planListeners(services, p.cfg.ExternalAddress, current)
	errs = plan.errs // listen errors below join them, service by service
	p.apply(plan, fail)
	return errs
}

// apply carries out a listener plan: it closes what the plan closes, drops
// the service ports it no longer serves, sets the endpoints of the others
// and opens their new listeners. A listener that cannot be opened is
// reported through fail and in Status, and is tried again by the next
// Update. Callers hold p.mu.
func (p *Proxy) apply(plan listenerPlan, fail func(service string, err error)) {
	// Close first, so that an address that moves between service ports
	// can be bound again below.
	for _, lk := range plan.close {
		l := p.listeners[lk]
		l.close()
		delete(p.listeners, lk)
		p.log.Info().Str("service", l.sp.key.service).Str("port", l.sp.key.port).
			Str("action", "close").Stringer("listen", lk).Msg("stopped listening")
	}
	for pk, sp := range p.ports {
		if !plan.wants(pk) {
			sp.close()
			delete(p.ports, pk)
			delete(p.errs, pk)
			p.metrics.forget(pk.service, pk.port)
		}
	}

	for _, d := range plan.ports {
		pk := d.key
		sp, ok := p.ports[pk]
		if !ok {
			sp = newServicePort(p, pk)
			p.ports[pk] = sp
		}
		sp.setEndpoints(d.port.Endpoints, d.svc.affinityTimeout())
		var portErr error
		for _, pl := range d.listeners {
			if !pl.open {
				continue
			}
			lk := pl.key
			l, err := sp.listen(lk)
			if err != nil {
				err = fmt.Errorf("listen %s for service %s port %s: %w", lk, pk.service, pk.port, err)
				portErr = errors.Join(portErr, err)
				fail(pk.service, err)
				p.log.Error().Str("service", pk.service).Str("port", pk.port).
					Str("action", "listen").Err(err).Msg("cannot listen")
				continue
			}
			p.listeners[lk] = l
			p.log.Info().Str("service", pk.service).Str("port", pk.port).
				Str("action", "listen").Stringer("listen", lk).Msg("listening")
		}
		if portErr != nil {
			p.errs[pk] = portErr
		} else {
			delete(p.errs, pk)
		}
	}
}

func comparePortKeys(a, b portKey) int {
	return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.port, b.port), cmp.Compare(a.protocol, b.protocol))
}

// PortStatus is what Status reports for one service port.
type PortStatus struct {
	Service   string
	Port      string // the port's name, or its number when unnamed
	Protocol  string
	Listening []netip.AddrPort // addresses with an open listener
	Endpoints []netip.AddrPort
	Active    int   // open TCP connections or UDP sessions
	Err       error // why a listener is missing, nil when all listen
}

// Status returns the state of every service port, sorted by service,
// port and protocol; for `cuelet status`.
func (p *Proxy) Status() []PortStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []PortStatus
	for _, pk := range slices.SortedFunc(maps.Keys(p.ports), comparePortKeys) {
		sp := p.ports[pk]
		st := PortStatus{
			Service:   pk.service,
			Port:      pk.port,
			Protocol:  pk.protocol,
			Endpoints: slices.Clone(sp.lb.endpoints()),
			Active:    sp.active(),
			Err:       p.errs[pk],
		}
		for lk, l := range p.listeners {
			if l.sp == sp {
				st.Listening = append(st.Listening, lk.addr)
			}
		}
		slices.SortFunc(st.Listening, netip.AddrPort.Compare)
		out = append(out, st)
	}
	return out
}
