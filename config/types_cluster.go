package config

// ClusterManager holds every upstream cluster: MOSN's ClusterManagerConfig.
type ClusterManager struct {
	TLSContext        *TLSConfig `json:"tls_context,omitempty"`
	ClusterPoolEnable bool       `json:"cluster_pool_enable,omitempty" inert:"MOSN's connection pool sharing"`
	ClusterConfigPath string     `json:"clusters_configs,omitempty" refuse:"clusters_configs (clusters loaded from a directory)"`
	Clusters          []Cluster  `json:"clusters,omitempty"`
}

// Cluster is a set of upstream hosts with a load-balancing policy: MOSN's Cluster.
type Cluster struct {
	Name string `json:"name,omitempty"`
	// Type: SIMPLE (the default) or STATIC; MOSN's discovery types are refused.
	Type    string `json:"type,omitempty"`
	SubType string `json:"sub_type,omitempty" inert:"unused by MOSN too"`
	LBType  string `json:"lb_type,omitempty"`
	// MaxRequestPerConn closes an upstream connection after it carried
	// that many requests (0: no limit). MOSN parses it and defaults it to
	// 1024 but never applies it; mosnlite applies what is set.
	MaxRequestPerConn int `json:"max_request_per_conn,omitempty"`
	Mark              int `json:"mark,omitempty" refuse:"mark (SO_MARK on upstream connections, for policy routing)"`
	// ConnBufferLimitBytes bounds the bytes one upstream connection holds
	// in the proxy while they are relayed (0: mosnlite's buffer sizes).
	ConnBufferLimitBytes int `json:"conn_buffer_limit_bytes,omitempty"`
	// CircuitBreakers are the cluster's limits; as in MOSN, the first set
	// applies and 0 is no limit.
	CircuitBreakers   []Thresholds     `json:"circuit_breakers,omitempty"`
	HealthCheck       *HealthCheck     `json:"health_check,omitempty"`
	Spec              *ClusterSpec     `json:"spec,omitempty" refuse:"spec (hosts from MOSN's service subscription)"`
	LBSubsetConfig    *LBSubsetConfig  `json:"lb_subset_config,omitempty" refuse:"lb_subset_config (MOSN's subset load balancing)"`
	LBOriDstConfig    *LBOriDstConfig  `json:"original_dst_lb_config,omitempty" refuse:"original_dst_lb_config (MOSN's original destination load balancing)"`
	ClusterManagerTLS bool             `json:"cluster_manager_tls,omitempty"`
	TLSContext        *TLSConfig       `json:"tls_context,omitempty"`
	Hosts             []Host           `json:"hosts,omitempty"`
	ConnectTimeout    Duration         `json:"connect_timeout,omitzero"`
	KeepAlive         *KeepAlive       `json:"keepalive,omitempty" inert:"MOSN's RPC heartbeats"`
	IdleTimeout       *Duration        `json:"idle_timeout,omitempty" inert:"idle upstream connections close after 90s"`
	LBConfig          *LBConfig        `json:"lbconfig,omitempty" inert:"load balancer tuning"`
	DNSRefreshRate    *Duration        `json:"dns_refresh_rate,omitempty" inert:"DNS settings of MOSN's STRICT_DNS clusters; host names resolve at every connect"`
	RespectDNSTTL     bool             `json:"respect_dns_ttl,omitempty" inert:"DNS settings of MOSN's STRICT_DNS clusters; host names resolve at every connect"`
	DNSLookupFamily   string           `json:"dns_lookup_family,omitempty" inert:"DNS settings of MOSN's STRICT_DNS clusters; host names resolve at every connect"`
	DNSResolvers      *DNSResolvers    `json:"dns_resolvers,omitempty" inert:"DNS settings of MOSN's STRICT_DNS clusters; host names resolve at every connect"`
	DNSResolverFile   string           `json:"dns_resolver_file,omitempty" inert:"DNS settings of MOSN's STRICT_DNS clusters; host names resolve at every connect"`
	DNSResolverPort   string           `json:"dns_resolver_port,omitempty" inert:"DNS settings of MOSN's STRICT_DNS clusters; host names resolve at every connect"`
	SlowStart         *SlowStartConfig `json:"slow_start,omitempty" refuse:"slow_start (MOSN's weight ramp-up for new hosts)"`
	ClusterPoolEnable bool             `json:"cluster_pool_enable,omitempty" inert:"MOSN's connection pool sharing"`

	// MaxIdleConns (mosnlite) is the HTTP upstream pool size per host (default 64).
	MaxIdleConns int `json:"max_idle_conns_per_host,omitempty"`

	// TLS is the upstream TLS context in effect, set by Parse: the cluster's
	// tls_context, or cluster_manager.tls_context with cluster_manager_tls,
	// when it is on; nil for plain connections.
	TLS *TLSConfig `json:"-"`
}

