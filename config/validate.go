package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits enforced by Validate.
const (
	MaxGracefulTimeout = time.Hour
	MaxHandoffTimeout  = 10 * time.Minute
	MaxConnectTimeout  = 5 * time.Minute
	MaxHostWeight      = 1000
	MaxThreshold       = 100
	MaxIdleConnsLimit  = 10000
)

// Validate reports every semantic problem in c at once, as a
// *ValidationError, or nil. A zero value where ApplyDefaults would put a
// default (a network, an lb_type, a timeout, a weight) is accepted as
// "use the default", so Validate gives the same answer before and after
// ApplyDefaults.
func (c *Config) Validate() error {
	v := &validator{
		ps:        &problems{},
		clusters:  make(map[string]bool, len(c.ClusterManager.Clusters)),
		listeners: map[string]string{},
	}
	for _, cl := range c.ClusterManager.Clusters {
		v.clusters[cl.Name] = true
	}
	v.config(c)
	return v.ps.err()
}

type validator struct {
	ps        *problems
	clusters  map[string]bool   // every cluster name, valid or not
	listeners map[string]string // listener name → path of first use
	addrs     []boundAddr       // listening addresses seen so far
}

type boundAddr struct {
	addr sockAddr
	path string
}

func (v *validator) config(c *Config) {
	if c.UDSDir != "" {
		if err := CheckUDSDir(c.UDSDir); err != nil {
			v.ps.add("uds_dir", "%v", err)
		}
	}
	v.duration("handoff_timeout", c.HandoffTimeout.Duration, MaxHandoffTimeout)
	if len(c.Servers) == 0 {
		v.ps.add("servers", "at least one server is required")
	}
	serverNames := map[string]string{}
	for i := range c.Servers {
		p := index("servers", i)
		if s := c.Servers[i]; s.Name != "" {
			if first, dup := serverNames[s.Name]; dup {
				v.ps.add(field(p, "server_name"), "duplicate server name %q, also used by %s", s.Name, first)
			} else {
				serverNames[s.Name] = p
			}
		}
		v.server(&c.Servers[i], p)
	}
	clusterNames := map[string]string{}
	for i := range c.ClusterManager.Clusters {
		v.cluster(&c.ClusterManager.Clusters[i], index("cluster_manager.clusters", i), clusterNames)
	}
	v.service(c.Admin, "admin")
	v.service(c.Pprof, "pprof")
	v.service(c.Metrics, "metrics")
}

// duration checks a timeout that has a default: zero means the default,
// negative is wrong, and max (if not 0) bounds it.
func (v *validator) duration(path string, d, max time.Duration) {
	switch {
	case d < 0:
		v.ps.add(path, "%s: must be positive", d)
	case max > 0 && d > max:
		v.ps.add(path, "%s: must be at most %s", d, max)
	}
}

func (v *validator) server(s *Server, path string) {
	switch strings.ToLower(s.DefaultLogLevel) {
	case "", "trace", "debug", "info", "warn", "error":
	default:
		v.ps.add(field(path, "default_log_level"), "unknown log level %q (want trace, debug, info, warn or error)", s.DefaultLogLevel)
	}
	switch s.LogFormat {
	case "", "text", "json":
	default:
		v.ps.add(field(path, "log_format"), "unknown log format %q (want text or json)", s.LogFormat)
	}
	if d := s.GracefulTimeout.Duration; d < 0 {
		v.ps.add(field(path, "graceful_timeout"), "%s: must not be negative", d)
	} else if d > MaxGracefulTimeout {
		v.ps.add(field(path, "graceful_timeout"), "%s: must be at most %s", d, MaxGracefulTimeout)
	}
	routers := map[string]string{}
	for i := range s.Routers {
		p := index(field(path, "routers"), i)
		name := s.Routers[i].RouterConfigName
		switch first, dup := routers[name]; {
		case name == "":
			v.ps.add(field(p, "router_config_name"), "required")
		case dup:
			v.ps.add(field(p, "router_config_name"), "duplicate router name %q, also used by %s", name, first)
		default:
			routers[name] = p
		}
		v.router(&s.Routers[i], p)
	}
	for i := range s.Listeners {
		v.listener(&s.Listeners[i], index(field(path, "listeners"), i), path, routers)
	}
}

func (v *validator) router(r *Router, path string) {
	domains := map[string]string{} // lower-cased domain → virtual host path
	for i := range r.VirtualHosts {
		vh := &r.VirtualHosts[i]
		vp := index(field(path, "virtual_hosts"), i)
		if len(vh.Domains) == 0 {
			v.ps.add(field(vp, "domains"), "at least one domain is required")
		}
		for j, d := range vh.Domains {
			dp := index(field(vp, "domains"), j)
			if msg := domainProblem(d); msg != "" {
				v.ps.add(dp, "%s", msg)
				continue
			}
			key := strings.ToLower(d)
			if first, dup := domains[key]; dup {
				v.ps.add(dp, "duplicate domain %q, also in %s", d, first)
				continue
			}
			domains[key] = vp
		}
		for j := range vh.Routers {
			v.route(&vh.Routers[j], index(field(vp, "routers"), j))
		}
	}
}

