package server

import "github.com/mosnlite/mosnlite/reconfig/envoy"

// EnvoyOptions are the Envoy hot-restart settings a process runs with.
type EnvoyOptions struct {
	envoy.Options
}

// HotRestartVersion implements service.Info: the hot-restart compatibility
// string, "disabled" when hot restart is off.
func (s *Server) HotRestartVersion() string {
	if s.opts.Envoy == nil {
		return envoy.Version(false)
	}
	return envoy.Version(s.opts.Envoy.DisableHotRestart)
}
