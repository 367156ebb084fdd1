package stats

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// envoyRegistry is a registry as a running mosnlite fills it: an HTTP
// listener "web" routing to cluster "api", a TCP listener "db" relaying to
// cluster "pg", generation 3, started 90.5 s before now.
func envoyRegistry(t *testing.T, now time.Time) *Registry {
	t.Helper()
	reg := New()
	err := reg.SetExposition(Exposition{
		Naming: NamingEnvoy,
		Now:    func() time.Time { return now },
		ListenerAddress: func(name string) (string, string, bool) {
			switch name {
			case "web":
				return "tcp", "127.0.0.1:8080", true
			case "db":
				return "tcp", "[::1]:5432", true
			}
			return "", "", false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	web := NewHTTPListenerMetrics(reg, "web", []string{"api"})
	for i := 0; i < 7; i++ {
		web.Request("api", 200, 3*time.Millisecond)
	}
	web.Request("api", 503, 40*time.Millisecond)
	web.Request(NoCluster, 404, 100*time.Microsecond)
	web.Active().Set(2)
	db := NewTCPListenerMetrics(reg, "db", "pg")
	db.Sessions().Add(4)
	db.Session(90 * time.Second)
	api := NewClusterMetrics(reg, "api", []string{"10.0.0.1:80", "10.0.0.2:80"})
	api.Connected("10.0.0.1:80", 2*time.Millisecond)
	api.Response("10.0.0.1:80", 200, 3*time.Millisecond)
	api.Response("10.0.0.2:80", 504, time.Second)
	api.Timeout()
	api.ActiveConnections().Set(3)
	api.ActiveRequests().Set(1)
	NewClusterMetrics(reg, "pg", []string{"10.0.0.9:5432"})
	// What the data plane registers itself today.
	for _, l := range []struct {
		name     string
		cx, live float64
	}{{"web", 11, 2}, {"db", 4, 1}} {
		reg.Counter(ListenerCxTotal, "", "listener", l.name).Add(l.cx)
		reg.Gauge(ListenerCxActive, "", "listener", l.name).Set(l.live)
		reg.Counter(ListenerRxBytes, "", "listener", l.name).Add(100 * l.cx)
		reg.Counter(ListenerTxBytes, "", "listener", l.name).Add(1000 * l.cx)
	}
	reg.Counter(ClusterCxTotal, "", "cluster", "api").Add(5)
	reg.Counter(ClusterCxConnectFail, "", "cluster", "api").Add(1)
	reg.Gauge(ClusterHealthyHosts, "", "cluster", "api").Set(1)
	reg.Gauge(ServerLive, "").Set(1)
	reg.Gauge(ServerGeneration, "").Set(3)
	reg.Counter("server.upgrades_total", "Upgrades completed.").Add(2)
	RegisterProcess(reg, Build{Version: "1.2.3", Commit: "abc", GoVersion: "go1.26"},
		func() time.Time { return now.Add(-90500 * time.Millisecond) }, func() time.Time { return now.Add(-time.Hour) })
	// TLS on web (handshakes, failures of every kind) and to api.
	tw := NewTLSListenerMetrics(reg, "web")
	tw.Handshake(false)
	tw.Handshake(true)
	tw.Handshake(true)
	for _, r := range []string{TLSReasonTimeout, TLSReasonNoCert, TLSReasonBadCert, TLSReasonBadCert, TLSReasonClosed, TLSReasonVersion, TLSReasonNotTLS} {
		tw.Failure(r)
	}
	ta := NewTLSClusterMetrics(reg, "api")
	ta.Handshake(false)
	for _, r := range []string{TLSReasonBadServer, TLSReasonAlert, TLSReasonTimeout} {
		ta.Failure(r)
	}
	clock := func() time.Time { return now }
	RegisterCertificateExpiry(reg, "listener", "web", TLSRoleCertChain, "01", "CN=web", now.Add(30*24*time.Hour+time.Hour), clock)
	RegisterCertificateExpiry(reg, "cluster", "api", TLSRoleCACert, "02", "CN=ca", now.Add(400*24*time.Hour), clock)
	return reg
}

// Envoy's TLS statistics: a counter of ours per reason lumps into Envoy's
// connection_error, verification and timeout counters; the first
// certificate to expire gives Envoy's days until it.
func TestEnvoyTLSNames(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	_, fams := scrape(t, envoyRegistry(t, now))
	web := []string{"envoy_listener_address", "127.0.0.1_8080"}
	api := []string{"envoy_cluster_name", "api"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"envoy_listener_ssl_handshake", web, 3},
		{"envoy_listener_ssl_session_reused", web, 2},
		{"envoy_listener_ssl_connection_error", web, 3}, // closed, version, not_tls
		{"envoy_listener_ssl_fail_verify_no_cert", web, 1},
		{"envoy_listener_ssl_fail_verify_error", web, 2},
		{"envoy_listener_downstream_cx_transport_socket_connect_timeout", web, 1},
		{"envoy_cluster_ssl_handshake", api, 1},
		{"envoy_cluster_ssl_session_reused", api, 0},
		{"envoy_cluster_ssl_connection_error", api, 2}, // alert, timeout
		{"envoy_cluster_ssl_fail_verify_error", api, 1},
		{"envoy_server_days_until_first_cert_expiring", nil, 30},
	} {
		if got := find(t, fams, c.name, c.labels...).value; got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The per-certificate series has no Envoy counterpart: it keeps its name.
	got := find(t, fams, "mosnlite_tls_certificate_seconds_until_expiration",
		"scope", "listener", "name", "web", "role", "cert_chain", "serial", "01", "subject", "CN=web").value
	if want := (30*24*time.Hour + time.Hour).Seconds(); got != want {
		t.Errorf("seconds until expiration %v, want %v", got, want)
	}
	for _, gone := range []string{"mosnlite_tls_downstream_handshake_failures_total", "mosnlite_tls_upstream_handshakes_total"} {
		if fams[gone] != nil {
			t.Errorf("%s is exposed in Envoy naming", gone)
		}
	}
}

type promSample struct {
	labels map[string]string
	value  float64
	hist   *dto.Histogram
}

func scrape(t *testing.T, reg *Registry) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	return gather(t, reg.Collector())
}

// find returns the one series of family name with exactly labels.
func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) promSample {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.GetMetric() {
		got := labelsOf(m)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			continue
		}
		s := promSample{labels: got, hist: m.GetHistogram()}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			s.value = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			s.value = m.GetGauge().GetValue()
		}
		return s
	}
	t.Fatalf("%s has no series %v; it has %v", name, want, f.GetMetric())
	return promSample{}
}

