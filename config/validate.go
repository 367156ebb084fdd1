package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Limits enforced by Validate.
const (
	MaxGracefulTimeout = time.Hour
	MaxHandoffTimeout  = 10 * time.Minute
	MaxConnectTimeout  = 5 * time.Minute
	MaxThreshold       = 100
	MaxIdleConnsLimit  = 10000
	// MaxRequestHeadersKBLimit is Envoy's upper bound of max_request_headers_kb.
	MaxRequestHeadersKBLimit = 8192
	MaxRequestHeadersLimit   = 10000
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
	if c.UpgradeWatchPeriod != nil {
		v.duration("upgrade_watch_period", c.UpgradeWatchPeriod.Duration, MaxHandoffTimeout)
	}
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
				v.ps.add(field(p, "mosn_server_name"), "duplicate server name %q, also used by %s", s.Name, first)
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
	v.tls(c.ClusterManager.TLSContext, "cluster_manager.tls_context", tlsCluster)
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
	case "", "trace", "debug", "info", "warn", "warning", "error", "fatal":
	default:
		v.ps.add(field(path, "default_log_level"), "unknown log level %q (want TRACE, DEBUG, INFO, WARN, ERROR or FATAL, in any case)", s.DefaultLogLevel)
	}
	if p := s.Processor; p != nil && !p.Auto && p.N < 0 {
		v.ps.add(field(path, "processor"), "%d: must not be negative (0 means every CPU)", p.N)
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
// As in MOSN, a wildcard is "*" or a leading "*" before a suffix
// ("*.example.com", "*-bar.example.com").
func domainProblem(d string) string {
	switch {
	case d == "":
		return "empty domain"
	case d == "*":
		return ""
	case strings.ContainsAny(d, " \t\r\n/"):
		return "invalid domain " + strconv.Quote(d)
	}
	rest := strings.TrimPrefix(d, "*")
	if strings.Contains(rest, "*") || rest == "" {
		return "invalid wildcard domain " + strconv.Quote(d) + ` (only "*" or a leading "*" before a suffix is allowed)`
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
	if m.Regex != "" {
		v.regexp(field(mp, "regex"), m.Regex)
	}
	for i, h := range m.Headers {
		hp := index(field(mp, "headers"), i)
		switch {
		case h.Name == "":
			v.ps.add(field(hp, "name"), "required")
		case !validToken(h.Name):
			v.ps.add(field(hp, "name"), "%q: not a valid header name", h.Name)
		}
		if h.Regex {
			v.regexp(field(hp, "value"), h.Value)
		}
	}
	actions := 0
	for _, set := range []bool{r.Route != nil, r.Redirect != nil, r.DirectResponse != nil} {
		if set {
			actions++
		}
	}
	switch {
	case actions > 1:
		v.ps.add(path, "route, redirect and direct_response are mutually exclusive")
	case actions == 0:
		v.ps.add(path, "one of route, redirect or direct_response is required")
	}
	if a := r.Route; a != nil {
		ap := field(path, "route")
		if len(a.WeightedClusters) == 0 && a.ClusterHeader == "" && a.ClusterVariable == "" {
			v.clusterRef(field(ap, "cluster_name"), a.ClusterName)
		}
		total, badWeight, split := uint64(0), false, map[string]string{}
		for i, w := range a.WeightedClusters {
			wp := field(index(field(ap, "weighted_clusters"), i), "cluster")
			v.clusterRef(field(wp, "name"), w.Cluster.Name)
			if first, dup := split[w.Cluster.Name]; dup && w.Cluster.Name != "" {
				v.ps.add(field(wp, "name"), "duplicate cluster %q in the split, also at %s", w.Cluster.Name, first)
			}
			split[w.Cluster.Name] = wp
			if w.Cluster.Weight < 0 || w.Cluster.Weight > MaxClusterWeight {
				v.ps.add(field(wp, "weight"), "%d: must be 0 to %d (MOSN's uint32)", w.Cluster.Weight, MaxClusterWeight)
				badWeight = true
			} else {
				total += uint64(w.Cluster.Weight)
			}
		}
		if len(a.WeightedClusters) > 0 && total == 0 && !badWeight {
			v.ps.add(field(ap, "weighted_clusters"), "the weights add up to 0: no cluster would ever be chosen")
		}
		if a.PrefixRewrite != "" && !strings.HasPrefix(a.PrefixRewrite, "/") {
			v.ps.add(field(ap, "prefix_rewrite"), "%q: must start with /", a.PrefixRewrite)
		}
		if rr := a.RegexRewrite; rr != nil {
			rrp := field(ap, "regex_rewrite")
			if rr.Pattern.Regex == "" {
				v.ps.add(field(field(rrp, "pattern"), "regex"), "required")
			} else {
				v.regexp(field(field(rrp, "pattern"), "regex"), rr.Pattern.Regex)
			}
		}
		if h := a.HostRewrite; h != "" && !validHostValue(h) {
			v.ps.add(field(ap, "host_rewrite"), "%q: not a valid Host value", h)
		}
		if h := a.AutoHostRewriteHeader; h != "" && !validToken(h) {
			v.ps.add(field(ap, "auto_host_rewrite_header"), "%q: not a valid header name", h)
		}
		if a.Timeout.Duration < 0 {
			v.ps.add(field(ap, "timeout"), "%s: must not be negative", a.Timeout.Duration)
		}
		if msg := protocolProblem(a.UpstreamProtocol); msg != "" {
			v.ps.add(field(ap, "upstream_protocol"), "%s", msg)
		} else if a.UpstreamProtocol == ProtocolHTTP2 {
			v.ps.add(field(ap, "upstream_protocol"), "%q on a route is not supported by mosnlite yet: set upstream_protocol on the proxy filter", a.UpstreamProtocol)
		}
		if rp := a.RetryPolicy; rp != nil {
			rpp := field(ap, "retry_policy")
			if rp.NumRetries < 0 {
				v.ps.add(field(rpp, "num_retries"), "%d: must not be negative", rp.NumRetries)
			}
			v.duration(field(rpp, "retry_timeout"), rp.RetryTimeout.Duration, 0)
			for i, code := range rp.StatusCodes {
				if code < 100 || code > 599 {
					v.ps.add(index(field(rpp, "status_codes"), i), "%d: out of range (100-599)", code)
				}
			}
		}
		seenUpgrade := map[string]bool{}
		for i, u := range a.UpgradeConfigs {
			up := field(index(field(ap, "upgrade_configs"), i), "upgrade_type")
			name := strings.ToLower(u.UpgradeType)
			switch {
			case name == "":
				v.ps.add(up, "required (the Upgrade protocol, e.g. websocket)")
			case !validToken(name):
				v.ps.add(up, "%q: not a protocol name", u.UpgradeType)
			case seenUpgrade[name]:
				v.ps.add(up, "%q: listed twice", u.UpgradeType)
			}
			seenUpgrade[name] = true
		}
		v.headerOps(ap, a.RequestHeadersToAdd, a.RequestHeadersToRemove, a.ResponseHeadersToAdd, a.ResponseHeadersToRemove)
	}
	if rd := r.Redirect; rd != nil {
		rp := field(path, "redirect")
		switch rd.ResponseCode {
		case 0, 301, 302, 303, 307, 308:
		default:
			v.ps.add(field(rp, "response_code"), "%d: want 301, 302, 303, 307 or 308", rd.ResponseCode)
		}
		if rd.PathRedirect != "" && (!strings.HasPrefix(rd.PathRedirect, "/") || !validHostValue(rd.PathRedirect)) {
			v.ps.add(field(rp, "path_redirect"), "%q: must start with / and hold no space or control character", rd.PathRedirect)
		}
		if h := rd.HostRedirect; h != "" && !validHostValue(h) {
			v.ps.add(field(rp, "host_redirect"), "%q: not a valid host", h)
		}
		switch rd.SchemeRedirect {
		case "", "http", "https":
		default:
			v.ps.add(field(rp, "scheme_redirect"), "%q: want http or https", rd.SchemeRedirect)
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

// headerOps checks the request/response header additions and removals
// under path: valid names and values, and none of the fields that frame
// the message or belong to one connection (the proxy writes those itself).
func (v *validator) headerOps(path string, reqAdd []HeaderValueOption, reqRemove []string, respAdd []HeaderValueOption, respRemove []string) {
	for _, add := range []struct {
		name    string
		list    []HeaderValueOption
		request bool
	}{{"request_headers_to_add", reqAdd, true}, {"response_headers_to_add", respAdd, false}} {
		for i, h := range add.list {
			hp := field(index(field(path, add.name), i), "header")
			switch {
			case h.Header == nil || h.Header.Key == "":
				v.ps.add(field(hp, "key"), "required")
			case !validToken(h.Header.Key):
				v.ps.add(field(hp, "key"), "%q: not a valid header name", h.Header.Key)
			case add.request && strings.EqualFold(h.Header.Key, "host"):
				v.ps.add(field(hp, "key"), "%q: the upstream Host is set by the route's host_rewrite (or auto_host_rewrite_header), not by a header operation (MOSN's append would send \"Host: a,b\")", h.Header.Key)
			case reservedHeader(h.Header.Key, add.request):
				v.ps.add(field(hp, "key"), "%q: the proxy writes this field itself (message framing or a hop-by-hop field)", h.Header.Key)
			}
			if h.Header != nil && strings.ContainsAny(h.Header.Value, "\r\n\x00") {
				v.ps.add(field(hp, "value"), "%q: a header value holds no CR, LF or NUL", h.Header.Value)
			}
		}
	}
	for _, rm := range []struct {
		name string
		list []string
	}{{"request_headers_to_remove", reqRemove}, {"response_headers_to_remove", respRemove}} {
		for i, h := range rm.list {
			switch {
			case !validToken(h):
				v.ps.add(index(field(path, rm.name), i), "%q: not a valid header name", h)
			case reservedHeader(h, true):
				v.ps.add(index(field(path, rm.name), i), "%q: the proxy writes this field itself (message framing, Host or a hop-by-hop field)", h)
			}
		}
	}
}

// reservedHeader: a field the proxy writes itself, which a route's header
// operations may not touch; withHost counts Host among them.
func reservedHeader(name string, withHost bool) bool {
	switch strings.ToLower(name) {
	case "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
		"proxy-connection":
		return true
	case "host":
		return withHost
	}
	return false
}

// regexp checks an RE2 regular expression.
func (v *validator) regexp(path, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		v.ps.add(path, "%q: not a valid regular expression (RE2 syntax): %v", expr, err)
	}
}

// validHostValue accepts what may stand in a Host field or a URL's host or
// path: printable ASCII without spaces.
func validHostValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return s != ""
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
	// An empty name stays empty only when the address is bad (MOSN names a
	// listener by its address); the address problem says what is wrong.
	if l.Name != "" {
		if first, dup := v.listeners[l.Name]; dup {
			v.ps.add(np, "duplicate listener name %q, also used by %s", l.Name, first)
		} else {
			v.listeners[l.Name] = path
		}
	}
	if l.Network == "udp" {
		v.ps.add(field(path, "network"), "udp (MOSN's UDP listeners) is not supported by mosnlite")
	} else {
		v.address(path, l.Network, l.Address)
	}
	if l.BindToPort != nil && !*l.BindToPort {
		v.ps.add(field(path, "bind_port"), "false (MOSN's listener that only receives connections redirected by use_original_dst) is not supported by mosnlite")
	}
	if l.ConnectionIdleTimeout != nil {
		v.duration(field(path, "connection_idle_timeout"), l.ConnectionIdleTimeout.Duration, 0)
	}
	v.duration(field(path, "tls_handshake_timeout"), l.TLSHandshakeTimeout.Duration, 0)
	for i, f := range l.ListenerFilters {
		if f.Type == "" && f.Config.IsZero() && f.GoPluginConfig.IsZero() {
			continue
		}
		v.ps.add(field(index(field(path, "listener_filters"), i), "type"), "listener filter %q (%s) is not supported by mosnlite", f.Type, listenerFilterFeature(f.Type))
	}
	for i, f := range l.StreamFilters {
		if f.Type == "" && f.Config.IsZero() && f.GoPluginConfig.IsZero() {
			continue
		}
		v.ps.add(field(index(field(path, "stream_filters"), i), "type"), "stream filter %q (%s) is not supported by mosnlite", f.Type, streamFilterFeature(f.Type))
	}
	for i, al := range l.AccessLogs {
		ap := index(field(path, "access_logs"), i)
		if al.Path == "" {
			v.ps.add(field(ap, "log_path"), "required (a file, or stdout or stderr)")
		} else if strings.IndexByte(al.Path, 0) >= 0 {
			v.ps.add(field(ap, "log_path"), "%q: contains a NUL byte", al.Path)
		} else if al.Path != "stdout" && al.Path != "stderr" {
			if err := checkLogPath(al.Path); err != nil {
				v.ps.add(field(ap, "log_path"), "%q cannot be opened for appending: %v", al.Path, err)
			}
		}
		if err := checkAccessLogFormat(al.Format); err != nil {
			v.ps.add(field(ap, "log_format"), "%v", err)
		}
	}

	cp := field(path, "filter_chains")
	if len(l.FilterChains) != 1 {
		v.ps.add(cp, "exactly one filter chain is required, got %d", len(l.FilterChains))
	}
	for i := range l.FilterChains {
		fc := &l.FilterChains[i]
		fcp := index(cp, i)
		if fc.TLSContext != nil && len(fc.TLSContextSet) > 0 {
			v.ps.add(fcp, "tls_context and tls_context_set are mutually exclusive (as in MOSN)")
		}
		role := tlsHTTPListener
		if len(fc.Filters) > 0 && fc.Filters[0].TCP != nil {
			role = tlsTCPListener
		}
		v.tls(fc.TLSContext, field(fcp, "tls_context"), role)
		for j := range fc.TLSContextSet {
			v.tls(&fc.TLSContextSet[j], index(field(fcp, "tls_context_set"), j), role)
		}
		fp := field(fcp, "filters")
		if len(fc.Filters) != 1 {
			types := make([]string, len(fc.Filters))
			for j, f := range fc.Filters {
				types[j] = strconv.Quote(f.Type)
			}
			if len(fc.Filters) > 1 {
				v.ps.add(fp, "several network filters (%s) in one chain are not supported by mosnlite: one %s or %s filter per listener", strings.Join(types, ", "), FilterHTTPProxy, FilterTCPProxy)
			} else {
				v.ps.add(fp, "exactly one filter is required, got 0")
			}
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
		if msg := protocolProblem(h.DownstreamProtocol); msg != "" {
			v.ps.add(field(cp, "downstream_protocol"), "%s", msg)
		}
		if msg := protocolProblem(h.UpstreamProtocol); msg != "" {
			v.ps.add(field(cp, "upstream_protocol"), "%s", msg)
		}
		if n := h.RouterHandlerName; n != "" && n != "default" {
			v.ps.add(field(cp, "router_handler_name"), "%q (a MOSN route handler extension) is not supported by mosnlite", n)
		}
		v.duration(field(cp, "idle_timeout"), h.IdleTimeout.Duration, 0)
		v.duration(field(cp, "upstream_timeout"), h.UpstreamTimeout.Duration, 0)
		v.duration(field(cp, "request_header_timeout"), h.RequestHeaderTimeout.Duration, 0)
		if n := h.HTTP2MaxConcurrentStreams; n < 0 || n > 1<<31-1 {
			v.ps.add(field(cp, "http2_max_concurrent_streams"), "%d: out of range (1-2147483647)", n)
		}
		for _, w := range []struct {
			name string
			n    int
		}{{"http2_initial_stream_window_size", h.HTTP2InitialStreamWindowSize}, {"http2_initial_connection_window_size", h.HTTP2InitialConnectionWindowSize}} {
			if w.n != 0 && (w.n < 65535 || w.n > 1<<31-1) {
				v.ps.add(field(cp, w.name), "%d: out of range (65535-2147483647, RFC 9113 §6.9)", w.n)
			}
		}
		if n := h.MaxRequestHeadersKB; n < 0 || n > MaxRequestHeadersKBLimit {
			v.ps.add(field(cp, "max_request_headers_kb"), "%d: out of range (1-%d)", n, MaxRequestHeadersKBLimit)
		}
		if n := h.MaxRequestHeadersCount; n < 0 || n > MaxRequestHeadersLimit {
			v.ps.add(field(cp, "max_request_headers_count"), "%d: out of range (1-%d)", n, MaxRequestHeadersLimit)
		}
		if h.MaxRequestBodyBytes < 0 {
			v.ps.add(field(cp, "max_request_body_bytes"), "%d: must not be negative (0: no limit)", h.MaxRequestBodyBytes)
		}
	case FilterTCPProxy:
		t := f.TCP
		if t == nil {
			v.ps.add(cp, "required")
			return
		}
		if t.Cluster == "" && len(t.Routes) > 0 {
			v.ps.add(field(cp, "routes"), "MOSN's address-based tcp_proxy routing (routes without cluster) is not supported by mosnlite")
		} else {
			v.clusterRef(field(cp, "cluster"), t.Cluster)
		}
		v.duration(field(cp, "idle_timeout"), t.IdleTimeout.Duration, 0)
	case FilterConnectionManager:
		// Moved into the server's routers by Parse; one left here was built in Go.
		v.ps.add(field(path, "type"), "%s belongs in the server's routers", FilterConnectionManager)
	default:
		v.ps.add(field(path, "type"), "network filter %q (%s) is not supported by mosnlite (want %s or %s)", f.Type, networkFilterFeature(f.Type), FilterHTTPProxy, FilterTCPProxy)
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
	switch c.Type {
	case "", "SIMPLE", "STATIC":
	default:
		if f := clusterTypeFeature(c.Type); f != "" {
			v.ps.add(field(path, "type"), "%q (%s) is not supported by mosnlite", c.Type, f)
		} else {
			v.ps.add(field(path, "type"), "unknown cluster type %q (want SIMPLE or STATIC)", c.Type)
		}
	}
	switch c.LBType {
	case "", LBRoundRobin, LBRandom, LBLeastRequest, LBWeightedRoundRobin:
	default:
		if f := lbTypeFeature(c.LBType); f != "" {
			v.ps.add(field(path, "lb_type"), "%q (%s) is not supported by mosnlite (want %s, %s, %s or %s)", c.LBType, f, LBRoundRobin, LBWeightedRoundRobin, LBRandom, LBLeastRequest)
		} else {
			v.ps.add(field(path, "lb_type"), "unknown lb type %q (want %s, %s, %s or %s)", c.LBType, LBRoundRobin, LBWeightedRoundRobin, LBRandom, LBLeastRequest)
		}
	}
	v.duration(field(path, "connect_timeout"), c.ConnectTimeout.Duration, MaxConnectTimeout)
	if n := c.MaxIdleConns; n < 0 || n > MaxIdleConnsLimit {
		v.ps.add(field(path, "max_idle_conns_per_host"), "%d: out of range (0-%d)", n, MaxIdleConnsLimit)
	}
	if c.MaxRequestPerConn < 0 {
		v.ps.add(field(path, "max_request_per_conn"), "%d: must not be negative", c.MaxRequestPerConn)
	}
	if c.ConnBufferLimitBytes < 0 {
		v.ps.add(field(path, "conn_buffer_limit_bytes"), "%d: must not be negative", c.ConnBufferLimitBytes)
	}
	for i, t := range c.CircuitBreakers {
		tp := index(field(path, "circuit_breakers"), i)
		for _, lim := range []struct {
			name string
			n    int
		}{{"max_connections", t.MaxConnections}, {"max_pending_requests", t.MaxPendingRequests}, {"max_requests", t.MaxRequests}, {"max_retries", t.MaxRetries}} {
			if lim.n < 0 {
				v.ps.add(field(tp, lim.name), "%d: must not be negative (0: no limit)", lim.n)
			}
		}
	}
	v.tls(c.TLSContext, field(path, "tls_context"), tlsCluster)
	v.tlsHostNames(c, path)
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
			v.ps.add(field(hp, "weight"), "%d: out of range (%d-%d)", h.Weight, MinHostWeight, MaxHostWeight)
		}
	}
	if hc := c.HealthCheck; hc != nil {
		v.healthCheck(hc, field(path, "health_check"))
	}
}

func (v *validator) healthCheck(hc *HealthCheck, path string) {
	v.duration(field(path, "interval"), hc.Interval.Duration, 0)
	v.duration(field(path, "timeout"), hc.Timeout.Duration, 0)
	v.duration(field(path, "interval_jitter"), hc.IntervalJitter.Duration, 0)
	v.duration(field(path, "initial_delay_seconds"), hc.InitialDelaySeconds.Duration, 0)
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
	// MOSN runs an HTTP check for protocol Http1, a TCP connect check for
	// any name it has no health checker for (as mosnlite), and a protocol's
	// own heartbeat for an RPC protocol.
	if p := hc.Protocol; p != "" && !strings.EqualFold(p, ProtocolHTTP1) {
		if f := protocolFeature(p); f != "" {
			v.ps.add(field(path, "protocol"), "%q (%s health check) is not supported by mosnlite (a TCP connect check runs without a protocol)", p, f)
		}
	}
	if hc.HTTPCheck != nil {
		v.httpCheck(hc.HTTPCheck, field(field(path, "check_config"), "http_check_config"))
	}
}

// httpCheck checks MOSN's check_config.http_check_config.
func (v *validator) httpCheck(h *HTTPCheckConfig, path string) {
	if h.Port < 0 || h.Port > 65535 {
		v.ps.add(field(path, "port"), "%d: port out of range (0-65535; 0 is the host's)", h.Port)
	}
	v.duration(field(path, "timeout"), h.Timeout.Duration, 0)
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") || !validOptionalPath(h.Path) {
		v.ps.add(field(path, "path"), "%q: must start with / and hold no space or control character", h.Path)
	}
	if h.Method != "" && !validToken(h.Method) {
		v.ps.add(field(path, "method"), "%q: not a valid method", h.Method)
	}
	switch h.Scheme {
	case "", "http", "https":
	default:
		v.ps.add(field(path, "scheme"), "%q: want http or https", h.Scheme)
	}
	if h.Domain != "" && !validHostValue(h.Domain) {
		v.ps.add(field(path, "domain"), "%q: not a valid host", h.Domain)
	}
	for i, c := range h.Codes {
		if c.Start < 100 || c.End > 599 || c.Start > c.End {
			v.ps.add(index(field(path, "codes"), i), "Start %d, End %d: want 100 <= Start <= End <= 599", c.Start, c.End)
		}
	}
}

func validOptionalPath(p string) bool { return p == "" || validHostValue(p) }

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

// checkLogPath reports why a file log path could not be opened for
// appending: its directory must exist or be creatable (its nearest existing
// ancestor a writable directory) and the file, if it exists, a writable
// non-directory.
func checkLogPath(path string) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return errors.New("is a directory")
		}
		if err := unix.Access(path, unix.W_OK); err != nil {
			return fmt.Errorf("not writable: %w", err)
		}
		return nil
	}
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s is not a directory", dir)
		case err == nil:
			if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("directory %s not writable: %w", dir, err)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		up := filepath.Dir(dir)
		if up == dir {
			return err
		}
		dir = up
	}
}
