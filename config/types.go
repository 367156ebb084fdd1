// Package config parses and validates mosnlite's JSON configuration, which is
// MOSN's (v1.x, mosn.io/mosn/pkg/config/v2) field for field, decoded
// case-insensitively as MOSN's encoding/json does, with mosnlite's shorter
// forms kept as aliases.
//
// Every MOSN field is in one of three classes: honoured; inert (it could not
// change which traffic is allowed or where it goes, so it is accepted and a
// warning naming its path says it is ignored, see Config.Warnings); or
// refused with an error naming the path and the MOSN feature, because ignoring
// it would change security or routing. A field MOSN does not have is an error.
//
// It is pure data: after Load returns, nothing here does I/O or logs.
package config

import "time"

// Network names accepted for a listener or an upstream host.
const (
	NetworkTCP  = "tcp"
	NetworkUnix = "unix"
)

// Network filter types mosnlite serves.
const (
	FilterHTTPProxy = "proxy"
	FilterTCPProxy  = "tcp_proxy"
	// FilterConnectionManager is MOSN's deprecated route table declared as a
	// filter beside "proxy"; Parse moves it into the server's routers.
	FilterConnectionManager = "connection_manager"
)

// Load balancer types mosnlite implements (see lbTypes for MOSN's full list).
const (
	LBRoundRobin   = "LB_ROUNDROBIN"
	LBRandom       = "LB_RANDOM"
	LBLeastRequest = "LB_LEAST_REQUEST"
	// LBWeightedRoundRobin is MOSN's weighted round robin. mosnlite's round
	// robin is smooth weighted round robin, which this selects.
	LBWeightedRoundRobin = "LB_WEIGHTED_ROUNDROBIN"
)

// HTTP protocol names as MOSN writes them.
const (
	ProtocolHTTP1 = "Http1"
	ProtocolHTTP2 = "Http2"
	ProtocolAuto  = "Auto"
)

// Defaults applied by Load where a field is absent. Where MOSN has a default,
// it is MOSN's.
const (
	DefaultGracefulTimeout    = 30 * time.Second // MOSN's
	DefaultHandoffTimeout     = 10 * time.Second
	DefaultUpgradeWatchPeriod = 5 * time.Second
	DefaultConnectTimeout     = 10 * time.Second // MOSN's network.DefaultConnectTimeout
	DefaultIdleTimeout        = 5 * time.Minute
	DefaultUpstreamTimeout    = 60 * time.Second
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "text"
	// DefaultPprofPort is MOSN's pprof port when pprof.port_value is 0.
	DefaultPprofPort = 9090
	// DefaultMetricsPath is MOSN's prometheus sink endpoint.
	DefaultMetricsPath = "/metrics"
	// HTTP request limits (mosnlite extensions of the proxy filter, Envoy's defaults).
	DefaultMaxRequestHeadersKB    = 60
	DefaultMaxRequestHeadersCount = 100
	DefaultRequestHeaderTimeout   = 10 * time.Second
)

// Duration is a time.Duration written in JSON as a Go duration string ("30s"),
// as MOSN's api.DurationConfig.
type Duration struct{ time.Duration }