func TestEnvoyNamingNamesAndTags(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	text, fams := scrape(t, envoyRegistry(t, now))

	web := []string{"envoy_http_conn_manager_prefix", "web"}
	api := []string{"envoy_cluster_name", "api"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
		typ    dto.MetricType
	}{
		{"envoy_listener_downstream_cx_total", []string{"envoy_listener_address", "127.0.0.1_8080"}, 11, dto.MetricType_COUNTER},
		{"envoy_listener_downstream_cx_total", []string{"envoy_listener_address", "[__1]_5432"}, 4, dto.MetricType_COUNTER},
		{"envoy_listener_downstream_cx_active", []string{"envoy_listener_address", "127.0.0.1_8080"}, 2, dto.MetricType_GAUGE},
		{"envoy_http_downstream_cx_total", web, 11, dto.MetricType_COUNTER},
		{"envoy_http_downstream_cx_active", web, 2, dto.MetricType_GAUGE},
		{"envoy_http_downstream_cx_rx_bytes_total", web, 1100, dto.MetricType_COUNTER},
		{"envoy_http_downstream_cx_tx_bytes_total", web, 11000, dto.MetricType_COUNTER},
		{"envoy_http_downstream_rq_total", web, 9, dto.MetricType_COUNTER},
		{"envoy_http_downstream_rq_completed", web, 9, dto.MetricType_COUNTER},
		{"envoy_http_downstream_rq_xx", append(web, "envoy_response_code_class", "2"), 7, dto.MetricType_COUNTER},
		{"envoy_http_downstream_rq_xx", append(web, "envoy_response_code_class", "4"), 1, dto.MetricType_COUNTER},
		{"envoy_http_downstream_rq_xx", append(web, "envoy_response_code_class", "5"), 1, dto.MetricType_COUNTER},
		{"envoy_http_downstream_rq_xx", append(web, "envoy_response_code_class", "3"), 0, dto.MetricType_COUNTER},
		{"envoy_http_downstream_rq_active", web, 2, dto.MetricType_GAUGE},
		{"envoy_tcp_downstream_cx_total", []string{"envoy_tcp_prefix", "db"}, 4, dto.MetricType_COUNTER},
		{"envoy_tcp_downstream_cx_rx_bytes_total", []string{"envoy_tcp_prefix", "db"}, 400, dto.MetricType_COUNTER},
		{"envoy_tcp_downstream_cx_tx_bytes_total", []string{"envoy_tcp_prefix", "db"}, 4000, dto.MetricType_COUNTER},
		{"envoy_cluster_upstream_cx_total", api, 5, dto.MetricType_COUNTER},
		{"envoy_cluster_upstream_cx_connect_fail", api, 1, dto.MetricType_COUNTER},
		{"envoy_cluster_upstream_cx_active", api, 3, dto.MetricType_GAUGE},
		{"envoy_cluster_upstream_rq_total", api, 2, dto.MetricType_COUNTER},
		{"envoy_cluster_upstream_rq_completed", api, 2, dto.MetricType_COUNTER},
		{"envoy_cluster_upstream_rq_xx", append(api, "envoy_response_code_class", "5"), 1, dto.MetricType_COUNTER},
		{"envoy_cluster_upstream_rq_active", api, 1, dto.MetricType_GAUGE},
		{"envoy_cluster_upstream_rq_timeout", api, 1, dto.MetricType_COUNTER},
		{"envoy_cluster_membership_healthy", api, 1, dto.MetricType_GAUGE},
		{"envoy_cluster_membership_total", api, 2, dto.MetricType_GAUGE},
		{"envoy_cluster_membership_total", []string{"envoy_cluster_name", "pg"}, 1, dto.MetricType_GAUGE},
		{"envoy_server_live", nil, 1, dto.MetricType_GAUGE},
		{"envoy_server_hot_restart_generation", nil, 3, dto.MetricType_GAUGE},
		{"envoy_server_hot_restart_epoch", nil, 2, dto.MetricType_GAUGE},
		{"envoy_server_uptime", nil, 90, dto.MetricType_GAUGE},
		{"envoy_server_total_connections", nil, 3, dto.MetricType_GAUGE},
		// mosnlite's own series without an Envoy equivalent keep their names.
		{"mosnlite_server_upgrades_total", nil, 2, dto.MetricType_COUNTER},
		{"mosnlite_build_info", []string{"version", "1.2.3", "commit", "abc", "go_version", "go1.26"}, 1, dto.MetricType_GAUGE},
		{"mosnlite_service_start_time_seconds", nil, float64(now.Add(-time.Hour).Unix()), dto.MetricType_GAUGE},
	} {
		got := find(t, fams, c.name, c.labels...)
		if got.value != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got.value, c.want)
		}
		if typ := fams[c.name].GetType(); typ != c.typ {
			t.Errorf("%s is a %v, want %v", c.name, typ, c.typ)
		}
	}
	for _, name := range []string{"envoy_server_concurrency", "envoy_server_memory_allocated", "envoy_server_memory_heap_size"} {
		if v := find(t, fams, name).value; !(v > 0) {
			t.Errorf("%s = %v", name, v)
		}
	}
	// What was renamed is not also under mosnlite's name.
	for _, gone := range []string{"mosnlite_http_downstream_rq_total", "mosnlite_cluster_upstream_cx_total", "mosnlite_server_live",
		"mosnlite_listener_downstream_cx_total", "mosnlite_http_downstream_rq_duration_seconds"} {
		if fams[gone] != nil {
			t.Errorf("%s is exposed in Envoy naming", gone)
		}
	}
	if !strings.Contains(text, "# TYPE envoy_cluster_upstream_rq_xx counter\n") {
		t.Errorf("exposition lacks the TYPE of envoy_cluster_upstream_rq_xx")
	}
}

