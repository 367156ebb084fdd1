// Package cluster holds the upstream clusters: their hosts, load balancing,
// connecting with timeout and retry, active health checks and each host's
// pool of idle upstream connections.
package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/tlsconf"
	"github.com/mosnlite/mosnlite/service"
	"github.com/mosnlite/mosnlite/service/stats"
)

// ErrNoHealthyHost is returned (wrapped) by DialContext when no host of the
// cluster is healthy, or none is left to try.
var ErrNoHealthyHost = errors.New("no healthy host")

// defaultMaxIdleConnsPerHost is the upstream pool size per host when the
// config leaves it zero.
const defaultMaxIdleConnsPerHost = 64

// upstreamIdleConnTimeout closes pooled upstream connections unused this long.
const upstreamIdleConnTimeout = 90 * time.Second

// dialFunc opens a connection to one host; injectable for tests.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Cluster is a named set of upstream hosts with a load-balancing policy.
type Cluster struct {
	name           string
	hosts          []*Host
	lb             balancer
	connectTimeout time.Duration
	dial           dialFunc
	now            func() time.Time
	health         *config.HealthCheck // nil: no active health check
	log            *logrus.Entry
	lim            *limits
	// maxUses closes a connection after it carried that many requests
	// (max_request_per_conn; 0: no limit); bufferLimit bounds what one
	// upstream connection holds in the proxy (conn_buffer_limit_bytes; 0:
	// the proxy's own sizes).
	maxUses     int
	bufferLimit int
	ids         *atomic.Uint64 // the process's connection ids
	// tlsRoots verify an https health check (nil: the system's CAs, as
	// MOSN's); injectable for tests.
	tlsRoots *x509.CertPool
	// after and jitter time the health checks; injectable for tests.
	after  func(time.Duration) <-chan time.Time
	jitter func(n int64) int64 // [0, n)
	// tls, if set, is the TLS of every connection to a host without
	// tls_disable, handshaken within the connect timeout.
	tls *tlsconf.Client

	cxTotal      *stats.Counter
	connectFail  *stats.Counter
	healthyHosts *stats.Gauge
	metrics      *stats.ClusterMetrics // connect time, open connections; the proxies' requests
}

func newCluster(cfg config.Cluster, reg *stats.Registry, m *stats.ClusterMetrics, log *logrus.Entry, ids *atomic.Uint64) (*Cluster, error) {
	lb, err := newBalancer(cfg.LBType, len(cfg.Hosts))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cfg.Name, err)
	}
	c := &Cluster{
		name:           cfg.Name,
		lb:             lb,
		connectTimeout: cfg.ConnectTimeout.Duration,
		log:            log.WithField("cluster", cfg.Name),
		lim:            newLimits(cfg, reg),
		maxUses:        max(cfg.MaxRequestPerConn, 0),
		bufferLimit:    max(cfg.ConnBufferLimitBytes, 0),
		ids:            ids,
		after:          time.After,
		jitter:         rand.Int64N,
		cxTotal: reg.Counter("cluster.upstream_cx_total",
			"Upstream connection attempts.", "cluster", cfg.Name),
		connectFail: reg.Counter("cluster.upstream_cx_connect_fail_total",
			"Upstream connection attempts that failed.", "cluster", cfg.Name),
		healthyHosts: reg.Gauge("cluster.healthy_hosts",
			"Hosts currently passing health checks.", "cluster", cfg.Name),
		metrics: m,
	}
	if c.connectTimeout <= 0 {
		c.connectTimeout = config.DefaultConnectTimeout
	}
	d := &net.Dialer{Timeout: c.connectTimeout}
	c.dial = d.DialContext
	c.now = time.Now
	perHost := cfg.MaxIdleConns
	if perHost <= 0 {
		perHost = defaultMaxIdleConnsPerHost
	}
	for i, h := range cfg.Hosts {
		if h.Address == "" {
			return nil, fmt.Errorf("cluster %s: host %d: empty address", cfg.Name, i)
		}
		host := newHost(i, h.Network, h.Address, h.Weight)
		host.hostname = h.Hostname
		host.pool.max = perHost
		host.plain = h.TLSDisable
		c.hosts = append(c.hosts, host)
	}
	if cfg.HealthCheck != nil {
		hc := *cfg.HealthCheck
		c.health = &hc
	}
	if c.tls, err = tlsconf.NewClient(&cfg, tlsconf.ClientOptions{Registry: reg}); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cfg.Name, err)
	}
	c.healthyHosts.Set(float64(len(c.hosts)))

	return c, nil
}

// Metrics returns the cluster's series: the proxies record their upstream
// requests in them.
func (c *Cluster) Metrics() *stats.ClusterMetrics { return c.metrics }

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

// BufferLimit is conn_buffer_limit_bytes: the most bytes one upstream
// connection may hold in the proxy while they are relayed, 0 for no limit
// of its own.
func (c *Cluster) BufferLimit() int { return c.bufferLimit }