// domainProblem says what is wrong with a virtual host domain, or "".
func domainProblem(d string) string {
	switch {
	case d == "":
		return "empty domain"
	case d == "*":
		return ""
	case strings.ContainsAny(d, " \t\r\n/"):
		return "invalid domain " + strconv.Quote(d)
	}
	rest := strings.TrimPrefix(d, "*.")
	if strings.Contains(rest, "*") || rest == "" {
		return "invalid wildcard domain " + strconv.Quote(d) + ` (only "*" or a leading "*." is allowed)`
	}
	return ""
}

func (v *validator) route(r *Route, path string) {
	m := r.Match
	mp := field(path, "match")
	if m.Prefix != "" && m.Path != "" {
		v.ps.add(mp, "prefix and path are mutually exclusive")
	}
	if m.Prefix != "" && !strings.HasPrefix(m.Prefix, "/") {
		v.ps.add(field(mp, "prefix"), "%q: must start with /", m.Prefix)
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		v.ps.add(field(mp, "path"), "%q: must start with /", m.Path)
	}
	for i, h := range m.Headers {
		hp := index(field(mp, "headers"), i)
		switch {
		case h.Name == "":
			v.ps.add(field(hp, "name"), "required")
		case !validToken(h.Name):
			v.ps.add(field(hp, "name"), "%q: not a valid header name", h.Name)
		}
	}
	switch {
	case r.Route != nil && r.DirectResponse != nil:
		v.ps.add(path, "route and direct_response are mutually exclusive")
	case r.Route == nil && r.DirectResponse == nil:
		v.ps.add(path, "one of route or direct_response is required")
	}
	if a := r.Route; a != nil {
		ap := field(path, "route")
		v.clusterRef(field(ap, "cluster_name"), a.ClusterName)
		if a.Timeout.Duration < 0 {
			v.ps.add(field(ap, "timeout"), "%s: must not be negative", a.Timeout.Duration)
		}
	}
	if dr := r.DirectResponse; dr != nil {
		sp := field(field(path, "direct_response"), "status")
		if dr.Status == 0 {
			v.ps.add(sp, "required (100-599)")
		} else if dr.Status < 100 || dr.Status > 599 {
			v.ps.add(sp, "%d: out of range (100-599)", dr.Status)
		}
	}
}

// validToken accepts an HTTP header field name (an RFC 9110 token).
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return s != ""
}

func (v *validator) clusterRef(path, name string) {
	switch {
	case name == "":
		v.ps.add(path, "required")
	case !v.clusters[name]:
		v.ps.add(path, "unknown cluster %q", name)
	}
}

func (v *validator) listener(l *Listener, path, serverPath string, routers map[string]string) {
	np := field(path, "name")
	if l.Name == "" {
		v.ps.add(np, "required")
	} else if first, dup := v.listeners[l.Name]; dup {
		v.ps.add(np, "duplicate listener name %q, also used by %s", l.Name, first)
	} else {
		v.listeners[l.Name] = path
	}
	v.address(path, l.Network, l.Address)

	cp := field(path, "filter_chains")
	if len(l.FilterChains) != 1 {
		v.ps.add(cp, "exactly one filter chain is required, got %d", len(l.FilterChains))
	}
	for i, fc := range l.FilterChains {
		fp := field(index(cp, i), "filters")
		if len(fc.Filters) != 1 {
			v.ps.add(fp, "exactly one filter is required, got %d", len(fc.Filters))
		}
		for j := range fc.Filters {
			v.filter(&fc.Filters[j], index(fp, j), serverPath, routers)
		}
	}
}

// address checks a listening network and address and that no other
// listening socket seen so far clashes with it.
func (v *validator) address(path, network, address string) {
	switch network {
	case "", NetworkTCP, NetworkUnix:
	default:
		v.ps.add(field(path, "network"), "unknown network %q (want tcp or unix)", network)
		return
	}
	ap := field(path, "address")
	a, err := parseListenAddr(network, address)
	if err != nil {
		v.ps.add(ap, "%s", err)
		return
	}
	for _, b := range v.addrs {
		if !a.clashes(b.addr) {
			continue
		}
		if a == b.addr {
			v.ps.add(ap, "%q: duplicate address, already used by %s", address, b.path)
		} else {
			v.ps.add(ap, "%q: overlaps %q of %s", address, b.addr.String(), b.path)
		}
		break
	}
	v.addrs = append(v.addrs, boundAddr{addr: a, path: path})
}

