package stats

import (
	"math"
	"runtime"
	"runtime/metrics"
	"strings"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// Envoy's naming (Exposition.Naming = NamingEnvoy) exposes what mosnlite
// counts under the names and tags of Envoy's Prometheus output, so that a
// dashboard or an alert written for Envoy reads mosnlite unchanged:
//
//	envoy_cluster_upstream_rq_xx{envoy_cluster_name="web",envoy_response_code_class="2"}
//
// Envoy builds these names by extracting tags from its flat stat names
// (cluster.web.upstream_rq_2xx): the cluster name becomes
// envoy_cluster_name, an HTTP connection manager's stat prefix
// envoy_http_conn_manager_prefix, a listener's address
// envoy_listener_address ("127.0.0.1_8080": ":" becomes "_"), a TCP proxy's
// stat prefix envoy_tcp_prefix, and the class of a response code
// envoy_response_code_class ("2" for 2xx). mosnlite has no stat prefixes:
// the HTTP connection manager and TCP proxy prefix is the listener's name.
//
// Only statistics that mean what Envoy's mean are renamed (EnvoyNames lists
// them); everything else keeps its mosnlite name. As in Envoy, counters
// have no "_total" suffix unless Envoy's name has one, and histograms are in
// milliseconds (classic buckets only).

// EnvoyName is one Envoy statistic that mosnlite fills, for the README and tests.
type EnvoyName struct {
	Name  string // the Prometheus name, e.g. "envoy_cluster_upstream_rq_xx"
	Tags  string // its tags, e.g. "envoy_cluster_name, envoy_response_code_class"
	Type  string // counter, gauge or histogram
	From  string // the mosnlite series it is made from
	Means string // what it counts
}

// Envoy tag names.
const (
	tagCluster   = "envoy_cluster_name"
	tagHTTP      = "envoy_http_conn_manager_prefix"
	tagListener  = "envoy_listener_address"
	tagTCP       = "envoy_tcp_prefix"
	tagCodeClass = "envoy_response_code_class"
)

// envoyTable is every statistic of Envoy's that mosnlite fills. One row per
// Envoy name; the namer below produces exactly these.
func envoyTable() []EnvoyName {
	return []EnvoyName{
		{"envoy_listener_downstream_cx_total", tagListener, "counter", ListenerCxTotal, "connections accepted by the listener"},
		{"envoy_listener_downstream_cx_active", tagListener, "gauge", ListenerCxActive, "connections open on the listener"},
		{"envoy_listener_downstream_cx_length_ms", tagListener, "histogram", TCPSessionDuration, "connection lifetime, accept to close, in ms (TCP proxy listeners, where each connection is one session)"},
		{"envoy_http_downstream_cx_total", tagHTTP, "counter", ListenerCxTotal, "connections accepted by an HTTP listener"},
		{"envoy_http_downstream_cx_active", tagHTTP, "gauge", ListenerCxActive, "connections open on an HTTP listener"},
		{"envoy_http_downstream_cx_rx_bytes_total", tagHTTP, "counter", ListenerRxBytes, "bytes received from HTTP clients"},
		{"envoy_http_downstream_cx_tx_bytes_total", tagHTTP, "counter", ListenerTxBytes, "bytes sent to HTTP clients"},
		{"envoy_http_downstream_cx_upgrades_total", tagHTTP, "counter", HTTPUpgrades, "connections upgraded (WebSocket) by a 101 answer"},
		{"envoy_http_downstream_cx_upgrades_active", tagHTTP, "gauge", HTTPUpgradesActive, "upgraded connections (tunnels) open"},
		{"envoy_http_downstream_rq_total", tagHTTP, "counter", HTTPRequests, "requests answered (a request the client abandons before its response is not counted)"},
		{"envoy_http_downstream_rq_completed", tagHTTP, "counter", HTTPRequests, "requests answered"},
		{"envoy_http_downstream_rq_xx", tagHTTP + ", " + tagCodeClass, "counter", HTTPRequests, "responses by status class 1-5"},
		{"envoy_http_downstream_rq_active", tagHTTP, "gauge", HTTPRequestsActive, "requests being served"},
		{"envoy_http_downstream_rq_time", tagHTTP, "histogram", HTTPRequestDuration, "request time, first byte of the request to last byte of the response, in ms"},
		{"envoy_tcp_downstream_cx_total", tagTCP, "counter", TCPSessions, "TCP proxy sessions accepted"},
		{"envoy_tcp_downstream_cx_rx_bytes_total", tagTCP, "counter", ListenerRxBytes, "bytes received from TCP proxy clients"},
		{"envoy_tcp_downstream_cx_tx_bytes_total", tagTCP, "counter", ListenerTxBytes, "bytes sent to TCP proxy clients"},
		{"envoy_cluster_upstream_cx_total", tagCluster, "counter", ClusterCxTotal, "upstream connection attempts"},
		{"envoy_cluster_upstream_cx_connect_fail", tagCluster, "counter", ClusterCxConnectFail, "upstream connection attempts that failed"},
		{"envoy_cluster_upstream_cx_active", tagCluster, "gauge", ClusterCxActive, "upstream connections open"},
		{"envoy_cluster_upstream_cx_connect_ms", tagCluster, "histogram", ClusterConnectDuration, "time to establish an upstream connection, in ms"},
		{"envoy_cluster_upstream_rq_total", tagCluster, "counter", ClusterRequests, "requests to the cluster that ended: answered by the upstream, or failed (no healthy host, connect failure, timeout, reset)"},
		{"envoy_cluster_upstream_rq_completed", tagCluster, "counter", ClusterRequests, "requests to the cluster that ended"},
		{"envoy_cluster_upstream_rq_xx", tagCluster + ", " + tagCodeClass, "counter", ClusterRequests, "upstream requests by status class; one that got no response counts as the 5xx the client received"},
		{"envoy_cluster_upstream_rq_active", tagCluster, "gauge", ClusterRequestsActive, "upstream requests in flight"},
		{"envoy_cluster_upstream_rq_timeout", tagCluster, "counter", ClusterRequestTimeouts, "upstream requests that timed out waiting for the response"},
		{"envoy_cluster_upstream_rq_time", tagCluster, "histogram", ClusterResponseDuration, "upstream request time, request sent to response complete, in ms"},
		{"envoy_cluster_membership_healthy", tagCluster, "gauge", ClusterHealthyHosts, "hosts passing health checks (all hosts without a health check)"},
		{"envoy_cluster_membership_total", tagCluster, "gauge", ClusterHosts, "hosts in the cluster"},
		{"envoy_server_live", "", "gauge", ServerLive, "1 while the process serves, 0 while it drains"},
		{"envoy_server_hot_restart_epoch", "", "gauge", ServerGeneration, "upgrades (hot restarts) since the service's first process: generation − 1"},
		{"envoy_server_hot_restart_generation", "", "gauge", ServerGeneration, "generation: 1 for a fresh start, +1 per upgrade"},
		{"envoy_server_uptime", "", "gauge", GenerationStartTime, "seconds since this process started"},
		{"envoy_server_total_connections", "", "gauge", ListenerCxActive, "downstream connections open, this process's and a draining predecessor's (Envoy-style hot restart)"},
		{"envoy_server_concurrency", "", "gauge", "(GOMAXPROCS)", "threads running Go code at once"},
		{"envoy_server_memory_allocated", "", "gauge", "(Go runtime)", "bytes of live heap objects"},
		{"envoy_server_memory_heap_size", "", "gauge", "(Go runtime)", "bytes of heap reserved from the OS"},
		{"envoy_listener_ssl_handshake", tagListener, "counter", TLSDownstreamHandshakes, "TLS handshakes with clients that completed"},
		{"envoy_listener_ssl_session_reused", tagListener, "counter", TLSDownstreamResumed, "TLS handshakes with clients that resumed a session"},
		{"envoy_listener_ssl_connection_error", tagListener, "counter", TLSDownstreamFailures, "TLS handshakes with clients that failed, not counting client certificate verification and timeouts (every reason but " + TLSReasonNoCert + ", " + TLSReasonBadCert + ", " + TLSReasonTimeout + ")"},
		{"envoy_listener_ssl_fail_verify_no_cert", tagListener, "counter", TLSDownstreamFailures, "TLS handshakes that failed because the client sent no certificate where one is required (reason " + TLSReasonNoCert + ")"},
		{"envoy_listener_ssl_fail_verify_error", tagListener, "counter", TLSDownstreamFailures, "TLS handshakes that failed because the client's certificate did not verify (reason " + TLSReasonBadCert + ")"},
		{"envoy_listener_downstream_cx_transport_socket_connect_timeout", tagListener, "counter", TLSDownstreamFailures, "TLS handshakes with clients that timed out (reason " + TLSReasonTimeout + ")"},
		{"envoy_cluster_ssl_handshake", tagCluster, "counter", TLSUpstreamHandshakes, "TLS handshakes with upstream hosts that completed"},
		{"envoy_cluster_ssl_session_reused", tagCluster, "counter", TLSUpstreamResumed, "TLS handshakes with upstream hosts that resumed a session"},
		{"envoy_cluster_ssl_connection_error", tagCluster, "counter", TLSUpstreamFailures, "TLS handshakes with upstream hosts that failed, not counting the verification of the host's certificate (every reason but " + TLSReasonBadServer + ")"},
		{"envoy_cluster_ssl_fail_verify_error", tagCluster, "counter", TLSUpstreamFailures, "TLS handshakes that failed because the upstream's certificate did not verify (reason " + TLSReasonBadServer + ")"},
		{"envoy_server_days_until_first_cert_expiring", "", "gauge", TLSCertificateExpiry, "whole days until the first of the certificates in use expires (0 once one has), present while one is"},
	}
}

// EnvoyNames lists the Envoy statistics that Envoy's naming fills.
func EnvoyNames() []EnvoyName { return envoyTable() }

// envoyNamer names one snapshot of a registry the Envoy way.
type envoyNamer struct {
	r     *Registry
	e     Exposition
	help  map[string]string
	proto map[string]string // listener name → "http" or "tcp"
	out   []outSeries
	// sums are Envoy series made of several of ours (the TLS failure
	// reasons an Envoy counter lumps together), by name and tag.
	sums     map[[3]string]float64
	sumOrder [][3]string
	// firstExpiry is the least time until a certificate expires (ok: there is one).
	firstExpiry   float64
	firstExpiryOK bool
}

func newEnvoyNamer(r *Registry, e Exposition) *envoyNamer {
	n := &envoyNamer{r: r, e: e, help: map[string]string{}, proto: map[string]string{}}
	for _, row := range envoyTable() {
		n.help[row.Name] = strings.ToUpper(row.Means[:1]) + row.Means[1:] + "."
	}
	return n
}

func (n *envoyNamer) name(samples []Sample, hists []histsample.Histogram) []outSeries {
	// Which listeners are HTTP and which TCP: their request and session
	// series exist from the moment the listener is built.
	for _, s := range samples {
		switch s.Name {
		case HTTPRequests:
			n.proto[label(s.Labels, "listener")] = "http"
		case TCPSessions:
			n.proto[label(s.Labels, "listener")] = "tcp"
		}
	}
	var connections float64
	for _, s := range samples {
		if s.Name == ListenerCxActive {
			connections += s.Value
		}
		if !n.sample(s) {
			n.out = append(n.out, n.r.mosnliteSeries(s))
		}
	}
	for i := range hists {
		if !n.histogram(&hists[i]) {
			n.out = append(n.out, n.r.mosnliteHistogram(&hists[i]))
		}
	}
	for _, k := range n.sumOrder {
		n.emit(k[0], KindCounter, n.sums[k], k[1], k[2])
	}
	if n.firstExpiryOK {
		n.gauge("envoy_server_days_until_first_cert_expiring", max(math.Floor(n.firstExpiry/86400), 0))
	}
	n.gauge("envoy_server_total_connections", connections)
	n.gauge("envoy_server_concurrency", float64(runtime.GOMAXPROCS(0)))
	// The heap the runtime holds from the OS: live objects, dead ones not
	// swept yet, and free spans not returned.
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(heap)
	n.gauge("envoy_server_memory_allocated", float64(heap[0].Value.Uint64()))
	n.gauge("envoy_server_memory_heap_size", float64(heap[0].Value.Uint64()+heap[1].Value.Uint64()+heap[2].Value.Uint64()))
	return n.out
}

// sample renames s if Envoy has it, reporting whether it did.
func (n *envoyNamer) sample(s Sample) bool {
	l := func(k string) string { return label(s.Labels, k) }
	listener := l("listener")
	isHTTP, isTCP := n.proto[listener] == "http", n.proto[listener] == "tcp"
	switch s.Name {
	case ListenerCxTotal, ListenerCxActive:
		stat := strings.TrimPrefix(s.Name, "listener.")
		n.emit("envoy_listener_"+stat, s.Kind, s.Value, tagListener, n.listenerAddress(listener))
		if isHTTP {
			n.emit("envoy_http_"+stat, s.Kind, s.Value, tagHTTP, listener)
		}
	case ListenerRxBytes, ListenerTxBytes:
		stat := strings.TrimPrefix(s.Name, "listener.")
		switch {
		case isHTTP:
			n.emit("envoy_http_"+stat, s.Kind, s.Value, tagHTTP, listener)
		case isTCP:
			n.emit("envoy_tcp_"+stat, s.Kind, s.Value, tagTCP, listener)
		default:
			return false
		}
	case HTTPRequests:
		n.emit("envoy_http_downstream_rq_total", s.Kind, s.Value, tagHTTP, listener)
		n.emit("envoy_http_downstream_rq_completed", s.Kind, s.Value, tagHTTP, listener)
		n.emit("envoy_http_downstream_rq_xx", s.Kind, s.Value, tagHTTP, listener, tagCodeClass, codeClass(l("status_class")))
	case HTTPRequestsActive:
		n.emit("envoy_http_downstream_rq_active", s.Kind, s.Value, tagHTTP, listener)
	case HTTPUpgrades, HTTPUpgradesActive:
		n.emit("envoy_"+strings.Replace(s.Name, ".", "_", 1), s.Kind, s.Value, tagHTTP, listener)
	case TCPSessions:
		n.emit("envoy_tcp_downstream_cx_total", s.Kind, s.Value, tagTCP, listener)
	case ClusterCxTotal:
		n.emit("envoy_cluster_upstream_cx_total", s.Kind, s.Value, tagCluster, l("cluster"))
	case ClusterCxConnectFail:
		n.emit("envoy_cluster_upstream_cx_connect_fail", s.Kind, s.Value, tagCluster, l("cluster"))
	case ClusterCxActive:
		n.emit("envoy_cluster_upstream_cx_active", s.Kind, s.Value, tagCluster, l("cluster"))
	case ClusterRequests:
		n.emit("envoy_cluster_upstream_rq_total", s.Kind, s.Value, tagCluster, l("cluster"))
		n.emit("envoy_cluster_upstream_rq_completed", s.Kind, s.Value, tagCluster, l("cluster"))
		n.emit("envoy_cluster_upstream_rq_xx", s.Kind, s.Value, tagCluster, l("cluster"), tagCodeClass, codeClass(l("status_class")))
	case ClusterRequestsActive:
		n.emit("envoy_cluster_upstream_rq_active", s.Kind, s.Value, tagCluster, l("cluster"))
	case ClusterRequestTimeouts:
		n.emit("envoy_cluster_upstream_rq_timeout", s.Kind, s.Value, tagCluster, l("cluster"))
	case ClusterHealthyHosts:
		n.emit("envoy_cluster_membership_healthy", s.Kind, s.Value, tagCluster, l("cluster"))
	case ClusterHosts:
		n.emit("envoy_cluster_membership_total", s.Kind, s.Value, tagCluster, l("cluster"))
	case TLSDownstreamHandshakes:
		n.emit("envoy_listener_ssl_handshake", s.Kind, s.Value, tagListener, n.listenerAddress(listener))
	case TLSDownstreamResumed:
		n.emit("envoy_listener_ssl_session_reused", s.Kind, s.Value, tagListener, n.listenerAddress(listener))
	case TLSDownstreamFailures:
		name := "envoy_listener_ssl_connection_error"
		switch l("reason") {
		case TLSReasonNoCert:
			name = "envoy_listener_ssl_fail_verify_no_cert"
		case TLSReasonBadCert:
			name = "envoy_listener_ssl_fail_verify_error"
		case TLSReasonTimeout:
			name = "envoy_listener_downstream_cx_transport_socket_connect_timeout"
		}
		n.sum(name, s.Value, tagListener, n.listenerAddress(listener))
	case TLSUpstreamHandshakes:
		n.emit("envoy_cluster_ssl_handshake", s.Kind, s.Value, tagCluster, l("cluster"))
	case TLSUpstreamResumed:
		n.emit("envoy_cluster_ssl_session_reused", s.Kind, s.Value, tagCluster, l("cluster"))
	case TLSUpstreamFailures:
		name := "envoy_cluster_ssl_connection_error"
		if l("reason") == TLSReasonBadServer {
			name = "envoy_cluster_ssl_fail_verify_error"
		}
		n.sum(name, s.Value, tagCluster, l("cluster"))
	case TLSCertificateExpiry:
		if !n.firstExpiryOK || s.Value < n.firstExpiry {
			n.firstExpiry, n.firstExpiryOK = s.Value, true
		}
		return false // the per-certificate series stays: Envoy has none
	case ServerLive:
		n.emit("envoy_server_live", s.Kind, s.Value)
	case ServerGeneration:
		n.emit("envoy_server_hot_restart_generation", s.Kind, s.Value)
		n.emit("envoy_server_hot_restart_epoch", s.Kind, max(s.Value-1, 0))
	case GenerationStartTime:
		// Envoy's uptime is whole seconds since this process started. The
		// start time itself stays too: it has no Envoy equivalent.
		up := math.Floor(n.e.now().Sub(unixSeconds(s.Value)).Seconds())
		n.emit("envoy_server_uptime", KindGauge, max(up, 0))
		return false
	default:
		return false
	}
	return true
}

// histogram renames h if Envoy has it, in milliseconds, reporting whether it did.
func (n *envoyNamer) histogram(h *histsample.Histogram) bool {
	l := func(k string) string { return label(h.Labels, k) }
	var name string
	var tags []string
	switch h.Name {
	case HTTPRequestDuration:
		name, tags = "envoy_http_downstream_rq_time", []string{tagHTTP, l("listener")}
	case ClusterConnectDuration:
		name, tags = "envoy_cluster_upstream_cx_connect_ms", []string{tagCluster, l("cluster")}
	case ClusterResponseDuration:
		name, tags = "envoy_cluster_upstream_rq_time", []string{tagCluster, l("cluster")}
	case TCPSessionDuration:
		name, tags = "envoy_listener_downstream_cx_length_ms", []string{tagListener, n.listenerAddress(l("listener"))}
	default:
		return false
	}
	ms := inMilliseconds(*h)
	n.out = append(n.out, outSeries{name: name, dotted: h.Name, help: n.help[name], kind: kindHistogram, labels: tags, hist: &ms})
	return true
}

func (n *envoyNamer) emit(name string, kind Kind, v float64, tags ...string) {
	n.out = append(n.out, outSeries{name: name, dotted: name, help: n.help[name], kind: kind, labels: tags, value: v})
}

func (n *envoyNamer) gauge(name string, v float64) { n.emit(name, KindGauge, v) }

// sum adds v to the counter name{tag=value}, emitted once every sample is seen.
func (n *envoyNamer) sum(name string, v float64, tag, value string) {
	k := [3]string{name, tag, value}
	if _, ok := n.sums[k]; !ok {
		if n.sums == nil {
			n.sums = map[[3]string]float64{}
		}
		n.sumOrder = append(n.sumOrder, k)
	}
	n.sums[k] += v
}

// listenerAddress is Envoy's listener tag: the bound address with ":" as
// "_" (as in Envoy's stat names), or the name if the address is unknown.
func (n *envoyNamer) listenerAddress(name string) string {
	if n.e.ListenerAddress != nil {
		if _, a, ok := n.e.ListenerAddress(name); ok && a != "" {
			return strings.ReplaceAll(a, ":", "_")
		}
	}
	return name
}

// codeClass is Envoy's response code class: "2" for "2xx".
func codeClass(statusClass string) string { return strings.TrimSuffix(statusClass, "xx") }

// inMilliseconds scales a histogram in seconds to milliseconds: bounds and
// sum. Its native buckets do not scale (they are powers of two) and are dropped.
func inMilliseconds(h histsample.Histogram) histsample.Histogram {
	h = h.Clone()
	for i, b := range h.Bounds {
		h.Bounds[i] = math.Round(b*1e9) / 1e6 // 0.0005 s is exactly 0.5 ms
	}
	h.Sum *= 1000
	h.ZeroCount, h.Native = h.Count, nil
	return h
}

// label returns the value of key in a key, value list, "" if absent.
func label(labels []string, key string) string {
	for i := 0; i+1 < len(labels); i += 2 {
		if labels[i] == key {
			return labels[i+1]
		}
	}
	return ""
}