// Config is the whole configuration file: MOSN's MOSNConfig.
type Config struct {
	Servers        []Server       `json:"servers,omitempty"`
	ClusterManager ClusterManager `json:"cluster_manager"`

	// DisableUpgrade is MOSN's switch that turns the hot upgrade off: do not
	// take over from a running process, and do not offer to be taken over
	// (see UpgradeDisabled).
	DisableUpgrade bool `json:"disable_upgrade,omitempty"`
	// CloseGraceful is MOSN's deprecated name of DisableUpgrade.
	CloseGraceful        bool `json:"close_graceful,omitempty"`
	InheritOldMosnconfig bool `json:"inherit_old_mosnconfig,omitempty" refuse:"inherit_old_mosnconfig (taking the running MOSN's config instead of this file)"`

	Tracing          *TracingConfig  `json:"tracing,omitempty" inert:"MOSN's tracing; mosnlite has no tracer"`
	MetricsConfig    *MetricsConfig  `json:"metrics,omitempty"`
	DynamicResources Raw             `json:"dynamic_resources,omitzero" refuse:"dynamic_resources (configuration from an xDS control plane)"`
	StaticResources  Raw             `json:"static_resources,omitzero" refuse:"static_resources (the xDS bootstrap)"`
	Node             Raw             `json:"node,omitzero" inert:"node identity for an xDS control plane"`
	AdminConfig      *AdminConfig    `json:"admin,omitempty"`
	PprofConfig      *PprofConfig    `json:"pprof,omitempty"`
	Pid              string          `json:"pid,omitempty"`
	UDSDir           string          `json:"uds_dir,omitempty"`
	Plugin           *PluginConfig   `json:"plugin,omitempty" inert:"MOSN's plugin log directory; mosnlite has no plugins"`
	ThirdPartCodec   *ThirdPartCodec `json:"third_part_codec,omitempty" inert:"third-party protocol codecs; a listener using such a protocol is refused"`
	Extends          []TypedConfig   `json:"extends,omitempty" inert:"configuration of MOSN extensions; mosnlite has none"`
	Wasms            Raw             `json:"wasm_global_plugins,omitzero" inert:"WebAssembly plugins; a stream filter using one is refused"`

	// mosnlite's own fields.

	// HandoffTimeout bounds a whole upgrade handoff (default 10s).
	HandoffTimeout Duration `json:"handoff_timeout,omitzero"`
	// UpgradeWatchPeriod is how long an old process keeps its listening
	// sockets after a successor's ack, to serve again if the successor dies
	// (default 5s; 0 turns it off). Nil until ApplyDefaults.
	UpgradeWatchPeriod *Duration `json:"upgrade_watch_period,omitempty"`

	// Admin, Pprof and Metrics are the service ports resolved from MOSN's
	// shapes (or mosnlite's aliases); nil means the service is off.
	Admin   *ServiceConfig `json:"-"`
	Pprof   *ServiceConfig `json:"-"`
	Metrics *ServiceConfig `json:"-"`

	// Warnings lists every inert field that was set, each "ignored by
	// mosnlite", and other things a user should know; the caller logs them.
	Warnings []Problem `json:"-"`
}

// Server is one proxy server: MOSN's ServerConfig.
type Server struct {
	Name            string `json:"mosn_server_name,omitempty" alias:"server_name"`
	DefaultLogPath  string `json:"default_log_path,omitempty"`  // "stdout", "stderr" (the default, as MOSN) or a file
	DefaultLogLevel string `json:"default_log_level,omitempty"` // TRACE|DEBUG|INFO|WARN|ERROR|FATAL, any case
	GlobalLogRoller string `json:"global_log_roller,omitempty" inert:"log rolling; rotate with logrotate and SIGUSR1"`
	UseNetpollMode  bool   `json:"use_netpoll_mode,omitempty" inert:"MOSN's netpoll I/O mode"`
	// OptimizeLocalWrite is a MOSN 1.0 tuning switch (removed in later 1.x).
	OptimizeLocalWrite bool       `json:"optimize_local_write,omitempty" inert:"MOSN's local write optimisation"`
	GracefulTimeout    Duration   `json:"graceful_timeout,omitzero"`
	Processor          *Processor `json:"processor,omitempty"` // GOMAXPROCS: a number or "auto"
	Listeners          []Listener `json:"listeners,omitempty"`
	Routers            []Router   `json:"routers,omitempty"`
	// LogFormat is mosnlite's: text (default) or json.
	LogFormat string `json:"log_format,omitempty"`
}

// Listener is one proxy listening socket: MOSN's ListenerConfig.
type Listener struct {
	// Name identifies the listener across an upgrade. MOSN's default, the
	// listening address, is filled in by Parse.
	Name    string `json:"name,omitempty"`
	Type    string `json:"type,omitempty" inert:"MOSN's ingress/egress label for trace logs"`
	Address string `json:"address,omitempty"` // "ip:port", "[ipv6]:port" or a unix socket path
	// BindToPort false makes a MOSN listener that only receives connections
	// redirected to it by use_original_dst; nil (absent) binds.
	BindToPort  *bool        `json:"bind_port,omitempty"`
	ReusePort   bool         `json:"reuseport,omitempty" inert:"SO_REUSEPORT, for MOSN's UDP listeners"`
	Network     string       `json:"network,omitempty"` // tcp (default) or unix
	OriginalDst *OriginalDst `json:"use_original_dst,omitempty" refuse:"use_original_dst (MOSN's transparent proxying)"`
	AccessLogs  []AccessLog  `json:"access_logs,omitempty"`
	// ListenerFilters and StreamFilters are refused by type: mosnlite has none.
	ListenerFilters       []TypedConfig `json:"listener_filters,omitempty"`
	FilterChains          []FilterChain `json:"filter_chains,omitempty"`
	StreamFilters         []TypedConfig `json:"stream_filters,omitempty"`
	Inspector             bool          `json:"inspector,omitempty"` // plain connections too on a TLS listener
	ConnectionIdleTimeout *Duration     `json:"connection_idle_timeout,omitempty"`
	DefaultReadBufferSize int           `json:"default_read_buffer_size,omitempty" inert:"read buffer tuning"`
	// LogPath and LogLevel are MOSN 0.x listener fields that MOSN 1.x ignores.
	LogPath  string `json:"log_path,omitempty" inert:"a MOSN 0.x listener log, ignored by MOSN 1.x too"`
	LogLevel string `json:"log_level,omitempty" inert:"a MOSN 0.x listener log level, ignored by MOSN 1.x too"`

	// DisableMigration (mosnlite) turns off live connection migration on
	// upgrade for this listener: its connections drain in the old process.
	DisableMigration bool `json:"disable_migration,omitempty"`
	// TLSHandshakeTimeout (mosnlite) bounds a TLS handshake, from accept
	// to its end (default 10s).
	TLSHandshakeTimeout Duration `json:"tls_handshake_timeout,omitzero"`
}

