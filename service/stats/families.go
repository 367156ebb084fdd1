package stats

import (
	"math"
	"strconv"
	"sync/atomic"
	"time"
)

// The series mosnlite exports, by dotted name. The data plane and the
// lifecycle register them through the constructors below, so that every
// series of a family has the same labels and help, and the Envoy naming
// (envoy.go) knows what each one means.
const (
	ListenerCxTotal  = "listener.downstream_cx_total"
	ListenerCxActive = "listener.downstream_cx_active"
	ListenerRxBytes  = "listener.downstream_cx_rx_bytes_total"
	ListenerTxBytes  = "listener.downstream_cx_tx_bytes_total"

	HTTPRequests        = "http.downstream_rq_total"
	HTTPRequestsActive  = "http.downstream_rq_active"
	HTTPRequestDuration = "http.downstream_rq_duration_seconds"
	HTTPUpgrades        = "http.downstream_cx_upgrades_total"
	HTTPUpgradesActive  = "http.downstream_cx_upgrades_active"

	TCPSessions        = "tcp.downstream_sessions_total"
	TCPSessionDuration = "tcp.session_duration_seconds"

	ClusterCxTotal          = "cluster.upstream_cx_total"
	ClusterCxConnectFail    = "cluster.upstream_cx_connect_fail_total"
	ClusterCxActive         = "cluster.upstream_cx_active"
	ClusterConnectDuration  = "cluster.upstream_cx_connect_duration_seconds"
	ClusterRequests         = "cluster.upstream_rq_total"
	ClusterRequestsActive   = "cluster.upstream_rq_active"
	ClusterRequestTimeouts  = "cluster.upstream_rq_timeout_total"
	ClusterResponseDuration = "cluster.upstream_rq_duration_seconds"
	ClusterHealthyHosts     = "cluster.healthy_hosts"
	ClusterHosts            = "cluster.hosts"

	ServerLive          = "server.live"
	ServerGeneration    = "server.hot_restart_generation"
	BuildInfo           = "build_info"
	GenerationStartTime = "generation_start_time_seconds"
	ServiceStartTime    = "service_start_time_seconds"
	UpgradeInfo         = "server.upgrade_info"
	HandoffDuration     = "server.handoff_duration_seconds"
	MigrationDuration   = "server.connection_migration_duration_seconds"
	ConnectionsMoved    = "server.connections_migrated_total"
	ConnectionsNotMoved = "server.connection_migrations_failed_total"
)

// NoCluster is the cluster label of a request that no cluster served (a
// direct response, no route).
const NoCluster = "none"

// StatusClass is the status_class label of an HTTP status: "1xx" … "5xx";
// anything outside 100-599 counts as "5xx".
func StatusClass(status int) string {
	class := status / 100
	if class < 1 || class > 5 {
		class = 5
	}
	return strconv.Itoa(class) + "xx"
}

func classIndex(status int) int {
	class := status / 100
	if class < 1 || class > 5 {
		class = 5
	}
	return class
}

// HTTPListenerMetrics are the series of one HTTP proxy listener. Every
// cluster × status class counter exists from construction (at zero), so
// that rates and ratios have something to divide from the first scrape; a
// duration histogram (18 series) appears with its first request.
type HTTPListenerMetrics struct {
	r        *Registry
	listener string
	byClass  map[string]*[6]HTTPRequestSeries // cluster label → [class 1..5]; read-only
	active   *Gauge
}

// HTTPRequestSeries are the series of one listener, cluster and status
// class: the requests answered and their duration.
type HTTPRequestSeries struct {
	r      *Registry
	labels []string
	count  *Counter
	time   atomic.Pointer[Histogram]
}

// NewHTTPListenerMetrics registers the series of HTTP listener listener
// whose routes lead to clusters (NoCluster is added).
func NewHTTPListenerMetrics(r *Registry, listener string, clusters []string) *HTTPListenerMetrics {
	m := &HTTPListenerMetrics{
		r:        r,
		listener: listener,
		byClass:  map[string]*[6]HTTPRequestSeries{},
		active:   r.Gauge(HTTPRequestsActive, "Downstream HTTP requests being served.", "listener", listener),
	}
	HTTPUpgradeSeries(r, listener)
	for _, c := range append(clusters, NoCluster) {
		if m.byClass[c] != nil {
			continue
		}
		var s [6]HTTPRequestSeries
		for class := 1; class <= 5; class++ {
			rs := &s[class]
			rs.r = r
			rs.labels = []string{"listener", listener, "cluster", c, "status_class", strconv.Itoa(class) + "xx"}
			rs.count = r.Counter(HTTPRequests, "Downstream HTTP requests answered.", rs.labels...)
		}
		m.byClass[c] = &s
	}
	return m
}

