package server

import (
	"fmt"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy"
	"github.com/mosnlite/mosnlite/service/stats"
)

// initObservability sets how the registry is exposed (metrics.naming,
// metrics.native_histograms), registers the series that describe the
// process (build, start times) and the data plane's series named by the
// config, so that every series a dashboard reads exists from the first
// scrape.
func (s *Server) initObservability() error {
	e := stats.Exposition{Now: s.fx.now, ListenerAddress: s.listenerAddress}
	if m := s.cfg.Metrics; m != nil {
		e.Naming, e.NativeHistograms = stats.Naming(m.Naming), m.NativeHistograms
	}
	if err := s.reg.SetExposition(e); err != nil {
		return fmt.Errorf("server: metrics: %w", err)
	}
	b := s.opts.Build
	stats.RegisterProcess(s.reg, stats.Build{Version: b.Version, Commit: b.Commit, GoVersion: b.GoVersion},
		func() time.Time {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.startTime
		},
		func() time.Time {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.firstStart
		})
	registerDataPlaneSeries(s.cfg, s.reg)
	return nil
}

// registerDataPlaneSeries registers, at zero, the series of every listener
// and cluster of cfg and the migration counters (the upgrade histograms are
// the lifecycle's: processMetrics).
//
// TODO(issue 14, phase 2): the HTTP engine, the TCP proxy and the lifecycle
// create these handles themselves and observe into them; this goes away.
func registerDataPlaneSeries(cfg *config.Config, reg *stats.Registry) {
	for _, c := range cfg.ClusterManager.Clusters {
		hosts := make([]string, 0, len(c.Hosts))
		for _, h := range c.Hosts {
			hosts = append(hosts, h.Address)
		}
		stats.NewClusterMetrics(reg, c.Name, hosts)
	}
	for i := range cfg.Servers {
		srv := &cfg.Servers[i]
		for _, l := range srv.Listeners {
			if len(l.FilterChains) != 1 || len(l.FilterChains[0].Filters) != 1 {
				continue
			}
			kind := proxy.KindTCP
			switch f := l.FilterChains[0].Filters[0]; {
			case f.HTTP != nil:
				stats.NewHTTPListenerMetrics(reg, l.Name, routedClusters(srv.Router(f.HTTP.RouterConfigName)))
				kind = proxy.KindHTTP
			case f.TCP != nil:
				stats.NewTCPListenerMetrics(reg, l.Name, f.TCP.Cluster)
			default:
				continue
			}
			if !l.DisableMigration {
				stats.MigrationCounters(reg, l.Name, kind)
			}
		}
	}
}

// routedClusters lists the clusters r's routes lead to, each once.
func routedClusters(r *config.Router) []string {
	if r == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, vh := range r.VirtualHosts {
		for _, rt := range vh.Routers {
			if rt.Route != nil && !seen[rt.Route.ClusterName] {
				seen[rt.Route.ClusterName] = true
				out = append(out, rt.Route.ClusterName)
			}
		}
	}
	return out
}

// listenerAddress is the network and bound address of proxy listener name,
// for the Envoy naming's envoy_listener_address.
func (s *Server) listenerAddress(name string) (network, address string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plane == nil {
		return "", "", false
	}
	for _, p := range s.plane.parts {
		if p.proxy != nil && p.spec.Name == name && p.ln != nil {
			return p.ln.Spec.Network, p.ln.Spec.Address, true
		}
	}
	return "", "", false
}

// recordUpgrade records how the upgrade that started this process went, once
// its predecessor is done: the handoff time and the connections it moved here.
func (s *Server) recordUpgrade(adopt *adopter) {
	s.mu.Lock()
	gen, started := s.generation, s.startTime
	s.mu.Unlock()
	migrated := 0
	if adopt != nil {
		for _, n := range adopt.total() {
			migrated += n
		}
	}
	handoff := time.Duration(s.m.lastHandoffSeconds.Value() * float64(time.Second))
	stats.SetUpgrade(s.reg, stats.Upgrade{Generation: gen, Started: started, Handoff: handoff, Migrated: migrated})
}
