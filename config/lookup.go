package config

// Cluster returns the cluster called name, or nil.
func (c *Config) Cluster(name string) *Cluster {
	for i := range c.ClusterManager.Clusters {
		if c.ClusterManager.Clusters[i].Name == name {
			return &c.ClusterManager.Clusters[i]
		}
	}
	return nil
}

// Router returns the server's router called name, or nil.
func (s *Server) Router(name string) *Router {
	for i := range s.Routers {
		if s.Routers[i].RouterConfigName == name {
			return &s.Routers[i]
		}
	}
	return nil
}
