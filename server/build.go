package server

import (
	"fmt"
	"net/http"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy"
	"github.com/mosnlite/mosnlite/server/tlsconf"
	"github.com/mosnlite/mosnlite/service"
	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/sirupsen/logrus"
)

// Service listener names. They identify the service sockets across a handoff.
const (
	ServiceAdmin   = "admin"
	ServicePprof   = "pprof"
	ServiceMetrics = "metrics"
)

// build creates a plane: the cluster manager and one part per configured
// listener, services first. Nothing is bound yet.
func (s *Server) build() (*plane, error) {
	clusters, parts, err := s.buildParts()
	if err != nil {
		return nil, err
	}
	return &plane{clusters: clusters, parts: parts}, nil
}

func (s *Server) buildParts() (*cluster.Manager, []*part, error) {
	// The data plane's series, all built here so that every one a
	// dashboard reads exists, at zero, from the first scrape.
	clusterMetrics := map[string]*stats.ClusterMetrics{}
	for _, c := range s.cfg.ClusterManager.Clusters {
		clusterMetrics[c.Name] = stats.NewClusterMetrics(s.reg, c.Name, cluster.HostAddresses(c))
	}
	clusters, err := cluster.NewManager(s.cfg.ClusterManager.Clusters, s.reg, s.opts.Log.WithField("component", "cluster"),
		cluster.WithMetrics(clusterMetrics))
	if err != nil {
		return nil, nil, fmt.Errorf("server: clusters: %w", err)
	}
	var parts []*part
	// What every HTTP listener of the process shares: one idle-connection
	// poller, one memory reclaimer.
	httpRT := proxy.NewHTTPRuntime(s.opts.Log)
	svcs := []struct {
		name string
		cfg  *config.ServiceConfig
		h    func() (http.Handler, error)
	}{
		{ServiceAdmin, s.cfg.Admin, func() (http.Handler, error) {
			return service.NewAdminHandler(s, s.reg, s.fx.now, s.opts.Log.WithField("component", "admin")), nil
		}},
		{ServicePprof, s.cfg.Pprof, func() (http.Handler, error) { return service.NewPprofHandler(), nil }},
		{ServiceMetrics, s.cfg.Metrics, func() (http.Handler, error) {
			m := s.cfg.Metrics
			return service.NewMetricsHandlerWith(s.reg, service.MetricsOptions{
				Path: m.Path, NoGoCollector: m.DisableGoMetrics, NoProcessCollector: m.DisableProcessMetrics})
		}},
	}
	for _, sv := range svcs {
		if sv.cfg == nil || sv.cfg.Address == "" {
			continue
		}
		spec, err := ident.New(sv.name, listener.KindService, sv.cfg.Network, sv.cfg.Address)
		if err != nil {
			return nil, nil, fmt.Errorf("server: %s: %w", sv.name, err)
		}
		h, err := sv.h()
		if err != nil {
			return nil, nil, fmt.Errorf("server: %s: %w", sv.name, err)
		}
		parts = append(parts, &part{spec: spec, svc: service.NewServer(sv.name, h, s.opts.Log.WithField("component", sv.name))})
	}
	for i := range s.cfg.Servers {
		srv := &s.cfg.Servers[i]
		log := s.serverLog(i)
		for j, l := range srv.Listeners {
			spec, err := ident.New(l.Name, listener.KindServer, l.Network, l.Address)
			if err != nil {
				return nil, nil, fmt.Errorf("server: listener %s: %w", l.Name, err)
			}
			hs, err := tlsconf.NewServer(&l, tlsconf.ServerOptions{Registry: s.reg, Ring: s.ticketRing(), Now: s.fx.now,
				HTTP: len(l.FilterChains) == 1 && len(l.FilterChains[0].Filters) == 1 && l.FilterChains[0].Filters[0].HTTP != nil})
			if err != nil {
				return nil, nil, fmt.Errorf("server: listener %s: %w", l.Name, err)
			}
			p, err := s.newProxy(l, fmt.Sprintf("servers[%d].listeners[%d]", i, j), srv, clusters, log, httpRT, hs)
			if err != nil {
				return nil, nil, fmt.Errorf("server: listener %s: %w", l.Name, err)
			}
			// A TLS connection cannot move with its crypto state: it drains.
			noMigration := l.DisableMigration || hs != nil
			if m, ok := p.(proxy.Migrator); ok && !noMigration {
				stats.MigrationCounters(s.reg, l.Name, m.Kind())
				if m.Kind() == proxy.KindHTTP { // and its upgraded connections
					stats.MigrationCounters(s.reg, l.Name, proxy.KindTunnel)
				}
			}
			parts = append(parts, &part{spec: spec, proxy: p, noMigration: noMigration, tls: hs})
		}
	}
	return clusters, parts, nil
}

func (s *Server) newProxy(l config.Listener, path string, srv *config.Server, clusters *cluster.Manager, log *logrus.Entry,
	httpRT *proxy.HTTPRuntime, hs *tlsconf.Server) (proxy.Proxy, error) {
	if len(l.FilterChains) != 1 || len(l.FilterChains[0].Filters) != 1 {
		return nil, fmt.Errorf("want exactly one filter chain with one filter")
	}
	f := l.FilterChains[0].Filters[0]
	log = log.WithField("listener", l.Name)
	// One line per request or session in each of the listener's access logs.
	var observers []func(*proxy.RequestInfo)
	for i, al := range l.AccessLogs {
		o, err := s.access.Observer(al)
		if err != nil {
			return nil, fmt.Errorf("%s.access_logs[%d].log_path: %w", path, i, err)
		}
		observers = append(observers, o)
	}
	switch {
	case f.HTTP != nil:
		r := srv.Router(f.HTTP.RouterConfigName)
		if r == nil {
			return nil, fmt.Errorf("router %q not found", f.HTTP.RouterConfigName)
		}
		routed, err := proxy.RouteClusters(r)
		if err != nil {
			return nil, err
		}
		opts := []proxy.HTTPOption{proxy.WithHTTPRuntime(httpRT),
			proxy.WithHTTPMetrics(stats.NewHTTPListenerMetrics(s.reg, l.Name, routed))}
		for _, o := range observers {
			opts = append(opts, proxy.WithRequestObserver(o))
		}
		if hs != nil {
			opts = append(opts, proxy.WithHandshake(hs))
		}
		return proxy.NewHTTP(l, r, clusters, s.reg, log.WithField("component", "http_proxy"), opts...)
	case f.TCP != nil:
		opts := []proxy.TCPOption{proxy.WithTCPMetrics(stats.NewTCPListenerMetrics(s.reg, l.Name, f.TCP.Cluster))}
		for _, o := range observers {
			opts = append(opts, proxy.WithSessionObserver(o))
		}
		if hs != nil {
			opts = append(opts, proxy.WithTCPHandshake(hs))
		}
		return proxy.NewTCP(l, clusters, s.reg, log.WithField("component", "tcp_proxy"), opts...)
	default:
		return nil, fmt.Errorf("filter type %q has no config", f.Type)
	}
}