// Answered counts one request answered with status (its response head on
// its way) by cluster (NoCluster for none; a cluster not given at
// construction counts as NoCluster), and returns the request's series, whose
// Observe records its duration once it has ended.
func (m *HTTPListenerMetrics) Answered(cluster string, status int) *HTTPRequestSeries {
	s, ok := m.byClass[cluster]
	if !ok {
		s = m.byClass[NoCluster]
	}
	rs := &s[classIndex(status)]
	rs.count.Inc()
	return rs
}

// Observe records the duration of a request answered in the series.
func (rs *HTTPRequestSeries) Observe(d time.Duration) {
	h := rs.time.Load()
	if h == nil {
		h = rs.r.Histogram(HTTPRequestDuration,
			"Downstream HTTP request time, from the first byte of the request to the last byte of the response.", nil, rs.labels...)
		rs.time.Store(h) // racing stores hold the same series
	}
	h.Observe(d)
}

// Request records one answered request that has ended: Answered, then
// Observe of its duration.
func (m *HTTPListenerMetrics) Request(cluster string, status int, d time.Duration) {
	m.Answered(cluster, status).Observe(d)
}

// Active is the gauge of requests being served.
func (m *HTTPListenerMetrics) Active() *Gauge { return m.active }

// HTTPUpgradeSeries registers HTTP listener listener's upgrade series: the
// connections a 101 upgraded (WebSocket), and the tunnels open now.
func HTTPUpgradeSeries(r *Registry, listener string) (upgrades *Counter, active *Gauge) {
	return r.Counter(HTTPUpgrades, "Downstream connections upgraded to another protocol (WebSocket) by a 101 answer.", "listener", listener),
		r.Gauge(HTTPUpgradesActive, "Upgraded (WebSocket) connections tunnelled now.", "listener", listener)
}

// ClusterMetrics are the upstream series of one cluster.
type ClusterMetrics struct {
	r        *Registry
	cluster  string
	hosts    map[string]*hostSeries // read-only after construction
	requests [6]*Counter
	timeouts *Counter
	cxActive *Gauge
	rqActive *Gauge
}

type hostSeries struct {
	connect  *Histogram
	response *Histogram
}

// NewClusterMetrics registers the upstream series of cluster and its hosts
// (their addresses as configured), and sets the host count.
func NewClusterMetrics(r *Registry, cluster string, hosts []string) *ClusterMetrics {
	c := &ClusterMetrics{
		r:        r,
		cluster:  cluster,
		hosts:    map[string]*hostSeries{},
		timeouts: r.Counter(ClusterRequestTimeouts, "Upstream requests that timed out waiting for the response.", "cluster", cluster),
		cxActive: r.Gauge(ClusterCxActive, "Upstream connections open.", "cluster", cluster),
		rqActive: r.Gauge(ClusterRequestsActive, "Upstream requests in flight.", "cluster", cluster),
	}
	for class := 1; class <= 5; class++ {
		c.requests[class] = r.Counter(ClusterRequests,
			"Upstream requests that ended, by the status class of the response (the one the client got when there was none).",
			"cluster", cluster, "status_class", strconv.Itoa(class)+"xx")
	}
	for _, h := range hosts {
		c.hosts[h] = c.newHost(h)
	}
	// The config's, not a sum with an Envoy-style parent's.
	r.LocalGauge(ClusterHosts, "Hosts in the cluster.", "cluster", cluster).Set(float64(len(hosts)))
	return c
}

func (c *ClusterMetrics) newHost(host string) *hostSeries {
	return &hostSeries{
		connect: c.r.Histogram(ClusterConnectDuration, "Time to establish an upstream connection.", nil,
			"cluster", c.cluster, "host", host),
		response: c.r.Histogram(ClusterResponseDuration, "Upstream request time, from sending the request to the end of the response.", nil,
			"cluster", c.cluster, "host", host),
	}
}

func (c *ClusterMetrics) host(h string) *hostSeries {
	if s, ok := c.hosts[h]; ok {
		return s
	}
	return c.newHost(h) // the registry returns the same series each time
}

// Connected records a successful upstream connect to host that took d.
func (c *ClusterMetrics) Connected(host string, d time.Duration) { c.host(host).connect.Observe(d) }

// Response records one upstream request to host that ended after d with
// status: the upstream's, or the one sent downstream when there was no
// response (502, 503, 504).
func (c *ClusterMetrics) Response(host string, status int, d time.Duration) {
	c.requests[classIndex(status)].Inc()
	c.host(host).response.Observe(d)
}

// NotSent records an upstream request that ended before it was sent to any
// host (none healthy, none connected), with the status the client got.
func (c *ClusterMetrics) NotSent(status int) { c.requests[classIndex(status)].Inc() }

// Timeout counts an upstream request that timed out waiting for the response.
func (c *ClusterMetrics) Timeout() { c.timeouts.Inc() }

// ActiveConnections is the gauge of open upstream connections.
func (c *ClusterMetrics) ActiveConnections() *Gauge { return c.cxActive }