func (v *validator) filter(f *Filter, path, serverPath string, routers map[string]string) {
	cp := field(path, "config")
	switch f.Type {
	case "":
		v.ps.add(field(path, "type"), "required (%s or %s)", FilterHTTPProxy, FilterTCPProxy)
	case FilterHTTPProxy:
		h := f.HTTP
		if h == nil {
			v.ps.add(cp, "required")
			return
		}
		rp := field(cp, "router_config_name")
		if h.RouterConfigName == "" {
			v.ps.add(rp, "required")
		} else if _, ok := routers[h.RouterConfigName]; !ok {
			v.ps.add(rp, "unknown router %q in %s.routers", h.RouterConfigName, serverPath)
		}
		v.duration(field(cp, "idle_timeout"), h.IdleTimeout.Duration, 0)
		v.duration(field(cp, "upstream_timeout"), h.UpstreamTimeout.Duration, 0)
	case FilterTCPProxy:
		t := f.TCP
		if t == nil {
			v.ps.add(cp, "required")
			return
		}
		v.clusterRef(field(cp, "cluster"), t.Cluster)
		v.duration(field(cp, "idle_timeout"), t.IdleTimeout.Duration, 0)
	default:
		v.ps.add(field(path, "type"), "unknown filter type %q (want %s or %s)", f.Type, FilterHTTPProxy, FilterTCPProxy)
	}
}

func (v *validator) cluster(c *Cluster, path string, names map[string]string) {
	np := field(path, "name")
	if c.Name == "" {
		v.ps.add(np, "required")
	} else if first, dup := names[c.Name]; dup {
		v.ps.add(np, "duplicate cluster name %q, also used by %s", c.Name, first)
	} else {
		names[c.Name] = path
	}
	switch c.LBType {
	case "", LBRoundRobin, LBRandom, LBLeastRequest:
	default:
		v.ps.add(field(path, "lb_type"), "unknown lb type %q (want %s, %s or %s)", c.LBType, LBRoundRobin, LBRandom, LBLeastRequest)
	}
	v.duration(field(path, "connect_timeout"), c.ConnectTimeout.Duration, MaxConnectTimeout)
	if n := c.MaxIdleConns; n < 0 || n > MaxIdleConnsLimit {
		v.ps.add(field(path, "max_idle_conns_per_host"), "%d: out of range (0-%d)", n, MaxIdleConnsLimit)
	}
	if len(c.Hosts) == 0 {
		v.ps.add(field(path, "hosts"), "at least one host is required")
	}
	hosts := map[string]string{}
	for i, h := range c.Hosts {
		hp := index(field(path, "hosts"), i)
		switch h.Network {
		case "", NetworkTCP, NetworkUnix:
			if err := checkDialAddr(h.Network, h.Address); err != nil {
				v.ps.add(field(hp, "address"), "%s", err)
			} else {
				key := h.Network + " " + h.Address
				if h.Network == "" {
					key = NetworkTCP + " " + h.Address
				}
				if first, dup := hosts[key]; dup {
					v.ps.add(field(hp, "address"), "%q: duplicate host, also at %s", h.Address, first)
				} else {
					hosts[key] = hp
				}
			}
		default:
			v.ps.add(field(hp, "network"), "unknown network %q (want tcp or unix)", h.Network)
		}
		if h.Weight < 0 || h.Weight > MaxHostWeight {
			v.ps.add(field(hp, "weight"), "%d: out of range (1-%d)", h.Weight, MaxHostWeight)
		}
	}
	if hc := c.HealthCheck; hc != nil {
		v.healthCheck(hc, field(path, "health_check"))
	}
}

func (v *validator) healthCheck(hc *HealthCheck, path string) {
	v.duration(field(path, "interval"), hc.Interval.Duration, 0)
	v.duration(field(path, "timeout"), hc.Timeout.Duration, 0)
	interval := orDefault(hc.Interval.Duration, DefaultHealthCheckInterval)
	timeout := orDefault(hc.Timeout.Duration, DefaultHealthCheckTimeout)
	if hc.Interval.Duration >= 0 && hc.Timeout.Duration >= 0 && timeout > interval {
		v.ps.add(field(path, "timeout"), "%s: must not exceed the interval (%s)", timeout, interval)
	}
	for _, t := range []struct {
		name string
		n    int
	}{{"healthy_threshold", hc.HealthyThreshold}, {"unhealthy_threshold", hc.UnhealthyThreshold}} {
		if t.n < 0 || t.n > MaxThreshold {
			v.ps.add(field(path, t.name), "%d: out of range (1-%d)", t.n, MaxThreshold)
		}
	}
	if hc.Path != "" && !strings.HasPrefix(hc.Path, "/") {
		v.ps.add(field(path, "path"), "%q: must start with /", hc.Path)
	}
}

func (v *validator) service(s *ServiceConfig, path string) {
	if s == nil {
		return
	}
	v.address(path, s.Network, s.Address)
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// udsSocketNameMax is the longest name a socket in uds_dir gets: the
// temporary name ".reconfig.sock.<12 hex digits>" it is bound under before
// being renamed into place.
const udsSocketNameMax = len("/.reconfig.sock.") + 12

// CheckUDSDir reports whether dir can hold mosnlite's handoff sockets: unix
// socket paths are limited to 107 bytes. Callers check the uds_dir they derive
// themselves too, not only the configured one.
func CheckUDSDir(dir string) error {
	if strings.IndexByte(dir, 0) >= 0 {
		return fmt.Errorf("%q: contains a NUL byte", dir)
	}
	if n := len(dir) + udsSocketNameMax; n > maxUnixPath {
		return fmt.Errorf("%q: too long: the socket paths inside it would be up to %d bytes, at most %d", dir, n, maxUnixPath)
	}
	return nil
}
