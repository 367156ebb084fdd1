package proxy

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy/h2"
	"github.com/mosnlite/mosnlite/service/stats"
)

const (
	maxDiscard = 256 << 10 // unread request body we read away to keep a connection
	bufSize    = 32 << 10  // TCP proxy copy buffers
	// Buffers of the HTTP exchange: a request head usually fits the first;
	// responses stream through the second.
	httpReadBufSize = 4 << 10
	upstreamBufSize = 16 << 10
	// maxResponseHead bounds an upstream response head (as Envoy's
	// default); a larger one is a 502.
	maxResponseHead    = 60 << 10
	maxResponseHeaders = 200
	// lingerTimeout bounds how long a closing connection waits for the
	// client's FIN after ours, so that a late byte does not turn into a reset.
	lingerTimeout  = 500 * time.Millisecond
	discardTimeout = 5 * time.Second
	noClusterLabel = stats.NoCluster
	// upstreamH2IdleTimeout closes an upstream HTTP/2 connection that has
	// carried no stream for this long.
	upstreamH2IdleTimeout = time.Minute
)

// httpProxy is the HTTP/1.1 reverse proxy of one listener.
type httpProxy struct {
	*base
	routes          *routeTable
	clusters        *cluster.Manager
	idleTimeout     time.Duration
	upstreamTimeout time.Duration
	headerTimeout   time.Duration // from a request's first byte to the end of its head (408 past it)
	maxHeadBytes    int           // request line and header block (431 above)
	maxHeaders      int           // header fields (431 above)
	maxBodyBytes    int64         // request body; 0 is no limit (413 above)
	linger          time.Duration
	handoff         time.Duration // idle this long, a connection goes to the poller
	bufSize         int           // first read buffer of a request
	clock           clock         // the HTTP/1 engine's time (clock.go)
	metrics         *stats.HTTPListenerMetrics
	// watches is the requests waiting upstream whose clients are to be
	// watched for a close (clientwatch.go).
	watches watchList
	// tunnels is what the sessions of upgraded connections share;
	// upgrades counts the connections upgraded.
	tunnels  *sessionOwner
	upgrades *stats.Counter

	bufs      *bufPool
	h1up      h1UpPool  // HTTP/2 streams' HTTP/1 upstream exchanges
	exchanges sync.Pool // *exchange
	idle      *HTTPRuntime
	idleList  *idleList // this proxy's idle connections, in idle
	// observers are called at the end of every request with what it did
	// (WithRequestObserver).
	observers []func(info *RequestInfo)
	// pick draws a weighted cluster: [0, n).
	pick func(n int) int

	// HTTP/2 (http2.go): the protocols configured, the limits of a
	// downstream connection, the upstream connections.
	downstreamProto, upstreamProto string
	h2cfg                          h2.Config
	h2up                           *h2Pool
}

// HTTPOption sets what an HTTP proxy takes besides its config.
type HTTPOption func(*httpProxy)

// WithHTTPRuntime keeps the proxy's idle keep-alive connections in poller,
// which the process's other HTTP proxies share; without it the proxy makes
// one of its own.
func WithHTTPRuntime(poller *HTTPRuntime) HTTPOption {
	return func(p *httpProxy) { p.idle = poller }
}

// WithRequestObserver calls observe at the end of every request with its
// record (an access log, latency histograms); observers given in several
// options are all called, in order. observe runs on the request's
// goroutine, must not block for long, and must not keep info or its byte
// slices.
func WithRequestObserver(observe func(info *RequestInfo)) HTTPOption {
	return func(p *httpProxy) { p.observers = append(p.observers, observe) }
}

// withPick draws weighted clusters with pick instead of at random (tests).
func withPick(pick func(n int) int) HTTPOption {
	return func(p *httpProxy) { p.pick = pick }
}

// NewHTTP builds the HTTP proxy for listener, routing with router over clusters.
// Every cluster the router names must exist.
func NewHTTP(listener config.Listener, router *config.Router, clusters *cluster.Manager,
	reg *stats.Registry, log *logrus.Entry, opts ...HTTPOption) (Proxy, error) {
	return newHTTP(listener, router, clusters, reg, log, opts...)
}

