package server

import (
	"fmt"
	"time"

	"github.com/mosnlite/mosnlite/service/stats"
)

// initObservability sets how the registry is exposed (metrics.naming,
// metrics.native_histograms) and registers the series that describe the
// process (build, start times). The data plane's series are built with the
// plane (build.go), the upgrade histograms with the process's other
// metrics (processMetrics).
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
	return nil
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
