package config

import (
	"net"
	"strconv"
	"strings"
)

// MOSN's host weight range: weights outside it are clamped, as MOSN does.
const (
	MinHostWeight = 1
	MaxHostWeight = 128
)

// resolver turns MOSN's shapes and mosnlite's aliases into the forms the
// rest of mosnlite reads. It runs after decoding and before defaults;
// problems go to ps, notes for the user to ws.
type resolver struct {
	ps, ws *problems
	// moved maps the path a connection_manager router now has
	// (servers[i].routers[j]) to where it was written, for problem paths.
	moved map[string]string
}

func (c *Config) resolve(ps, ws *problems) map[string]string {
	r := &resolver{ps: ps, ws: ws, moved: map[string]string{}}
	r.services(c)
	for i := range c.Servers {
		r.server(&c.Servers[i], index("servers", i))
	}
	for i := range c.ClusterManager.Clusters {
		r.cluster(&c.ClusterManager.Clusters[i], index("cluster_manager.clusters", i))
	}
	return r.moved
}

// services resolves admin, pprof and metrics into ServiceConfigs.
func (r *resolver) services(c *Config) {
	if a := c.AdminConfig; a != nil {
		switch {
		case a.Address.SocketAddress != nil:
			if a.Network != "" {
				r.ps.add("admin.network", "only with mosnlite's address string form (MOSN's socket_address is tcp)")
			}
			sa := a.Address.SocketAddress
			if sa.PortValue < 0 || sa.PortValue > 65535 {
				r.ps.add("admin.address.socket_address.port_value", "%d: port out of range (0-65535)", sa.PortValue)
				break
			}
			c.Admin = &ServiceConfig{Address: hostPort(sa.Address, sa.PortValue), Network: NetworkTCP}
		case a.Address.Text != "":
			c.Admin = &ServiceConfig{Address: a.Address.Text, Network: strings.ToLower(a.Network)}
		default:
			r.ps.add("admin.address", `required: MOSN's {"socket_address": {"address": "127.0.0.1", "port_value": 34901}} or an address string`)
		}
	}
	if p := c.PprofConfig; p != nil {
		mosn := p.Debug || p.PortValue != 0 || p.Endpoint != ""
		switch {
		case p.Address != "" && mosn:
			r.ps.add("pprof", "address (mosnlite's form) and debug/port_value/endpoint (MOSN's) are mutually exclusive")
		case p.Address != "":
			c.Pprof = &ServiceConfig{Address: p.Address, Network: strings.ToLower(p.Network)}
		case p.Network != "":
			r.ps.add("pprof.network", "only with mosnlite's address form")
		case p.PortValue < 0 || p.PortValue > 65535:
			r.ps.add("pprof.port_value", "%d: port out of range (1-65535)", p.PortValue)
		case !p.Debug:
			if mosn {
				r.ws.add("pprof", "off: pprof.debug is not true (as in MOSN)")
			}
		default:
			port := p.PortValue
			if port == 0 {
				port = DefaultPprofPort
			}
			host := p.Endpoint
			if host == "" {
				host = "0.0.0.0"
			}
			c.Pprof = &ServiceConfig{Address: hostPort(host, port), Network: NetworkTCP}
		}
	}
	if m := c.MetricsConfig; m != nil {
		r.metrics(c, m)
		r.metricsShape(c, m)
	}
}

// metricsShape checks and applies mosnlite's metrics.naming and
// metrics.native_histograms to the resolved metrics port.
func (r *resolver) metricsShape(c *Config, m *MetricsConfig) {
	switch m.Naming {
	case "", MetricsNamingMosnlite, MetricsNamingEnvoy:
	default:
		r.ps.add("metrics.naming", "%q: want %q or %q", m.Naming, MetricsNamingMosnlite, MetricsNamingEnvoy)
		return
	}
	if m.Naming == MetricsNamingEnvoy && m.NativeHistograms {
		r.ps.add("metrics.native_histograms", "not available with naming %q: Envoy's histograms are in milliseconds, native buckets are powers of two", m.Naming)
		return
	}
	if c.Metrics == nil {
		if m.Naming != "" || m.NativeHistograms {
			r.ws.add("metrics", "naming and native_histograms have no effect without a metrics port (address, or a prometheus sink)")
		}
		return
	}
	c.Metrics.Naming, c.Metrics.NativeHistograms = m.Naming, m.NativeHistograms
}