// Thresholds are the limits of a circuit breaker (MOSN uses the first set).
type Thresholds struct {
	MaxConnections     int `json:"max_connections,omitempty"`
	MaxPendingRequests int `json:"max_pending_requests,omitempty"`
	MaxRequests        int `json:"max_requests,omitempty"`
	MaxRetries         int `json:"max_retries,omitempty"`
}

// Host is one upstream: "ip:port", "name:port", or a unix socket as
// "unix:/path" (MOSN) or Address "/path" with Network "unix" (mosnlite).
type Host struct {
	Address    string    `json:"address,omitempty"`
	Hostname   string    `json:"hostname,omitempty"` // the host's name in access logs (%upstream_host%)
	Weight     int       `json:"weight,omitempty"`   // 1-128, as MOSN (default 1)
	Metadata   *Metadata `json:"metadata,omitempty" inert:"host metadata for subset load balancing, which mosnlite refuses"`
	TLSDisable bool      `json:"tls_disable,omitempty"` // plain connections to this host in a TLS cluster
	Network    string    `json:"network,omitempty"`     // mosnlite: tcp (default) or unix
}

// HealthCheck is an active health check: MOSN's HealthCheck, plus mosnlite's
// Path. It connects to each host (TCP); with protocol Http1 and
// check_config.http_check_config it sends MOSN's HTTP check; with Path it
// GETs Path and wants a 2xx.
type HealthCheck struct {
	Protocol            string   `json:"protocol,omitempty"`
	Timeout             Duration `json:"timeout,omitzero"`
	Interval            Duration `json:"interval,omitzero"`
	IntervalJitter      Duration `json:"interval_jitter,omitzero"`       // a random [0, jitter) added to each interval (MOSN's default 5ms)
	InitialDelaySeconds Duration `json:"initial_delay_seconds,omitzero"` // before the first check (default: at once)
	HealthyThreshold    int      `json:"healthy_threshold,omitempty"`
	UnhealthyThreshold  int      `json:"unhealthy_threshold,omitempty"`
	ServiceName         string   `json:"service_name,omitempty"`
	CheckConfig         Raw      `json:"check_config,omitzero"`
	EventLogPath        string   `json:"event_log_path,omitempty" inert:"MOSN's health check event log"`
	CommonCallbacks     []string `json:"common_callbacks,omitempty" inert:"callbacks of MOSN extensions"`

	// Path (mosnlite) makes it an HTTP check: GET Path, healthy on a 2xx.
	Path string `json:"path,omitempty"`

	// HTTPCheck is CheckConfig's http_check_config, decoded by Parse.
	HTTPCheck *HTTPCheckConfig `json:"-"`
}

// HTTPCheckConfig is MOSN's check_config.http_check_config: the request
// (Method, default GET; Path with its query; Scheme http or https; Domain,
// the Host; Port, the host's port when 0) and the healthy status ranges
// (Codes, default 200 only), within Timeout.
type HTTPCheckConfig struct {
	Port    int         `json:"port,omitempty"`
	Timeout Duration    `json:"timeout,omitzero"`
	Path    string      `json:"path,omitempty"`
	Method  string      `json:"method,omitempty"`
	Scheme  string      `json:"scheme,omitempty"`
	Domain  string      `json:"domain,omitempty"`
	Codes   []CodeRange `json:"codes,omitempty"`
}

// CodeRange is a range of healthy status codes (MOSN's fields have no JSON names).
type CodeRange struct {
	Start int `json:"Start"`
	End   int `json:"End"`
}

// ClusterSpec is MOSN's service subscription.
type ClusterSpec struct {
	Subscribes []SubscribeSpec `json:"subscribe,omitempty"`
}

// SubscribeSpec is one subscription.
type SubscribeSpec struct {
	Subscriber  string `json:"subscriber,omitempty"`
	ServiceName string `json:"service_name,omitempty"`
}

// LBSubsetConfig is MOSN's subset load balancer.
type LBSubsetConfig struct {
	FallBackPolicy  int               `json:"fall_back_policy,omitempty"`
	DefaultSubset   map[string]string `json:"default_subset,omitempty"`
	SubsetSelectors [][]string        `json:"subset_selectors,omitempty"`
}