// AccessLog is one access log of a listener: a line per HTTP request (per
// session for a tcp_proxy) in Format (MOSN's %variable% syntax, empty for
// MOSN's default format) written to Path, a file or "stdout"/"stderr".
type AccessLog struct {
	Path   string `json:"log_path,omitempty"`
	Format string `json:"log_format,omitempty"`
}

// FilterChain holds the listener's TLS context and network filters. After
// Parse, Filters holds exactly one proxy or tcp_proxy filter.
type FilterChain struct {
	Match         string      `json:"match,omitempty" inert:"filter chain match; MOSN has one filter chain and ignores it"`
	TLSContext    *TLSConfig  `json:"tls_context,omitempty"`
	TLSContextSet []TLSConfig `json:"tls_context_set,omitempty"`
	Filters       []Filter    `json:"filters,omitempty"`
}

// Filter is a network filter. Exactly one of HTTP, TCP and Router is set
// after decoding, matching Type.
type Filter struct {
	Type string
	// HTTP, TCP and Router are decoded from the filter's "config" by type.
	HTTP   *HTTPProxyConfig
	TCP    *TCPProxyConfig
	Router *Router // FilterConnectionManager
}

// HTTPProxyConfig is the HTTP/1.1 reverse proxy filter: MOSN's Proxy.
type HTTPProxyConfig struct {
	Name string `json:"name,omitempty"`
	// DownstreamProtocol: Http1, Http2 (h2c with prior knowledge; h2 by
	// ALPN once TLS negotiates it), or Auto (the HTTP/2 preface detected,
	// else HTTP/1.x). Empty means Http1.
	DownstreamProtocol string `json:"downstream_protocol,omitempty"`
	// UpstreamProtocol: Http1, Http2 (prior knowledge), or Auto/empty (as
	// MOSN: the protocol the downstream connection speaks).
	UpstreamProtocol           string `json:"upstream_protocol,omitempty"`
	FallbackForUnknownProtocol bool   `json:"fallback_for_unknown_protocol,omitempty" refuse:"fallback_for_unknown_protocol (MOSN's fallback to the tcp_proxy filter)"`
	RouterConfigName           string `json:"router_config_name,omitempty"`
	RouterHandlerName          string `json:"router_handler_name,omitempty"`
	ValidateClusters           bool   `json:"validate_clusters,omitempty"` // mosnlite always checks every route's cluster
	ExtendConfig               Raw    `json:"extend_config,omitzero"`      // Http1 max_header_size, max_request_body_size
	ConcurrencyNum             int    `json:"concurrency_num,omitempty" inert:"MOSN's per-connection worker pool"`

	// mosnlite's own fields.
	IdleTimeout     Duration `json:"idle_timeout,omitzero"`     // downstream keep-alive idle (default 5m)
	UpstreamTimeout Duration `json:"upstream_timeout,omitzero"` // whole upstream response header wait (default 60s)
	// Request limits: head size in KiB (default 60, as Envoy), header count
	// (default 100), time to read a request head (default 10s) and body
	// size (0: no limit). Read by the HTTP engine.
	MaxRequestHeadersKB    int      `json:"max_request_headers_kb,omitempty"`
	MaxRequestHeadersCount int      `json:"max_request_headers_count,omitempty"`
	RequestHeaderTimeout   Duration `json:"request_header_timeout,omitzero"`
	MaxRequestBodyBytes    int64    `json:"max_request_body_bytes,omitempty"`
	// HTTP/2 (both sides): streams a client may open at once (default
	// 100), and the receive windows we advertise per stream (default 256
	// KiB) and per connection (default 1 MiB), as Envoy's
	// http2_protocol_options name them. Header limits are the request
	// limits above.
	HTTP2MaxConcurrentStreams        int `json:"http2_max_concurrent_streams,omitempty"`
	HTTP2InitialStreamWindowSize     int `json:"http2_initial_stream_window_size,omitempty"`
	HTTP2InitialConnectionWindowSize int `json:"http2_initial_connection_window_size,omitempty"`
}