// ActiveRequests is the gauge of upstream requests in flight.
func (c *ClusterMetrics) ActiveRequests() *Gauge { return c.rqActive }

// TCPListenerMetrics are the series of one TCP proxy listener.
type TCPListenerMetrics struct {
	sessions *Counter
	duration *Histogram
}

// NewTCPListenerMetrics registers the series of TCP proxy listener listener
// relaying to cluster.
func NewTCPListenerMetrics(r *Registry, listener, cluster string) *TCPListenerMetrics {
	return &TCPListenerMetrics{
		sessions: r.Counter(TCPSessions, "TCP proxy sessions accepted.", "listener", listener, "cluster", cluster),
		duration: r.Histogram(TCPSessionDuration, "TCP proxy session lifetime, from accept to the close of both sides.",
			SessionBuckets(), "listener", listener, "cluster", cluster),
	}
}

// Session records the end of a session that lasted d.
func (t *TCPListenerMetrics) Session(d time.Duration) { t.duration.Observe(d) }

// Sessions is the counter of sessions accepted.
func (t *TCPListenerMetrics) Sessions() *Counter { return t.sessions }

// UpgradeMetrics are the histograms of upgrades.
type UpgradeMetrics struct {
	handoff   *Histogram
	migration *Histogram
}

// NewUpgradeMetrics registers the upgrade histograms.
func NewUpgradeMetrics(r *Registry) *UpgradeMetrics {
	return &UpgradeMetrics{
		handoff: r.Histogram(HandoffDuration,
			"Upgrade handoffs, from the successor's start (exec) to its ack (observed by the successor).", nil),
		migration: r.Histogram(MigrationDuration,
			"Connection migrations after an upgrade, from the ack to the last batch answered (observed by the old process).", nil),
	}
}

// Handoff records one handoff that took d, exec to ack.
func (u *UpgradeMetrics) Handoff(d time.Duration) { u.handoff.Observe(d) }

// Migration records one upgrade's connection migration that took d.
func (u *UpgradeMetrics) Migration(d time.Duration) { u.migration.Observe(d) }

// MigrationCounters are the counters of connections of listener's kind
// ("tcp" or "http") that an upgrade moved to the successor, and of those
// that failed to move and drained instead. The old process counts them; its
// successor receives them with its other counters.
func MigrationCounters(r *Registry, listener, kind string) (moved, failed *Counter) {
	moved = r.Counter(ConnectionsMoved,
		"Connections moved to the successor process during an upgrade (counted by the old process).",
		"listener", listener, "kind", kind)
	failed = r.Counter(ConnectionsNotMoved,
		"Connections that failed to move to the successor and drained in the old process instead.",
		"listener", listener, "kind", kind)
	return moved, failed
}

// Build describes the binary for BuildInfo.
type Build struct{ Version, Commit, GoVersion string }

// RegisterProcess registers the series that describe this process: build
// info (always 1), this generation's start time and the service's (the
// first generation's) start time, read from the two functions at each scrape.
func RegisterProcess(r *Registry, b Build, generationStart, serviceStart func() time.Time) {
	r.SetInfo(BuildInfo, "Build of this process: always 1; the labels say which.", 1,
		"version", b.Version, "commit", b.Commit, "go_version", b.GoVersion)
	r.GaugeFunc(GenerationStartTime,
		"Start of this process (this generation), Unix seconds: changes at every upgrade and every restart.",
		func() float64 { return unixTime(generationStart()) })
	r.GaugeFunc(ServiceStartTime,
		"Start of the first generation, Unix seconds: kept across upgrades, changes only when the service starts afresh (a crash or a stop).",
		func() float64 { return unixTime(serviceStart()) })
}

// Upgrade is what one upgrade was, as UpgradeInfo records it.
type Upgrade struct {
	Generation int           // the generation the upgrade started
	Started    time.Time     // when that generation started
	Handoff    time.Duration // its start to its predecessor's ack
	Migrated   int           // connections it took over from the predecessor
}

// SetUpgrade records the upgrade that started this generation: one series,
// whose value is the generation's start (Unix seconds) and whose labels say
// how the upgrade went, for a dashboard's annotations.
func SetUpgrade(r *Registry, u Upgrade) {
	r.SetInfo(UpgradeInfo,
		"The upgrade that started this generation: the value is its start (Unix seconds), the labels how it went.",
		unixTime(u.Started),
		"generation", strconv.Itoa(u.Generation),
		"handoff_ms", strconv.FormatFloat(float64(u.Handoff.Microseconds())/1000, 'f', 1, 64),
		"migrated_connections", strconv.Itoa(u.Migrated))
}

func unixTime(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

func unixSeconds(s float64) time.Time {
	sec, frac := math.Modf(s)
	return time.Unix(int64(sec), int64(frac*1e9))
}
