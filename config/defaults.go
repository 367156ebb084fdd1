package config

import (
	"strings"
	"time"
)

// Defaults not declared in types.go; ApplyDefaults uses them all.
const (
	DefaultMaxIdleConns = 64
	DefaultHostWeight   = 1
	// Health check defaults are MOSN's.
	DefaultHealthCheckInterval = 15 * time.Second
	DefaultHealthCheckTimeout  = time.Second
	DefaultHealthyThreshold    = 1
	DefaultUnhealthyThreshold  = 1
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
	if c.UpgradeWatchPeriod == nil {
		c.UpgradeWatchPeriod = &Duration{DefaultUpgradeWatchPeriod}
	}
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
					if h := f.HTTP; h != nil {
						setDuration(&h.IdleTimeout, DefaultIdleTimeout)
						setDuration(&h.UpstreamTimeout, DefaultUpstreamTimeout)
						setDuration(&h.RequestHeaderTimeout, DefaultRequestHeaderTimeout)
						setInt(&h.MaxRequestHeadersKB, DefaultMaxRequestHeadersKB)
						setInt(&h.MaxRequestHeadersCount, DefaultMaxRequestHeadersCount)
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
		setInt(&cl.MaxIdleConns, DefaultMaxIdleConns)
		for j := range cl.Hosts {
			h := &cl.Hosts[j]
			setString(&h.Network, DefaultHostNetwork)
			setInt(&h.Weight, DefaultHostWeight)
		}
		if hc := cl.HealthCheck; hc != nil {
			setDuration(&hc.Interval, DefaultHealthCheckInterval)
			setDuration(&hc.Timeout, DefaultHealthCheckTimeout)
			setInt(&hc.HealthyThreshold, DefaultHealthyThreshold)
			setInt(&hc.UnhealthyThreshold, DefaultUnhealthyThreshold)
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

func setInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}