func newHTTP(listener config.Listener, router *config.Router, clusters *cluster.Manager,
	reg *stats.Registry, log *logrus.Entry, opts ...HTTPOption) (*httpProxy, error) {
	if clusters == nil {
		return nil, fmt.Errorf("proxy: listener %s: no cluster manager", listener.Name)
	}
	if reg == nil {
		reg = stats.New()
	}
	cfg := config.HTTPProxyConfig{}
	if f := findFilter(listener); f != nil && f.HTTP != nil {
		cfg = *f.HTTP
	}
	p := &httpProxy{
		base:            newBase(listener.Name, "http_proxy", reg, log),
		clusters:        clusters,
		pick:            rand.IntN,
		clock:           sysClock{},
		idleTimeout:     orDefault(cfg.IdleTimeout.Duration, config.DefaultIdleTimeout),
		upstreamTimeout: orDefault(cfg.UpstreamTimeout.Duration, config.DefaultUpstreamTimeout),
		headerTimeout:   orDefault(cfg.RequestHeaderTimeout.Duration, config.DefaultRequestHeaderTimeout),
		maxHeadBytes:    orDefaultInt(cfg.MaxRequestHeadersKB, config.DefaultMaxRequestHeadersKB) << 10,
		maxHeaders:      orDefaultInt(cfg.MaxRequestHeadersCount, config.DefaultMaxRequestHeadersCount),
		maxBodyBytes:    cfg.MaxRequestBodyBytes,
		linger:          lingerTimeout,
		handoff:         idleHandoff,
		bufSize:         httpReadBufSize,
		bufs:            &bufPool{},
		downstreamProto: cfg.DownstreamProtocol,
		upstreamProto:   cfg.UpstreamProtocol,
		h2cfg:           h2Settings(cfg),
	}
	var tunnelsActive *stats.Gauge
	p.upgrades, tunnelsActive = stats.HTTPUpgradeSeries(reg, listener.Name)
	p.tunnels = &sessionOwner{base: p.base, kind: KindTunnel, idleTimeout: p.idleTimeout, active: tunnelsActive, clusters: clusters}
	for _, o := range opts {
		o(p)
	}
	// The weighted draws go through p.pick, read per draw: an option may
	// replace it after the routes are built.
	routes, err := compileRoutes(router, func(n int) int { return p.pick(n) })
	if err != nil {
		return nil, fmt.Errorf("proxy: listener %s: router: %w", listener.Name, err)
	}
	p.routes = routes
	if p.idle == nil {
		p.idle = NewHTTPRuntime(p.log)
	}
	p.idleList = p.idle.list(p.idleTimeout)
	p.h2up = newH2Pool(h2.Config{Log: p.log, IdleTimeout: upstreamH2IdleTimeout})
	routed := routes.clusters()
	for _, name := range routed {
		if clusters.Get(name) == nil {
			return nil, fmt.Errorf("proxy: listener %s: route to unknown cluster %q", listener.Name, name)
		}
	}
	if p.metrics == nil {
		p.metrics = stats.NewHTTPListenerMetrics(reg, listener.Name, routed)
	}
	return p, nil
}

// findFilter returns the listener's (single) filter, or nil.
func findFilter(l config.Listener) *config.Filter {
	for _, fc := range l.FilterChains {
		if len(fc.Filters) > 0 {
			return &fc.Filters[0]
		}
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func orDefaultInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Serve accepts HTTP connections on l until l is closed.
func (p *httpProxy) Serve(l net.Listener) error {
	return p.acceptLoop(l, p.handle)
}

func (p *httpProxy) handle(nc net.Conn) {
	if p.handshaker != nil {
		p.begin(nc, p.serveNegotiated)
		return
	}
	switch p.downstreamProto {
	case config.ProtocolHTTP2:
		go p.trackH2(nc, nil, nil)()
	case config.ProtocolAuto:
		p.detect(nc)
	default:
		p.serveHTTP1(nc)
	}
}

func (p *httpProxy) serveHTTP1(nc net.Conn) {
	c := p.newConn(nc)
	c.remove = p.tracker.Add(c)
	go c.serve(startFresh)
}

// newConn prepares a downstream connection; the caller tracks and serves it.
func (p *httpProxy) newConn(nc net.Conn) *httpConn {
	c := &httpConn{p: p, nc: nc, raw: newRawIO(nc), phase: phaseReading, id: p.clusters.NextConnID()}
	c.busy.Store(true) // as phaseReading: active until its first request ends
	c.rawless = c.raw == nil
	c.scheme = "http"
	if _, ok := nc.(*tls.Conn); ok {
		c.scheme = "https"
	}
	if tcp, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.clientIP = tcp.IP.String()
	}
	return c
}
