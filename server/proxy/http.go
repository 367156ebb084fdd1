package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/service/stats"
)

const (
	maxHeaderBytes = 1 << 20   // request head limit, as net/http
	maxDiscard     = 256 << 10 // unread request body we read away to keep a connection
	bufSize        = 32 << 10
	// lingerTimeout bounds how long a closing connection waits for the
	// client's FIN after ours, so that a late byte does not turn into a reset.
	lingerTimeout  = 500 * time.Millisecond
	discardTimeout = 5 * time.Second
	noClusterLabel = "none"
)

// httpProxy is the HTTP/1.1 reverse proxy of one listener.
type httpProxy struct {
	*base
	routes          *routeTable
	clusters        *cluster.Manager
	idleTimeout     time.Duration
	upstreamTimeout time.Duration
	linger          time.Duration
	// requests[cluster label][status class 1..5], built up front; read-only.
	requests map[string]*[6]*stats.Counter
}

// NewHTTP builds the HTTP proxy for listener, routing with router over clusters.
// Every cluster the router names must exist.
func NewHTTP(listener config.Listener, router *config.Router, clusters *cluster.Manager,
	reg *stats.Registry, log *logrus.Entry) (Proxy, error) {
	return newHTTP(listener, router, clusters, reg, log)
}

func newHTTP(listener config.Listener, router *config.Router, clusters *cluster.Manager,
	reg *stats.Registry, log *logrus.Entry) (*httpProxy, error) {
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
	routes, err := compileRoutes(router)
	if err != nil {
		return nil, fmt.Errorf("proxy: listener %s: router: %w", listener.Name, err)
	}
	p := &httpProxy{
		base:            newBase(listener.Name, "http_proxy", reg, log),
		routes:          routes,
		clusters:        clusters,
		idleTimeout:     orDefault(cfg.IdleTimeout.Duration, config.DefaultIdleTimeout),
		upstreamTimeout: orDefault(cfg.UpstreamTimeout.Duration, config.DefaultUpstreamTimeout),
		linger:          lingerTimeout,
		requests:        map[string]*[6]*stats.Counter{},
	}
	labels := append(routes.clusters(), noClusterLabel)
	for _, name := range labels {
		if name != noClusterLabel && clusters.Get(name) == nil {
			return nil, fmt.Errorf("proxy: listener %s: route to unknown cluster %q", listener.Name, name)
		}
		var byClass [6]*stats.Counter
		for class := 1; class <= 5; class++ {
			byClass[class] = reg.Counter("http.downstream_rq_total", "Downstream HTTP requests answered.",
				"listener", listener.Name, "cluster", name, "status_class", strconv.Itoa(class)+"xx")
		}
		p.requests[name] = &byClass
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

// countRequest counts one answered request.
func (p *httpProxy) countRequest(clusterLabel string, status int) {
	byClass, ok := p.requests[clusterLabel]
	if !ok {
		byClass = p.requests[noClusterLabel]
	}
	class := status / 100
	if class < 1 || class > 5 {
		class = 5
	}
	byClass[class].Inc()
}

// Serve accepts HTTP connections on l until l is closed.
func (p *httpProxy) Serve(l net.Listener) error {
	return p.acceptLoop(l, p.handle)
}

func (p *httpProxy) handle(nc net.Conn) {
	c := p.newConn(nc)
	c.remove = p.tracker.Add(c)
	go c.serve()
}

// newConn prepares a downstream connection; the caller tracks and serves it.
func (p *httpProxy) newConn(nc net.Conn) *httpConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &httpConn{
		p:      p,
		nc:     nc,
		ctx:    ctx,
		cancel: cancel,
		rd:     &connReader{nc: nc, rx: p.rxBytes},
		buf:    make([]byte, bufSize),
		log:    p.log,
	}
	c.br = bufio.NewReaderSize(c.rd, 4<<10)
	c.bw = bufio.NewWriterSize(&connWriter{nc: nc, tx: p.txBytes, timeout: p.idleTimeout}, 4<<10)
	if tcp, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.clientIP = tcp.IP.String()
	}
	return c
}
