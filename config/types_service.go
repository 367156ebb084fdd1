package config

// AdminConfig is the admin port: MOSN's
// {"address": {"socket_address": {"address": "0.0.0.0", "port_value": 34901}}},
// or mosnlite's {"address": "127.0.0.1:34901", "network": "tcp"}.
type AdminConfig struct {
	Address AdminAddress `json:"address"`
	Network string       `json:"network,omitempty"` // mosnlite's form only
}

// AdminAddress is MOSN's AddressInfo, or mosnlite's address string.
type AdminAddress struct {
	SocketAddress *SocketAddress // MOSN's form
	Text          string         // mosnlite's form: "ip:port" or a unix socket path
}

// SocketAddress is MOSN's socket address. An empty Address means every
// interface, as in MOSN; port 0 is any free port.
type SocketAddress struct {
	Address   string `json:"address,omitempty"`
	PortValue int    `json:"port_value,omitempty"`
}

// PprofConfig is the pprof port: MOSN's {"debug": true, "port_value": 34902,
// "endpoint": "127.0.0.1"} (off unless debug; port 9090 and every interface
// by default, as in MOSN), or mosnlite's {"address": ..., "network": ...}.
type PprofConfig struct {
	Debug     bool   `json:"debug,omitempty"`
	PortValue int    `json:"port_value,omitempty"`
	Endpoint  string `json:"endpoint,omitempty"`
	Address   string `json:"address,omitempty"` // mosnlite's form
	Network   string `json:"network,omitempty"` // mosnlite's form
}

// MetricsConfig is MOSN's metrics: sinks (one prometheus sink serves the
// metrics port) and MOSN's metric settings, or mosnlite's
// {"address": ..., "network": ...}.
type MetricsConfig struct {
	Sinks        []MetricsSink `json:"sinks,omitempty"`
	StatsMatcher Raw           `json:"stats_matcher,omitzero" inert:"MOSN's metric filter; mosnlite exports every series"`
	ShmZone      string        `json:"shm_zone,omitempty" inert:"MOSN's shared-memory metrics; counters carry over in the handoff instead"`
	ShmSize      Raw           `json:"shm_size,omitzero" inert:"MOSN's shared-memory metrics; counters carry over in the handoff instead"`
	FlushMosn    bool          `json:"flush_mosn,omitempty" inert:"MOSN's metrics flushing"`
	LazyFlush    bool          `json:"lazy_flush,omitempty" inert:"MOSN's metrics flushing"`
	Sample       Raw           `json:"sample,omitzero" inert:"MOSN's histogram sampling"`
	EWMA         Raw           `json:"ewma,omitzero" inert:"MOSN's EWMA settings"`
	Address      string        `json:"address,omitempty"` // mosnlite's form
	Network      string        `json:"network,omitempty"` // mosnlite's form
	// mosnlite extensions, with either form: the names of the exposition
	// (MetricsNamingMosnlite or MetricsNamingEnvoy) and native histogram
	// buckets beside the classic ones.
	Naming           string `json:"naming,omitempty"`
	NativeHistograms bool   `json:"native_histograms,omitempty"`
}

// MetricsSink is one of MOSN's metrics sinks: "prometheus" (served) or
// "console" (inert).
type MetricsSink struct {
	Type       string
	Prometheus *PrometheusSink // Type "prometheus"
	Config     Raw             // any other type's config, kept as written
}

// PrometheusSink is MOSN's prometheus sink. It listens on every interface,
// as in MOSN.
type PrometheusSink struct {
	ExportURL             string `json:"export_url,omitempty"`
	Port                  int    `json:"port,omitempty"`
	Endpoint              string `json:"endpoint,omitempty"`
	DisableCollectProcess bool   `json:"disable_collect_process,omitempty"`
	DisableCollectGo      bool   `json:"disable_collect_go,omitempty"`
	Percentiles           []int  `json:"percentiles,omitempty" inert:"MOSN's precomputed percentiles; mosnlite exports histogram buckets, from which histogram_quantile() computes any percentile"`
}
