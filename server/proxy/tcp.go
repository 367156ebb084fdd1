package proxy

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/service/stats"
)

// tcpProxy relays every accepted connection to a host of one cluster.
type tcpProxy struct {
	*base
	cluster     *cluster.Cluster
	idleTimeout time.Duration
	sessions    *stats.Counter
}

// NewTCP builds the TCP proxy for listener; its filter names the cluster,
// which must exist.
func NewTCP(listener config.Listener, clusters *cluster.Manager, reg *stats.Registry, log *logrus.Entry) (Proxy, error) {
	return newTCP(listener, clusters, reg, log)
}

func newTCP(listener config.Listener, clusters *cluster.Manager, reg *stats.Registry, log *logrus.Entry) (*tcpProxy, error) {
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
	return &tcpProxy{
		base:        newBase(listener.Name, "tcp_proxy", reg, log),
		cluster:     cl,
		idleTimeout: orDefault(f.TCP.IdleTimeout.Duration, config.DefaultIdleTimeout),
		sessions: reg.Counter("tcp.downstream_sessions_total", "TCP proxy sessions accepted.",
			"listener", listener.Name, "cluster", cl.Name()),
	}, nil
}

// Serve accepts TCP sessions on l until l is closed.
func (p *tcpProxy) Serve(l net.Listener) error {
	return p.acceptLoop(l, p.handle)
}

func (p *tcpProxy) handle(nc net.Conn) {
	p.sessions.Inc()
	ctx, cancel := context.WithCancel(context.Background())
	s := &tcpSession{p: p, down: nc, ctx: ctx, cancel: cancel}
	s.remove = p.tracker.Add(s)
	go s.run()
}