func (r *resolver) metrics(c *Config, m *MetricsConfig) {
	if m.Address != "" {
		if len(m.Sinks) > 0 {
			r.ps.add("metrics", "address (mosnlite's form) and sinks (MOSN's) are mutually exclusive")
			return
		}
		c.Metrics = &ServiceConfig{Address: m.Address, Network: strings.ToLower(m.Network), Path: DefaultMetricsPath}
		return
	}
	if m.Network != "" {
		r.ps.add("metrics.network", "only with mosnlite's address form")
	}
	for i, s := range m.Sinks {
		p := index("metrics.sinks", i)
		switch s.Type {
		case "prometheus":
		case "console":
			r.ws.add(p, "ignored by mosnlite (MOSN's console sink; metrics are served by the prometheus sink)")
			continue
		case "":
			r.ps.add(field(p, "type"), "required (prometheus or console)")
			continue
		default:
			r.ps.add(field(p, "type"), "unknown metrics sink type %q (MOSN's are prometheus and console)", s.Type)
			continue
		}
		cp := field(p, "config")
		ps := s.Prometheus
		switch {
		case c.Metrics != nil:
			r.ps.add(p, "a second prometheus sink: mosnlite serves one metrics port")
			continue
		case ps.ExportURL != "":
			r.ps.add(field(cp, "export_url"), "MOSN's Prometheus push gateway mode is not supported by mosnlite (nor by MOSN)")
			continue
		case ps.Port == 0:
			r.ps.add(field(cp, "port"), "required (as in MOSN)")
			continue
		case ps.Port < 0 || ps.Port > 65535:
			r.ps.add(field(cp, "port"), "%d: port out of range (1-65535)", ps.Port)
			continue
		case ps.Endpoint != "" && !strings.HasPrefix(ps.Endpoint, "/"):
			r.ps.add(field(cp, "endpoint"), "%q: must start with / (as in MOSN)", ps.Endpoint)
			continue
		}
		path := ps.Endpoint
		if path == "" {
			path = DefaultMetricsPath
		}
		c.Metrics = &ServiceConfig{
			Address: hostPort("0.0.0.0", ps.Port), Network: NetworkTCP, Path: path,
			DisableGoMetrics: ps.DisableCollectGo, DisableProcessMetrics: ps.DisableCollectProcess,
		}
	}
}

