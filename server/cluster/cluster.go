// Package cluster holds the upstream clusters: their hosts, load balancing,
// connecting with timeout and retry, active health checks and the pooled
// HTTP transport of each cluster.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

// ErrNoHealthyHost is returned (wrapped) by DialContext when no host of the
// cluster is healthy, or none is left to try.
var ErrNoHealthyHost = errors.New("no healthy host")

// defaultMaxIdleConnsPerHost is the HTTP upstream pool size per host when the
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
	transport      *http.Transport
	health         *config.HealthCheck // nil: no active health check
	log            *logrus.Entry

	cxTotal      *stats.Counter
	connectFail  *stats.Counter
	healthyHosts *stats.Gauge
}

func newCluster(cfg config.Cluster, reg *stats.Registry, log *logrus.Entry) (*Cluster, error) {
	lb, err := newBalancer(cfg.LBType, len(cfg.Hosts))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cfg.Name, err)
	}
	c := &Cluster{
		name:           cfg.Name,
		lb:             lb,
		connectTimeout: cfg.ConnectTimeout.Duration,
		log:            log.WithField("cluster", cfg.Name),
		cxTotal: reg.Counter("cluster.upstream_cx_total",
			"Upstream connection attempts.", "cluster", cfg.Name),
		connectFail: reg.Counter("cluster.upstream_cx_connect_fail_total",
			"Upstream connection attempts that failed.", "cluster", cfg.Name),
		healthyHosts: reg.Gauge("cluster.healthy_hosts",
			"Hosts currently passing health checks.", "cluster", cfg.Name),
	}
	if c.connectTimeout <= 0 {
		c.connectTimeout = config.DefaultConnectTimeout
	}
	d := &net.Dialer{Timeout: c.connectTimeout}
	c.dial = d.DialContext
	for i, h := range cfg.Hosts {
		if h.Address == "" {
			return nil, fmt.Errorf("cluster %s: host %d: empty address", cfg.Name, i)
		}
		c.hosts = append(c.hosts, newHost(i, h.Network, h.Address, h.Weight))
	}
	if cfg.HealthCheck != nil {
		hc := *cfg.HealthCheck
		c.health = &hc
	}
	c.healthyHosts.Set(float64(len(c.hosts)))

	perHost := cfg.MaxIdleConns
	if perHost <= 0 {
		perHost = defaultMaxIdleConnsPerHost
	}
	c.transport = &http.Transport{
		Proxy: nil,
		// The URL host of an upstream request is the PoolKey of the host the
		// proxy picked for it, so the pool is per host and the load balancer
		// chooses per request.
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			h := c.hostByKey(addr)
			if h == nil {
				return nil, fmt.Errorf("cluster %s: no host for pool key %q", c.name, addr)
			}
			return c.dialHost(ctx, h)
		},
		MaxIdleConnsPerHost:    perHost,
		IdleConnTimeout:        upstreamIdleConnTimeout,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	c.transport.Protocols = &protos
	return c, nil
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

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

// Transport returns the cluster's pooled HTTP/1.1 upstream transport. A
// request through it names its host by URL host = Host.PoolKey(); see Pick.
func (c *Cluster) Transport() *http.Transport { return c.transport }

// Pick chooses a healthy host by the load-balancing policy, skipping those in
// tried; nil when none is left.
func (c *Cluster) Pick(tried []*Host) *Host {
	return c.lb.pick(c.hosts, func(h *Host) bool {
		if !h.Healthy() {
			return false
		}
		for _, t := range tried {
			if t == h {
				return false
			}
		}
		return true
	})
}

// ConnectError is a failed connect to one upstream host: nothing was sent,
// so the request may go to another host.
type ConnectError struct {
	Host *Host
	Err  error
}

func (e *ConnectError) Error() string { return "connect to " + e.Host.address + ": " + e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// dialHost connects to h within the connect timeout, counting the attempt.
func (c *Cluster) dialHost(ctx context.Context, h *Host) (net.Conn, error) {
	c.cxTotal.Inc()
	conn, err := c.dial(ctx, h.network, h.address)
	if err != nil {
		c.connectFail.Inc()
		c.log.WithError(err).WithField("host", h.address).Debug("upstream connect failed")
		return nil, &ConnectError{Host: h, Err: err}
	}
	return &hostConn{Conn: conn, host: h}, nil
}

func (c *Cluster) hostByKey(addr string) *Host {
	key, _, err := net.SplitHostPort(addr)
	if err != nil {
		key = addr
	}
	for _, h := range c.hosts {
		if h.PoolKey() == key {
			return h
		}
	}
	return nil
}

// DialContext connects to a healthy host picked by the load balancer, within
// the connect timeout. A host that fails to connect is not tried again in
// this call; the next one is. It returns an error wrapping ErrNoHealthyHost
// when no host is healthy, else the last connect error.
func (c *Cluster) DialContext(ctx context.Context) (net.Conn, *Host, error) {
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
			return conn.(*hostConn).Conn, h, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr == nil {
		return nil, nil, fmt.Errorf("cluster %s: %w", c.name, ErrNoHealthyHost)
	}
	return nil, nil, fmt.Errorf("cluster %s: connect (%d hosts tried): %w", c.name, len(tried), lastErr)
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
	// Pooled connections may go to the host that just failed.
	c.transport.CloseIdleConnections()
}
