package config

import (
	"strings"
	"time"
)

// Defaults not declared in types.go; ApplyDefaults uses them all.
const (
	DefaultMaxIdleConns        = 64
	DefaultHostWeight          = 1
	DefaultHealthCheckInterval = 5 * time.Second
	DefaultHealthCheckTimeout  = 2 * time.Second
	DefaultHealthyThreshold    = 2
	DefaultUnhealthyThreshold  = 2
	DefaultLBType              = LBRoundRobin
	DefaultListenerNetwork     = NetworkTCP
	DefaultHostNetwork         = NetworkTCP
	DefaultServiceNetwork      = NetworkTCP
)

// ApplyDefaults fills every field left at its zero value that has a default,
// and lower-cases log levels so that "DEBUG" (MOSN's spelling) reads as
// "debug". It does not touch values that are set, even invalid ones: those
// are for Validate to report.
func (c *Config) ApplyDefaults() {
	setDuration(&c.HandoffTimeout, DefaultHandoffTimeout)
	for i := range c.Servers {
		s := &c.Servers[i]
		setDuration(&s.GracefulTimeout, DefaultGracefulTimeout)
		if s.DefaultLogLevel == "" {
			s.DefaultLogLevel = DefaultLogLevel
		}
		s.DefaultLogLevel = strings.ToLower(s.DefaultLogLevel)
		setString(&s.LogFormat, DefaultLogFormat)
		for j := range s.Listeners {
			l := &s.Listeners[j]
			setString(&l.Network, DefaultListenerNetwork)
			for k := range l.FilterChains {
				for m := range l.FilterChains[k].Filters {
					f := &l.FilterChains[k].Filters[m]
					if f.HTTP != nil {
						setDuration(&f.HTTP.IdleTimeout, DefaultIdleTimeout)
						setDuration(&f.HTTP.UpstreamTimeout, DefaultUpstreamTimeout)
					}
					if f.TCP != nil {
						setDuration(&f.TCP.IdleTimeout, DefaultIdleTimeout)
					}
				}
			}
		}
	}
	for i := range c.ClusterManager.Clusters {
		cl := &c.ClusterManager.Clusters[i]
		setString(&cl.LBType, DefaultLBType)
		setDuration(&cl.ConnectTimeout, DefaultConnectTimeout)
		if cl.MaxIdleConns == 0 {
			cl.MaxIdleConns = DefaultMaxIdleConns
		}
		for j := range cl.Hosts {
			h := &cl.Hosts[j]
			setString(&h.Network, DefaultHostNetwork)
			if h.Weight == 0 {
				h.Weight = DefaultHostWeight
			}
		}
		if hc := cl.HealthCheck; hc != nil {
			setDuration(&hc.Interval, DefaultHealthCheckInterval)
			setDuration(&hc.Timeout, DefaultHealthCheckTimeout)
			if hc.HealthyThreshold == 0 {
				hc.HealthyThreshold = DefaultHealthyThreshold
			}
			if hc.UnhealthyThreshold == 0 {
				hc.UnhealthyThreshold = DefaultUnhealthyThreshold
			}
		}
	}
	for _, s := range []*ServiceConfig{c.Admin, c.Pprof, c.Metrics} {
		if s != nil {
			setString(&s.Network, DefaultServiceNetwork)
		}
	}
}

func setDuration(d *Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}