// Hosts returns the cluster's hosts in config order. The slice must not be modified.
func (c *Cluster) Hosts() []*Host { return c.hosts }

// HealthyCount returns how many hosts are healthy now.
func (c *Cluster) HealthyCount() int {
	n := 0
	for _, h := range c.hosts {
		if h.Healthy() {
			n++
		}
	}
	return n
}

// Pick chooses a healthy host by the load-balancing policy, skipping those in
// tried; nil when none is left.
func (c *Cluster) Pick(tried []*Host) *Host {
	return c.lb.pick(c.hosts, tried)
}

// ConnectError is a failed connect to one upstream host: nothing was sent,
// so the request may go to another host.
type ConnectError struct {
	Host *Host
	Err  error
}

func (e *ConnectError) Error() string { return "connect to " + e.Host.address + ": " + e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// dialHost connects to h within the connect timeout, counting the attempt
// and timing the connect. The connection counts as open until its Close.
func (c *Cluster) dialHost(ctx context.Context, h *Host) (*Conn, error) {
	c.cxTotal.Inc()
	start := c.now()
	nc, err := c.connect(ctx, h, h.network, h.address)
	if err != nil {
		c.connectFail.Inc()
		c.log.WithError(err).WithField("host", h.address).Debug("upstream connect failed")
		return nil, &ConnectError{Host: h, Err: err}
	}
	c.metrics.Connected(h.address, c.now().Sub(start))
	return c.opened(nc, h), nil
}

// opened makes nc, to h, an upstream connection counted as open, with
// the next connection id of the process; its place under max_connections
// is taken.
func (c *Cluster) opened(nc net.Conn, h *Host) *Conn {
	c.metrics.ActiveConnections().Inc()
	conn := &Conn{Conn: nc, host: h, cl: c, open: c.metrics.ActiveConnections()}
	if c.ids != nil {
		conn.id = c.ids.Add(1)
	}
	return conn
}

// Inherited makes nc, an upstream connection to h (nil if unknown) that a
// predecessor process handed over with its session, one of the cluster's
// open connections, as if it had been dialled here: it counts against
// max_connections from now on, whatever the limit, until its Close.
func (c *Cluster) Inherited(nc net.Conn, h *Host) *Conn {
	c.lim.addConn()
	return c.opened(nc, h)
}

// connect opens a connection to h: plain, or with its TLS handshake done,
// both within the connect timeout. A failed handshake is a failed connect:
// nothing was sent, another host may be tried.
// The address is h's, or (a health check's port) another port of it.
func (c *Cluster) connect(ctx context.Context, h *Host, network, address string) (net.Conn, error) {
	if c.tls == nil || h.plain {
		return c.dial(ctx, network, address)
	}
	ctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	nc, err := c.dial(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c.tls.Handshake(ctx, nc, address)
}

// Certificates describes the certificates of the cluster's TLS, none without.
func (c *Cluster) Certificates() []service.CertificateSet {
	if c.tls == nil {
		return nil
	}
	return c.tls.Certificates()
}

// DialContext connects to a healthy host picked by the load balancer, within
// the connect timeout, for a session of its own (the TCP proxy's): the
// connection counts against max_connections until its Close, and at that
// limit (after closing an idle pooled connection, if any) it is refused
// with an *OverflowError. A host that fails to connect is not tried again
// in this call; the next one is. It returns an error wrapping
// ErrNoHealthyHost when no host is healthy, else the last connect error.
// The connection is the caller's (its Host is the one picked); it counts as
// open until its Close.
func (c *Cluster) DialContext(ctx context.Context) (*Conn, error) {
	for !c.lim.takeConn() {
		if !c.evictIdle() {
			c.lim.cxOverflow.Inc()
			return nil, &OverflowError{Cluster: c.name, Limit: "max_connections", Max: c.lim.maxConns}
		}
	}
	var tried []*Host
	var lastErr error
	for range c.hosts {
		h := c.Pick(tried)
		if h == nil {
			break
		}
		tried = append(tried, h)
		conn, err := c.dialHost(ctx, h)
		if err == nil {
			return conn, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	c.lim.releaseConn()
	if lastErr == nil {
		return nil, fmt.Errorf("cluster %s: %w", c.name, ErrNoHealthyHost)
	}
	return nil, fmt.Errorf("cluster %s: connect (%d hosts tried): %w", c.name, len(tried), lastErr)
}

// setHealthy flips h's health and keeps the gauge and the pool in step.
func (c *Cluster) setHealthy(h *Host, healthy bool) {
	if h.healthy.Swap(healthy) == healthy {
		return
	}
	if healthy {
		c.healthyHosts.Inc()
		c.log.WithField("host", h.address).Info("host healthy")
		return
	}
	c.healthyHosts.Dec()
	c.log.WithField("host", h.address).Warn("host unhealthy")
	// Its pooled connections go: the host just failed.
	h.closeIdle(false)
}