// hostPort joins an IP (empty: every interface) and a port.
func hostPort(host string, port int) string {
	if host == "" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func (r *resolver) server(s *Server, path string) {
	for i := range s.Listeners {
		r.listener(s, &s.Listeners[i], index(field(path, "listeners"), i), path)
	}
	for i := range s.Routers {
		r.router(&s.Routers[i], index(field(path, "routers"), i))
	}
}

func (r *resolver) listener(s *Server, l *Listener, path, serverPath string) {
	l.Network = strings.ToLower(l.Network)
	if l.Name == "" {
		if a, err := parseListenAddr(l.Network, l.Address); err == nil {
			l.Name = a.String() // MOSN names a nameless listener by its address
		}
	}
	for i := range l.FilterChains {
		fc := &l.FilterChains[i]
		fp := field(index(field(path, "filter_chains"), i), "filters")
		kept := fc.Filters[:0:0]
		for j := range fc.Filters {
			f := &fc.Filters[j]
			cp := field(index(fp, j), "config")
			switch {
			case f.Router != nil:
				// MOSN's deprecated connection_manager: a route table
				// declared beside the proxy filter.
				r.moved[index(field(serverPath, "routers"), len(s.Routers))] = cp
				s.Routers = append(s.Routers, *f.Router)
				continue
			case f.HTTP != nil:
				r.httpFilter(f.HTTP, l, cp)
			case f.TCP != nil:
				r.tcpFilter(f.TCP, l, cp)
			}
			kept = append(kept, *f)
		}
		fc.Filters = kept
	}
}

func (r *resolver) httpFilter(h *HTTPProxyConfig, l *Listener, path string) {
	if h.IdleTimeout.Duration == 0 && l.ConnectionIdleTimeout != nil {
		h.IdleTimeout = *l.ConnectionIdleTimeout
	}
	r.extendConfig(h, field(path, "extend_config"))
}

// extendConfig honours MOSN's Http1 extend_config (max_header_size,
// max_request_body_size, at the top or under "Http1") where mosnlite's own
// limit fields are unset; other keys are ignored, with a warning.
func (r *resolver) extendConfig(h *HTTPProxyConfig, path string) {
	var http1 struct {
		MaxHeaderSize      int `json:"max_header_size"`
		MaxRequestBodySize int `json:"max_request_body_size"`
	}
	d := &decoder{ps: r.ps, ws: r.ws}
	for _, m := range h.ExtendConfig.members() {
		p := field(path, m.key)
		switch {
		case m.key == ProtocolHTTP1:
			Raw{m.val}.decodeInto(d, &http1, p)
		case strings.EqualFold(m.key, "max_header_size"):
			Raw{m.val}.decodeInto(d, &http1.MaxHeaderSize, p)
		case strings.EqualFold(m.key, "max_request_body_size"):
			Raw{m.val}.decodeInto(d, &http1.MaxRequestBodySize, p)
		default:
			if !isEmpty(m.val) {
				r.ws.add(p, "ignored by mosnlite (not an Http1 setting)")
			}
		}
	}
	if n := http1.MaxHeaderSize; n > 0 && h.MaxRequestHeadersKB == 0 {
		h.MaxRequestHeadersKB = (n + 1023) / 1024
	}
	if n := http1.MaxRequestBodySize; n > 0 && h.MaxRequestBodyBytes == 0 {
		h.MaxRequestBodyBytes = int64(n)
	}
}

func (r *resolver) tcpFilter(t *TCPProxyConfig, l *Listener, path string) {
	if t.IdleTimeout.Duration == 0 && l.ConnectionIdleTimeout != nil {
		t.IdleTimeout = *l.ConnectionIdleTimeout
	}
	if t.Cluster != "" && len(t.Routes) > 0 {
		r.ws.add(field(path, "routes"), "ignored by mosnlite (as by MOSN: cluster takes precedence)")
		t.Routes = nil
	}
}

func (r *resolver) router(rt *Router, path string) {
	for i := range rt.VirtualHosts {
		vh := &rt.VirtualHosts[i]
		vp := index(field(path, "virtual_hosts"), i)
		for j := range vh.Routers {
			rp := index(field(vp, "routers"), j)
			if a := vh.Routers[j].Route; a != nil {
				ap := field(rp, "route")
				if a.PrefixRewrite != "" && a.RegexRewrite != nil {
					r.ws.add(field(ap, "regex_rewrite"), "ignored: prefix_rewrite takes precedence, as in MOSN")
					a.RegexRewrite = nil
				}
				if len(a.WeightedClusters) > 0 && a.ClusterName != "" {
					r.ws.add(field(ap, "cluster_name"), "ignored: weighted_clusters choose the cluster, as in MOSN")
				}
			}
			m := &vh.Routers[j].Match
			mp := field(rp, "match")
			// MOSN matches by prefix, else path, else regex: only the first set counts.
			if m.Prefix != "" && m.Path != "" {
				r.ws.add(field(mp, "path"), "ignored: prefix takes precedence, as in MOSN")
				m.Path = ""
			}
			if (m.Prefix != "" || m.Path != "") && m.Regex != "" {
				r.ws.add(field(mp, "regex"), "ignored: prefix or path takes precedence, as in MOSN")
				m.Regex = ""
			}
		}
	}
}

func (r *resolver) cluster(c *Cluster, path string) {
	if len(c.Hosts) == 0 {
		r.ws.add(field(path, "hosts"), "none: what is routed to this cluster fails (503 for HTTP), as in MOSN")
	}
	weighted := false
	for i := range c.Hosts {
		h := &c.Hosts[i]
		hp := index(field(path, "hosts"), i)
		if rest, ok := strings.CutPrefix(h.Address, "unix:"); ok && (h.Network == "" || h.Network == NetworkUnix) {
			h.Address, h.Network = rest, NetworkUnix // MOSN's unix:/path
		}
		h.Network = strings.ToLower(h.Network)
		if h.Weight > MaxHostWeight {
			r.ws.add(field(hp, "weight"), "%d: clamped to %d, as MOSN does", h.Weight, MaxHostWeight)
			h.Weight = MaxHostWeight
		}
		if i > 0 && effectiveWeight(h.Weight) != effectiveWeight(c.Hosts[0].Weight) {
			weighted = true
		}
	}
	if weighted && (c.LBType == "" || c.LBType == LBRoundRobin || c.LBType == LBRandom) {
		lb := c.LBType
		if lb == "" {
			lb = LBRoundRobin
		}
		r.ws.add(field(path, "hosts"), "hosts have different weights: mosnlite's %s honours them, MOSN's ignores them (%s weighs hosts in both)", lb, LBWeightedRoundRobin)
	}
	if len(c.CircuitBreakers) > 1 {
		r.ws.add(index(field(path, "circuit_breakers"), 1), "ignored: the first thresholds apply, as in MOSN")
	}
	if hc := c.HealthCheck; hc != nil {
		r.healthCheck(hc, field(path, "health_check"))
	}
}

// healthCheck decodes MOSN's check_config.http_check_config, which MOSN
// uses only with protocol Http1.
func (r *resolver) healthCheck(hc *HealthCheck, hp string) {
	if hc.Protocol != "" && hc.Protocol != ProtocolHTTP1 && strings.EqualFold(hc.Protocol, ProtocolHTTP1) {
		r.ws.add(field(hp, "protocol"), "%q is not MOSN's %q: a TCP connect check runs, as in MOSN", hc.Protocol, ProtocolHTTP1)
	}
	for _, m := range hc.CheckConfig.members() {
		mp := field(field(hp, "check_config"), m.key)
		switch {
		case m.key == "http_check_config":
			if isEmpty(m.val) {
				continue
			}
			if hc.Protocol != ProtocolHTTP1 {
				r.ws.add(mp, "ignored: MOSN sends its HTTP check only with protocol %q; a TCP connect check runs", ProtocolHTTP1)
				continue
			}
			hc.HTTPCheck = &HTTPCheckConfig{}
			Raw{m.val}.decodeInto(&decoder{ps: r.ps, ws: r.ws}, hc.HTTPCheck, mp)
			if hc.Path != "" {
				r.ps.add(field(hp, "path"), "mosnlite's path and MOSN's check_config.http_check_config are mutually exclusive")
			}
		case !isEmpty(m.val):
			r.ws.add(mp, "ignored by mosnlite (settings of MOSN's RPC health checks)")
		}
	}
}

func effectiveWeight(w int) int {
	if w < MinHostWeight {
		return MinHostWeight
	}
	return w
}