// LBOriDstConfig is MOSN's original destination load balancer.
type LBOriDstConfig struct {
	UseHeader    bool   `json:"use_header,omitempty"`
	HeaderName   string `json:"header_name,omitempty"`
	ReplaceLocal bool   `json:"replace_local,omitempty"`
}

// KeepAlive is MOSN's upstream heartbeat.
type KeepAlive struct {
	Interval Duration `json:"interval,omitzero"`
	Timeout  Duration `json:"timeout,omitzero"`
}

// LBConfig tunes MOSN's load balancers.
type LBConfig struct {
	ChoiceCount       *int     `json:"choice_count,omitempty"`
	ActiveRequestBias *float64 `json:"active_request_bias,omitempty"`
	ClientErrorBias   *float64 `json:"client_error_bias,omitempty"`
	ServerErrorBias   *float64 `json:"server_error_bias,omitempty"`
}

// DNSResolvers are the resolvers of MOSN's STRICT_DNS clusters.
type DNSResolvers struct {
	Servers  []string `json:"servers,omitempty"`
	Search   []string `json:"search,omitempty"`
	Port     string   `json:"port,omitempty"`
	Ndots    int      `json:"ndots,omitempty"`
	Timeout  int      `json:"timeout,omitempty"`
	Attempts int      `json:"attempts,omitempty"`
}

// SlowStartConfig is MOSN's slow start of new hosts.
type SlowStartConfig struct {
	Mode              string    `json:"mode,omitempty"`
	SlowStartDuration *Duration `json:"slow_start_duration,omitempty"`
	Aggression        float64   `json:"aggression,omitempty"`
	MinWeightPercent  float64   `json:"min_weight_percent,omitempty"`
}

// TLSConfig is MOSN's tls_context, parsed whole. A context with Status
// false is ignored, as in MOSN. For one that is on, Parse reads and checks
// its certificates, key and CA bundle and resolves its settings into Loaded
// (see tls.go); the classes of its fields are in the README.
type TLSConfig struct {
	Status            bool   `json:"status,omitempty"`
	Type              string `json:"type,omitempty"` // a MOSN TLS extension: refused
	ServerName        string `json:"server_name,omitempty"`
	CACert            string `json:"ca_cert,omitempty"`    // a file, or inline PEM
	CertChain         string `json:"cert_chain,omitempty"` // a file, or inline PEM
	PrivateKey        string `json:"private_key,omitempty"`
	VerifyClient      bool   `json:"verify_client,omitempty"`
	RequireClientCert bool   `json:"require_client_cert,omitempty"`
	InsecureSkip      bool   `json:"insecure_skip,omitempty"`
	CipherSuites      string `json:"cipher_suites,omitempty"` // MOSN's names, ":" between them
	EcdhCurves        string `json:"ecdh_curves,omitempty"`   // "," between them
	MinVersion        string `json:"min_version,omitempty"`   // TLS_AUTO, TLSv1_0 … TLSv1_3, any case
	MaxVersion        string `json:"max_version,omitempty"`
	ALPN              string `json:"alpn,omitempty"` // "," between them
	// Ticket is stored by MOSN and used nowhere.
	Ticket       string     `json:"ticket,omitempty"`
	Fallback     bool       `json:"fall_back,omitempty"`
	ExtendVerify Raw        `json:"extend_verify,omitzero"`
	Callbacks    []string   `json:"callbacks,omitempty"`
	SdsConfig    *SdsConfig `json:"sds_source,omitempty"`

	// SessionTicketKeys (mosnlite) are files of session ticket keys, 80
	// bytes (Envoy's format) or 32 each; the first encrypts new tickets,
	// every one decrypts. Without them a listener uses keys the first
	// generation made, which every successor inherits.
	SessionTicketKeys []string `json:"session_ticket_keys,omitempty"`

	// Loaded is what Parse read and resolved for a context that is on; nil
	// for one that is off (or a config built in Go and not parsed).
	Loaded *TLSMaterial `json:"-"`
}

// SdsConfig says where certificates come from over SDS (MOSN's fields carry
// no JSON names).
type SdsConfig struct {
	CertificateConfig *SecretConfig `json:"CertificateConfig,omitempty"`
	ValidationConfig  *SecretConfig `json:"ValidationConfig,omitempty"`
}

// SecretConfig names an SDS secret and its source.
type SecretConfig struct {
	Name      string `json:"name,omitempty"`
	SdsConfig Raw    `json:"sdsConfig,omitzero"`
}
