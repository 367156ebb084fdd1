package server

import (
	"encoding/json"
	"fmt"

	"github.com/mosnlite/mosnlite/service"
)

// ServerInfo implements service.Info.
func (s *Server) ServerInfo() service.ServerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := service.ServerInfo{
		PID:                  s.opts.PID,
		Version:              s.opts.Build.Version,
		Commit:               s.opts.Build.Commit,
		GoVersion:            s.opts.Build.GoVersion,
		State:                string(s.state),
		Generation:           s.generation,
		DrainingPID:          s.drainingPID,
		DrainingPIDElsewhere: s.drainingElsewhere,
		Instance:             s.opts.Instance,
		StartTime:            s.startTime,
		FirstStartTime:       s.firstStart,
		CommandLine:          s.opts.CommandLine,
		Options:              s.opts.CommandLineOptions,
	}
	if e := s.opts.Envoy; e != nil {
		info.RestartEpoch = e.RestartEpoch
		info.BaseID = e.BaseID
		if es, ok := s.style.(*envoyStyle); ok && es.hr != nil {
			info.BaseID = es.hr.BaseID() // the one chosen with --use-dynamic-base-id
		}
	}
	if s.opts.Envoy != nil {
		info.State = envoyStateName(s.state)
	}
	info.HotRestartVersion = s.HotRestartVersion()
	return info
}

// Listeners implements service.Info: every listener this process serves, with
// its real bound address.
func (s *Server) Listeners() []service.ListenerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []*part
	if s.plane != nil {
		parts = s.plane.parts
	}
	out := make([]service.ListenerInfo, 0, len(parts))
	for _, p := range parts {
		addr := p.spec.Address
		if p.ln != nil {
			addr = p.ln.Spec.Address
		}
		out = append(out, service.ListenerInfo{Name: p.spec.Name, Kind: string(p.spec.Kind), Network: p.spec.Network, Address: addr})
	}
	return out
}

// ConfigDump implements service.Info: the config in MOSN's shape, indented
// (encoding/json indents what config.Config's MarshalJSON writes).
func (s *Server) ConfigDump() ([]byte, error) {
	b, err := json.MarshalIndent(s.cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("server: config dump: %w", err)
	}
	return b, nil
}

// Ready implements service.Info: true once every listener serves.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == StateRunning
}

// DrainListeners implements service.Info (admin /drain_listeners): stop
// accepting on the proxy listeners and drain their connections; the
// service ports stay up.
func (s *Server) DrainListeners() {
	for _, p := range s.parts() {
		if p.proxy == nil {
			continue
		}
		if err := p.stopAccepting(); err != nil {
			s.log.WithError(err).Warn("drain listeners")
		}
		if p.ln != nil {
			_ = p.ln.Close() // nobody takes over: refuse new clients
		}
		p.drain()
	}
}

// envoyStateName is the state as Envoy's /server_info names it.
func envoyStateName(st State) string {
	switch st {
	case StateStarting:
		return "INITIALIZING"
	case StateRunning:
		return "LIVE"
	default:
		return "DRAINING"
	}
}