func TestEnvoyHistogramsAreInMilliseconds(t *testing.T) {
	_, fams := scrape(t, envoyRegistry(t, time.Now()))
	rq := find(t, fams, "envoy_http_downstream_rq_time", "envoy_http_conn_manager_prefix", "web").hist
	// 9 requests over clusters and classes merged: 7×3 ms + 40 ms + 0.1 ms.
	if rq.GetSampleCount() != 9 || math.Abs(rq.GetSampleSum()-61.1) > 1e-9 {
		t.Errorf("rq_time count %d sum %v, want 9 and 61.1 ms", rq.GetSampleCount(), rq.GetSampleSum())
	}
	var les []float64
	cum := map[float64]uint64{}
	for _, b := range rq.GetBucket() {
		les = append(les, b.GetUpperBound())
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if fmt.Sprint(les) != "[0.5 1 2.5 5 10 25 50 100 250 500 1000 2500 5000 10000 30000 +Inf]" {
		t.Errorf("bounds in ms: %v", les)
	}
	if cum[0.5] != 1 || cum[5] != 8 || cum[50] != 9 {
		t.Errorf("cumulative buckets: %v", cum)
	}
	if rq.Schema != nil {
		t.Error("native buckets in Envoy naming")
	}
	// Upstream histograms are per cluster: hosts merge.
	rt := find(t, fams, "envoy_cluster_upstream_rq_time", "envoy_cluster_name", "api").hist
	if rt.GetSampleCount() != 2 || math.Abs(rt.GetSampleSum()-1003) > 1e-9 {
		t.Errorf("upstream rq_time count %d sum %v", rt.GetSampleCount(), rt.GetSampleSum())
	}
	cx := find(t, fams, "envoy_cluster_upstream_cx_connect_ms", "envoy_cluster_name", "api").hist
	if cx.GetSampleCount() != 1 || cx.GetSampleSum() != 2 {
		t.Errorf("connect_ms: %v", cx)
	}
	// TCP session lengths, on the listener, up to an hour.
	ln := find(t, fams, "envoy_listener_downstream_cx_length_ms", "envoy_listener_address", "[__1]_5432").hist
	if ln.GetSampleCount() != 1 || ln.GetSampleSum() != 90000 || ln.GetBucket()[len(ln.GetBucket())-2].GetUpperBound() != 3600000 {
		t.Errorf("cx_length_ms: %v", ln)
	}
	// No Envoy equivalent: seconds, mosnlite's name.
	if fams["mosnlite_server_handoff_duration_seconds"] != nil {
		t.Error("the registry above has no handoff histogram")
	}
}

func TestEnvoyTableIsWhatTheNamerProduces(t *testing.T) {
	_, fams := scrape(t, envoyRegistry(t, time.Now()))
	listed := map[string]bool{}
	for _, row := range EnvoyNames() {
		listed[row.Name] = true
		f := fams[row.Name]
		if f == nil {
			t.Errorf("%s is listed but not produced", row.Name)
			continue
		}
		if typ := strings.ToLower(f.GetType().String()); typ != row.Type {
			t.Errorf("%s is listed as a %s, produced as a %s", row.Name, row.Type, typ)
		}
		for _, m := range f.GetMetric() {
			var tags []string
			for _, lp := range m.GetLabel() {
				tags = append(tags, lp.GetName())
			}
			for _, want := range strings.Split(row.Tags, ", ") {
				if want != "" && !strings.Contains(strings.Join(tags, ","), want) {
					t.Errorf("%s series lacks tag %s: %v", row.Name, want, tags)
				}
			}
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, "envoy_") && !listed[name] {
			t.Errorf("%s is produced but not listed in EnvoyNames", name)
		}
	}
}

// TestEnvoyListenerWithoutAddress falls back to the listener's name.
func TestEnvoyListenerWithoutAddress(t *testing.T) {
	reg := New()
	if err := reg.SetExposition(Exposition{Naming: NamingEnvoy}); err != nil {
		t.Fatal(err)
	}
	reg.Counter(ListenerCxTotal, "", "listener", "lonely").Inc()
	_, fams := scrape(t, reg)
	if v := find(t, fams, "envoy_listener_downstream_cx_total", "envoy_listener_address", "lonely").value; v != 1 {
		t.Fatalf("value %v", v)
	}
	// A listener of unknown protocol has no HTTP or TCP byte counters: its
	// bytes keep mosnlite's name.
	reg.Counter(ListenerRxBytes, "", "listener", "lonely").Add(5)
	_, fams = scrape(t, reg)
	if fams["mosnlite_listener_downstream_cx_rx_bytes_total"] == nil {
		t.Fatal("bytes of a listener of unknown protocol dropped")
	}
}

func TestSetExposition(t *testing.T) {
	reg := New()
	if err := reg.SetExposition(Exposition{Naming: "statsd"}); err == nil || !strings.Contains(err.Error(), `unknown naming "statsd"`) {
		t.Errorf("unknown naming: %v", err)
	}
	if err := reg.SetExposition(Exposition{Naming: NamingEnvoy, NativeHistograms: true}); err == nil || !strings.Contains(err.Error(), "milliseconds") {
		t.Errorf("native with envoy: %v", err)
	}
	if err := reg.SetExposition(Exposition{}); err != nil || reg.Exposition().Naming != NamingMosnlite {
		t.Errorf("zero exposition: %v %v", err, reg.Exposition())
	}
}

// TestREADMEListsEveryEnvoyName: the user's manual has a row for each
// Envoy statistic mosnlite fills, with its tags and type.
func TestREADMEListsEveryEnvoyName(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| `envoy_") {
			name := strings.Trim(strings.Fields(line)[1], "`")
			rows[name] = line
		}
	}
	for _, n := range EnvoyNames() {
		row, ok := rows[n.Name]
		if !ok {
			t.Errorf("README lacks a row for %s", n.Name)
			continue
		}
		if !strings.Contains(row, "| "+n.Type+" |") || (n.Tags != "" && !strings.Contains(row, n.Tags)) {
			t.Errorf("README row of %s does not say %s with tags %q: %s", n.Name, n.Type, n.Tags, row)
		}
		delete(rows, n.Name)
	}
	for name := range rows {
		t.Errorf("README lists %s, which the Envoy naming does not produce", name)
	}
}
