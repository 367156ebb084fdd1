package cluster

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service"
	"github.com/mosnlite/mosnlite/service/stats"
)

// Manager holds every cluster of one process and runs their health checks.
type Manager struct {
	clusters map[string]*Cluster
	log      *logrus.Entry
	// ids numbers the process's connections, upstream and downstream
	// (MOSN's connection_id and upstream_connection_id).
	ids atomic.Uint64

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// ManagerOption sets what a Manager takes besides its config.
type ManagerOption func(*managerOptions)

type managerOptions struct {
	metrics map[string]*stats.ClusterMetrics
}

// WithMetrics gives the clusters their series, by cluster name (the
// process builds them with its other data-plane series). A cluster left
// out gets series of its own in the registry.
func WithMetrics(byCluster map[string]*stats.ClusterMetrics) ManagerOption {
	return func(o *managerOptions) { o.metrics = byCluster }
}

// NewManager builds the clusters. It fails on a duplicate name, an unknown
// lb_type or a host without an address. Health checks start with Start.
func NewManager(cfgs []config.Cluster, reg *stats.Registry, log *logrus.Entry, opts ...ManagerOption) (*Manager, error) {
	if reg == nil {
		reg = stats.New()
	}
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	var o managerOptions
	for _, opt := range opts {
		opt(&o)
	}
	log = log.WithField("component", "cluster")
	m := &Manager{clusters: make(map[string]*Cluster, len(cfgs)), log: log}
	for _, cfg := range cfgs {
		if _, dup := m.clusters[cfg.Name]; dup {
			return nil, fmt.Errorf("cluster: duplicate cluster %q", cfg.Name)
		}
		cm := o.metrics[cfg.Name]
		if cm == nil {
			cm = stats.NewClusterMetrics(reg, cfg.Name, HostAddresses(cfg))
		}
		c, err := newCluster(cfg, reg, cm, log, &m.ids)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		m.clusters[cfg.Name] = c
	}
	return m, nil
}

// HostAddresses are the addresses of cfg's hosts, in config order: the host
// label of its series.
func HostAddresses(cfg config.Cluster) []string {
	out := make([]string, len(cfg.Hosts))
	for i, h := range cfg.Hosts {
		out[i] = h.Address
	}
	return out
}

// NextConnID numbers a downstream connection (upstream ones are numbered
// by the cluster): ids are unique in the process.
func (m *Manager) NextConnID() uint64 { return m.ids.Add(1) }

// Certificates describes the certificates of every cluster with TLS, in no
// particular order.
func (m *Manager) Certificates() []service.CertificateSet {
	var out []service.CertificateSet
	for _, c := range m.clusters {
		out = append(out, c.Certificates()...)
	}
	return out
}

// Get returns the named cluster, or nil.
func (m *Manager) Get(name string) *Cluster { return m.clusters[name] }

// Start runs the active health checks until ctx ends or Close is called.
// Calling it again, or after Close, does nothing.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.closed {
		return
	}
	m.started = true
	ctx, m.cancel = context.WithCancel(ctx)
	for _, c := range m.clusters {
		if c.health == nil {
			continue
		}
		for _, h := range c.hosts {
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				c.runHealthCheck(ctx, h)
			}()
		}
	}
}

// Close stops the health checks, waits for them, and closes idle pooled
// upstream connections.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	m.wg.Wait()
	for _, c := range m.clusters {
		for _, h := range c.hosts {
			h.closeIdle(true)
		}
	}
}
