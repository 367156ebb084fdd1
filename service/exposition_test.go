package service

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/mosnlite/mosnlite/service/stats"
)

// doAccept is do with an Accept header.
func doAccept(t *testing.T, h http.Handler, target, accept string) (*http.Response, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", target, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	h.ServeHTTP(rec, req)
	return rec.Result(), rec.Body.Bytes()
}

func registryWithHistogram(t *testing.T) *stats.Registry {
	t.Helper()
	reg := stats.New()
	reg.Counter("listener.downstream_cx_total", "Connections accepted.", "listener", "web").Add(3)
	reg.Histogram("http.downstream_rq_duration_seconds", "Request time.", nil, "listener", "web").Observe(7 * time.Millisecond)
	return reg
}

// TestOpenMetricsNegotiation: both Prometheus endpoints answer in the
// format the scraper asks for.
func TestOpenMetricsNegotiation(t *testing.T) {
	reg := registryWithHistogram(t)
	metrics, err := NewMetricsHandler(reg)
	if err != nil {
		t.Fatal(err)
	}
	admin := newTestAdmin(newFakeInfo(), reg)
	for _, ep := range []struct {
		name   string
		h      http.Handler
		target string
	}{{"metrics", metrics, "/metrics"}, {"admin", admin, "/stats/prometheus"}, {"admin format", admin, "/stats?format=prometheus"}} {
		// What Prometheus sends: OpenMetrics preferred.
		res, body := doAccept(t, ep.h, ep.target, "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
		ct := res.Header.Get("Content-Type")
		if !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
			t.Errorf("%s: Content-Type %q for an OpenMetrics scraper", ep.name, ct)
		}
		if !bytes.HasSuffix(body, []byte("# EOF\n")) {
			t.Errorf("%s: OpenMetrics body does not end in # EOF:\n%s", ep.name, body)
		}
		// OpenMetrics names a counter family without _total.
		if !bytes.Contains(body, []byte("# TYPE mosnlite_listener_downstream_cx counter\n")) ||
			!bytes.Contains(body, []byte(`mosnlite_listener_downstream_cx_total{listener="web"} 3`)) {
			t.Errorf("%s: OpenMetrics counter:\n%s", ep.name, body)
		}
		if !bytes.Contains(body, []byte(`mosnlite_http_downstream_rq_duration_seconds_bucket{listener="web",le="0.01"} 1`)) {
			t.Errorf("%s: OpenMetrics histogram bucket missing:\n%s", ep.name, body)
		}

		// A plain scraper (curl) gets the text format.
		res, body = doAccept(t, ep.h, ep.target, "")
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Errorf("%s: Content-Type %q without Accept", ep.name, ct)
		}
		if bytes.Contains(body, []byte("# EOF")) {
			t.Errorf("%s: text body has # EOF", ep.name)
		}
	}
}

func TestProtobufCarriesNativeHistograms(t *testing.T) {
	const accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
	for _, native := range []bool{false, true} {
		reg := registryWithHistogram(t)
		if err := reg.SetExposition(stats.Exposition{NativeHistograms: native}); err != nil {
			t.Fatal(err)
		}
		h, err := NewMetricsHandler(reg)
		if err != nil {
			t.Fatal(err)
		}
		res, body := doAccept(t, h, "/metrics", accept)
		dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.ResponseFormat(res.Header))
		var found *dto.Histogram
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				break
			}
			if mf.GetName() == "mosnlite_http_downstream_rq_duration_seconds" {
				found = mf.GetMetric()[0].GetHistogram()
			}
		}
		if found == nil {
			t.Fatalf("native=%v: no histogram in the protobuf exposition (%s)", native, res.Header.Get("Content-Type"))
		}
		if got := found.Schema != nil; got != native {
			t.Errorf("native=%v: schema present = %v", native, got)
		}
		if native && (found.GetSchema() != stats.NativeSchema || len(found.GetPositiveDelta()) != 1) {
			t.Errorf("native buckets: %v", found)
		}
		if len(found.GetBucket()) != len(stats.ProxyBuckets()) {
			t.Errorf("native=%v: %d classic buckets", native, len(found.GetBucket()))
		}
	}
}

func TestAdminStatsShowHistograms(t *testing.T) {
	reg := registryWithHistogram(t)
	admin := newTestAdmin(newFakeInfo(), reg)
	_, body := do(t, admin, "GET", "/stats")
	if !strings.Contains(body, `http.downstream_rq_duration_seconds{listener="web"}: count=1 sum=0.007 p50=0.0075 p90=0.0095 p99=0.00995`+"\n") {
		t.Errorf("/stats:\n%s", body)
	}
	_, body = do(t, admin, "GET", "/stats?filter=duration")
	if strings.Contains(body, "cx_total") || !strings.Contains(body, "duration") {
		t.Errorf("/stats?filter=duration:\n%s", body)
	}
	_, body = do(t, admin, "GET", "/stats?format=json")
	var js struct {
		Stats      []struct{ Name string }
		Histograms []struct {
			Name    string
			Count   uint64
			Sum     float64
			Buckets []struct {
				LE    float64
				Count uint64
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Histograms) != 1 || js.Histograms[0].Count != 1 || len(js.Histograms[0].Buckets) != len(stats.ProxyBuckets()) {
		t.Fatalf("json histograms: %s", body)
	}
	if b := js.Histograms[0].Buckets; b[4].LE != 0.01 || b[4].Count != 1 || b[3].Count != 0 {
		t.Errorf("json buckets: %+v", b)
	}
}

// TestAdminStatsPrometheusInEnvoyShape: with Envoy's naming, admin
// /stats/prometheus (where Envoy setups scrape) has Envoy's names, and
// /metrics the same plus the Go and process collectors.
func TestAdminStatsPrometheusInEnvoyShape(t *testing.T) {
	reg := registryWithHistogram(t)
	reg.Counter(stats.HTTPRequests, "", "listener", "web", "cluster", "api", "status_class", "2xx").Add(4)
	if err := reg.SetExposition(stats.Exposition{Naming: stats.NamingEnvoy}); err != nil {
		t.Fatal(err)
	}
	_, admin := do(t, newTestAdmin(newFakeInfo(), reg), "GET", "/stats/prometheus")
	h, err := NewMetricsHandler(reg)
	if err != nil {
		t.Fatal(err)
	}
	_, metrics := do(t, h, "GET", "/metrics")
	for _, line := range []string{
		`envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="web",envoy_response_code_class="2"} 4`,
		`envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="web",le="10"} 1`,
		`envoy_listener_downstream_cx_total{envoy_listener_address="web"} 3`,
	} {
		if !strings.Contains(admin, line+"\n") {
			t.Errorf("admin /stats/prometheus lacks %s:\n%s", line, admin)
		}
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	if strings.Contains(admin, "go_goroutines") || !strings.Contains(metrics, "go_goroutines") {
		t.Error("the Go collector belongs to /metrics only")
	}
}