// TCPProxyConfig is the TCP proxy filter: MOSN's StreamProxy.
type TCPProxyConfig struct {
	StatPrefix string `json:"stat_prefix,omitempty" inert:"MOSN's stats prefix"`
	Cluster    string `json:"cluster,omitempty"`
	// IdleTimeout: no bytes either way for this long closes the session
	// (default 5m). MOSN writes it in nanoseconds; a duration string works too.
	IdleTimeout        Duration `json:"idle_timeout,omitzero" nanoseconds:"allowed"`
	MaxConnectAttempts int      `json:"max_connect_attempts,omitempty" inert:"unused by MOSN's tcp_proxy too"`
	// Routes choose a cluster by address when Cluster is empty (MOSN).
	Routes []StreamRoute `json:"routes,omitempty"`
}

// StreamRoute is one address-based tcp_proxy route (MOSN's fields carry no
// JSON names of their own, so MOSN matches Go's names case-insensitively).
type StreamRoute struct {
	Cluster          string      `json:"Cluster,omitempty"`
	SourceAddrs      []CidrRange `json:"SourceAddrs,omitempty"`
	DestinationAddrs []CidrRange `json:"DestinationAddrs,omitempty"`
	SourcePort       string      `json:"SourcePort,omitempty"`
	DestinationPort  string      `json:"DestinationPort,omitempty"`
}

// CidrRange is an address range of a StreamRoute.
type CidrRange struct {
	Address string `json:"Address,omitempty"`
	Length  int    `json:"Length,omitempty"`
}

// TypedConfig is a {type, config} pair whose config mosnlite does not read:
// stream filters, listener filters, extends.
type TypedConfig struct {
	Type           string `json:"type,omitempty"`
	GoPluginConfig Raw    `json:"go_plugin_config,omitzero"`
	Config         Raw    `json:"config,omitzero"`
}

// OriginalDst is use_original_dst: a boolean in MOSN 1.0, "tproxy" or
// "redirect" later.
type OriginalDst struct {
	Bool  *bool
	Value string
}

// Processor is the server's processor: a GOMAXPROCS count, or "auto".
type Processor struct {
	N    int
	Auto bool
	text string // the value as written when it was a string
}

// ServiceConfig is one resolved service port (admin, pprof or metrics).
type ServiceConfig struct {
	Address string // "ip:port" or a unix socket path
	Network string // tcp or unix
	// Path is where the metrics service answers (MOSN's prometheus endpoint).
	Path string
	// DisableGoMetrics and DisableProcessMetrics leave those collectors out of
	// /metrics (MOSN's disable_collect_go / disable_collect_process).
	DisableGoMetrics      bool
	DisableProcessMetrics bool
	// Naming and NativeHistograms shape the metrics service (mosnlite
	// extensions of MOSN's metrics, metrics.naming and
	// metrics.native_histograms): the names /metrics and admin
	// /stats/prometheus use (MetricsNamingMosnlite, the default, or
	// MetricsNamingEnvoy), and native histogram buckets beside the classic
	// ones (not with Envoy's naming).
	Naming           string
	NativeHistograms bool
}

// Metric namings accepted in metrics.naming.
const (
	MetricsNamingMosnlite = "mosnlite"
	MetricsNamingEnvoy    = "envoy"
)

// TracingConfig is MOSN's tracing.
type TracingConfig struct {
	Enable bool   `json:"enable,omitempty"`
	Tracer string `json:"tracer,omitempty"`
	Driver string `json:"driver,omitempty"`
	Config Raw    `json:"config,omitzero"`
}

func (t *TracingConfig) active() bool { return t != nil && t.Enable }

// UpgradeDisabled reports MOSN's disable_upgrade (or its deprecated
// close_graceful): the process neither takes over from a running one nor
// offers to be taken over.
func (c *Config) UpgradeDisabled() bool { return c.DisableUpgrade || c.CloseGraceful }

// PluginConfig is MOSN's plugin.
type PluginConfig struct {
	LogBase string `json:"log_base,omitempty"`
}

// ThirdPartCodec is MOSN's third_part_codec.
type ThirdPartCodec struct {
	Codecs []Codec `json:"codecs,omitempty"`
}

// Codec is one third-party protocol codec.
type Codec struct {
	Enable         bool   `json:"enable,omitempty"`
	Type           string `json:"type,omitempty"`
	Path           string `json:"path,omitempty"`
	LoaderFuncName string `json:"loader_func_name,omitempty"`
	Config         Raw    `json:"config,omitzero"`
}

func (t *ThirdPartCodec) active() bool {
	for _, c := range t.Codecs {
		if c.Enable {
			return true
		}
	}
	return false
}
