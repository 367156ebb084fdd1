// Package config parses and validates mosnlite's JSON configuration.
// It is pure data: after Load returns, nothing here does I/O or logs.
package config

import "time"

// Network names accepted for a listener.
const (
	NetworkTCP  = "tcp"
	NetworkUnix = "unix"
)

// Filter types accepted in a listener's filter chain.
const (
	FilterHTTPProxy = "proxy"
	FilterTCPProxy  = "tcp_proxy"
)

// Load balancer types accepted for a cluster.
const (
	LBRoundRobin   = "LB_ROUNDROBIN"
	LBRandom       = "LB_RANDOM"
	LBLeastRequest = "LB_LEAST_REQUEST"
)

// Defaults applied by Load where a field is absent.
const (
	DefaultGracefulTimeout = 30 * time.Second
	DefaultHandoffTimeout  = 10 * time.Second
	DefaultConnectTimeout  = 3 * time.Second
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultUpstreamTimeout = 60 * time.Second
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
)

// Duration is a time.Duration written in JSON as a Go duration string ("30s").
type Duration struct{ time.Duration }

// Config is the whole configuration file.
type Config struct {
	// UDSDir holds reconfig.sock and listen.sock. Empty means derived from the
	// config file's location by the caller (see DefaultUDSDir).
	UDSDir string `json:"uds_dir"`
	// HandoffTimeout bounds a whole upgrade handoff (default 10s).
	HandoffTimeout Duration       `json:"handoff_timeout"`
	Servers        []Server       `json:"servers"`
	ClusterManager ClusterManager `json:"cluster_manager"`
	Admin          *ServiceConfig `json:"admin"`
	Pprof          *ServiceConfig `json:"pprof"`
	Metrics        *ServiceConfig `json:"metrics"`
}

// Server is one proxy server: its listeners, routers and logging.
type Server struct {
	Name            string     `json:"server_name"`
	DefaultLogPath  string     `json:"default_log_path"`  // "" or "stdout" or "stderr" or a file path
	DefaultLogLevel string     `json:"default_log_level"` // trace|debug|info|warn|error
	LogFormat       string     `json:"log_format"`        // text|json
	GracefulTimeout Duration   `json:"graceful_timeout"`
	Listeners       []Listener `json:"listeners"`
	Routers         []Router   `json:"routers"`
}

// Listener is one proxy listening socket and the filter that serves it.
type Listener struct {
	Name    string `json:"name"`
	Address string `json:"address"` // "ip:port", "[ipv6]:port" or a unix socket path
	Network string `json:"network"` // tcp (default) or unix
	// DisableMigration turns off live connection migration on upgrade for this
	// listener: its connections drain in the old process instead.
	DisableMigration bool          `json:"disable_migration"`
	FilterChains     []FilterChain `json:"filter_chains"`
}

// FilterChain holds the listener's filters; exactly one filter is supported.
type FilterChain struct {
	Filters []Filter `json:"filters"`
}

// Filter is either an HTTP proxy (Type "proxy") or a TCP proxy ("tcp_proxy").
// Exactly one of HTTP and TCP is set after Load, matching Type.
type Filter struct {
	Type string `json:"type"`
	// HTTP and TCP are decoded from the filter's "config" object by type.
	HTTP *HTTPProxyConfig `json:"-"`
	TCP  *TCPProxyConfig  `json:"-"`
}

// HTTPProxyConfig configures an HTTP/1.1 reverse proxy filter.
type HTTPProxyConfig struct {
	RouterConfigName string   `json:"router_config_name"`
	IdleTimeout      Duration `json:"idle_timeout"`     // downstream keep-alive idle (default 5m)
	UpstreamTimeout  Duration `json:"upstream_timeout"` // whole upstream response header wait (default 60s)
}

// TCPProxyConfig configures a TCP proxy filter.
type TCPProxyConfig struct {
	Cluster     string   `json:"cluster"`
	IdleTimeout Duration `json:"idle_timeout"` // no bytes either way for this long closes the session (default 5m)
}

// Router is a named route table referenced by an HTTP proxy filter.
type Router struct {
	RouterConfigName string        `json:"router_config_name"`
	VirtualHosts     []VirtualHost `json:"virtual_hosts"`
}

// VirtualHost matches requests by Host header ("*" or "*.example.com" wildcards).
type VirtualHost struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Routers []Route  `json:"routers"`
}

// Route is one rule in a virtual host: first match wins.
type Route struct {
	Match          RouteMatch      `json:"match"`
	Route          *RouteAction    `json:"route"`
	DirectResponse *DirectResponse `json:"direct_response"`
}

// RouteMatch: at most one of Prefix and Path; Headers must all match.
type RouteMatch struct {
	Prefix  string          `json:"prefix"`
	Path    string          `json:"path"`
	Headers []HeaderMatcher `json:"headers"`
}

// HeaderMatcher matches one request header by exact value (or presence if Value is empty).
type HeaderMatcher struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// RouteAction sends the request to a cluster.
type RouteAction struct {
	ClusterName string   `json:"cluster_name"`
	Timeout     Duration `json:"timeout"`
}

// DirectResponse answers from the proxy itself.
type DirectResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// ClusterManager holds every upstream cluster.
type ClusterManager struct {
	Clusters []Cluster `json:"clusters"`
}

// Cluster is a set of upstream hosts with a load-balancing policy.
type Cluster struct {
	Name           string       `json:"name"`
	LBType         string       `json:"lb_type"`
	ConnectTimeout Duration     `json:"connect_timeout"`
	MaxIdleConns   int          `json:"max_idle_conns_per_host"` // HTTP upstream pool (default 64)
	Hosts          []Host       `json:"hosts"`
	HealthCheck    *HealthCheck `json:"health_check"`
}

// Host is one upstream address ("ip:port" or a unix path with Network "unix").
type Host struct {
	Address string `json:"address"`
	Network string `json:"network"`
	Weight  int    `json:"weight"`
}

// HealthCheck is an active health check: TCP connect, or HTTP GET Path when Path is set.
type HealthCheck struct {
	Interval           Duration `json:"interval"`
	Timeout            Duration `json:"timeout"`
	HealthyThreshold   int      `json:"healthy_threshold"`
	UnhealthyThreshold int      `json:"unhealthy_threshold"`
	Path               string   `json:"path"`
}

// ServiceConfig configures one service port (admin, pprof or metrics).
// A nil *ServiceConfig in Config means the service is off.
type ServiceConfig struct {
	Address string `json:"address"`
	Network string `json:"network"`
}
