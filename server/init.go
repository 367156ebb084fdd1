package server

// Init builds everything Start would — clusters, proxies with their route
// tables, service handlers — from the config, without binding a socket or
// touching a running process, and reports what fails. It is Envoy's
// --mode init_only; the server is not started.
func (s *Server) Init() error {
	pl, err := s.build()
	if err != nil {
		return err
	}
	pl.clusters.Close()
	return nil
}
