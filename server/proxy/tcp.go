package proxy

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/conntrack"
	"github.com/mosnlite/mosnlite/service/stats"
)

// tcpProxy relays every accepted connection to a host of one cluster.
type tcpProxy struct {
	*base
	cluster  *cluster.Cluster
	clusters *cluster.Manager
	metrics  *stats.TCPListenerMetrics
	owner    *sessionOwner // what its sessions share
	// observers are called at the end of every session with its record
	// (WithSessionObserver).
	observers []func(info *RequestInfo)
}

// TCPOption sets what a TCP proxy takes besides its config.
type TCPOption func(*tcpProxy)

// WithTCPMetrics records the proxy's sessions in m, built by the caller for
// the listener and its cluster; without it the proxy registers its own
// series.
func WithTCPMetrics(m *stats.TCPListenerMetrics) TCPOption {
	return func(p *tcpProxy) { p.metrics = m }
}

// WithSessionObserver calls observe at the end of every session that ends
// in this process (one moved to a successor ends there) with its record:
// start, duration, bytes each way, addresses, the upstream host, flags. It
// runs on the session's goroutine and must not keep info.
func WithSessionObserver(observe func(info *RequestInfo)) TCPOption {
	return func(p *tcpProxy) { p.observers = append(p.observers, observe) }
}

// NewTCP builds the TCP proxy for listener; its filter names the cluster,
// which must exist.
func NewTCP(listener config.Listener, clusters *cluster.Manager, reg *stats.Registry, log *logrus.Entry, opts ...TCPOption) (Proxy, error) {
	return newTCP(listener, clusters, reg, log, opts...)
}

func newTCP(listener config.Listener, clusters *cluster.Manager, reg *stats.Registry, log *logrus.Entry, opts ...TCPOption) (*tcpProxy, error) {
	f := findFilter(listener)
	if f == nil || f.TCP == nil {
		return nil, fmt.Errorf("proxy: listener %s: no tcp_proxy filter", listener.Name)
	}
	if clusters == nil {
		return nil, fmt.Errorf("proxy: listener %s: no cluster manager", listener.Name)
	}
	cl := clusters.Get(f.TCP.Cluster)
	if cl == nil {
		return nil, fmt.Errorf("proxy: listener %s: unknown cluster %q", listener.Name, f.TCP.Cluster)
	}
	if reg == nil {
		reg = stats.New()
	}
	p := &tcpProxy{
		base:     newBase(listener.Name, "tcp_proxy", reg, log),
		cluster:  cl,
		clusters: clusters,
	}
	for _, o := range opts {
		o(p)
	}
	if p.metrics == nil {
		p.metrics = stats.NewTCPListenerMetrics(reg, listener.Name, cl.Name())
	}
	p.owner = &sessionOwner{base: p.base, kind: KindTCP, cluster: cl, clusters: clusters, ended: p.sessionEnded,
		idleTimeout: orDefault(f.TCP.IdleTimeout.Duration, config.DefaultIdleTimeout)}
	return p, nil
}

// Serve accepts TCP sessions on l until l is closed.
func (p *tcpProxy) Serve(l net.Listener) error {
	return p.acceptLoop(l, p.handle)
}

func (p *tcpProxy) handle(nc net.Conn) {
	if p.handshaker != nil {
		started := time.Now() // a session's time counts from its accept, handshake included
		p.begin(nc, func(c net.Conn, _ string, placeholder conntrack.Conn) {
			s := p.newSession(c, started)
			s.remove = p.tracker.Replace(placeholder, s)
			s.run()
		})
		return
	}
	s := p.newSession(nc, time.Now())
	s.remove = p.tracker.AddSince(s, s.started)
	go s.run()
}

// newSession makes the session of an accepted connection; the caller
// tracks and runs it.
func (p *tcpProxy) newSession(nc net.Conn, started time.Time) *tcpSession {
	p.metrics.Sessions().Inc()
	ctx, cancel := context.WithCancel(context.Background())
	return &tcpSession{p: p.owner, down: nc, ctx: ctx, cancel: cancel, started: started, id: p.clusters.NextConnID()}
}
