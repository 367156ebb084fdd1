package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	jsoniter "github.com/json-iterator/go"
)

func loadFull(t *testing.T) *Config {
	t.Helper()
	c, err := Load(filepath.Join("testdata", "full.json"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFullExample(t *testing.T) {
	c := loadFull(t)
	s := c.Servers[0]
	if len(c.Servers) != 1 || len(s.Listeners) != 3 || len(c.ClusterManager.Clusters) != 3 {
		t.Fatalf("shape: %d servers, %d listeners, %d clusters", len(c.Servers), len(s.Listeners), len(c.ClusterManager.Clusters))
	}
	if l := s.Listeners[1]; l.Network != NetworkUnix || !l.DisableMigration {
		t.Errorf("unix listener: %+v", l)
	}
	if f := s.Listeners[2].FilterChains[0].Filters[0]; f.Type != FilterTCPProxy || f.TCP == nil || f.HTTP != nil ||
		f.TCP.Cluster != "redis" || f.TCP.IdleTimeout.Duration != 10*time.Minute {
		t.Errorf("tcp filter: %+v", f)
	}
	if f := s.Listeners[0].FilterChains[0].Filters[0]; f.HTTP == nil || f.TCP != nil || f.HTTP.RouterConfigName != "ingress_router" {
		t.Errorf("http filter: %+v", f)
	}
	lbs := map[string]bool{}
	for _, cl := range c.ClusterManager.Clusters {
		lbs[cl.LBType] = true
	}
	if len(lbs) != 3 {
		t.Errorf("the example should use every lb type, uses %v", lbs)
	}
	r := s.Router("ingress_router")
	if r == nil || r.VirtualHosts[0].Routers[0].Match.Headers[0] != (HeaderMatcher{Name: "X-Canary", Value: "1"}) {
		t.Fatalf("router: %+v", r)
	}
	if got := r.VirtualHosts[1].Routers[0].DirectResponse; got == nil || *got != (DirectResponse{Status: 200, Body: "ok\n"}) {
		t.Errorf("direct response: %+v", got)
	}
	if hc := c.Cluster("api").HealthCheck; hc == nil || hc.UnhealthyThreshold != 3 || hc.Path != "/healthz" {
		t.Errorf("health check: %+v", hc)
	}
	if m := c.Metrics; m == nil || m.Naming != MetricsNamingMosnlite || !m.NativeHistograms {
		t.Errorf("metrics: %+v", m)
	}
	if c.Cluster("nope") != nil || s.Router("nope") != nil {
		t.Error("lookup of a missing name should give nil")
	}
}

func TestRoundTrip(t *testing.T) {
	c := loadFull(t)
	marshallers := map[string]func(any) ([]byte, error){
		"encoding/json": json.Marshal,
		"jsoniter":      jsoniter.ConfigCompatibleWithStandardLibrary.Marshal,
	}
	for name, marshal := range marshallers {
		t.Run(name, func(t *testing.T) {
			data, err := marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), `{"type":"tcp_proxy","config":{"cluster":"redis","idle_timeout":"10m0s"}}`) {
				t.Errorf("filter not marshalled as type+config:\n%s", data)
			}
			back, err := Parse(data)
			if err != nil {
				t.Fatalf("re-parse: %v\n%s", err, data)
			}
			if !reflect.DeepEqual(c, back) {
				t.Errorf("round trip changed the config:\nbefore %+v\nafter  %+v", c, back)
			}
			// The marshalled form also decodes with encoding/json through
			// Duration's and Filter's UnmarshalJSON.
			var std Config
			if err := json.Unmarshal(data, &std); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, &std) {
				t.Errorf("encoding/json decode differs:\nwant %+v\ngot  %+v", c, &std)
			}
		})
	}
}

func TestDefaultsApplied(t *testing.T) {
	c, err := Parse([]byte(`{
  "servers": [{"default_log_level": "DEBUG",
    "listeners": [
      {"name": "h", "address": "127.0.0.1:0", "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "r"}}]}]},
      {"name": "t", "address": "127.0.0.1:0", "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]}
    ],
    "routers": [{"router_config_name": "r", "virtual_hosts": [{"domains": ["*"], "routers": [{"direct_response": {"status": 204}}]}]}]}],
  "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}], "health_check": {}}]},
  "admin": {"address": "127.0.0.1:0"}
}`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Servers[0]
	cl := c.ClusterManager.Clusters[0]
	h := s.Listeners[0].FilterChains[0].Filters[0].HTTP
	tcp := s.Listeners[1].FilterChains[0].Filters[0].TCP
	checks := []struct {
		name      string
		got, want any
	}{
		{"handoff_timeout", c.HandoffTimeout.Duration, DefaultHandoffTimeout},
		{"graceful_timeout", s.GracefulTimeout.Duration, 30 * time.Second},
		{"default_log_level lower-cased", s.DefaultLogLevel, "debug"},
		{"log_format", s.LogFormat, "text"},
		{"listener network", s.Listeners[0].Network, NetworkTCP},
		{"http idle_timeout", h.IdleTimeout.Duration, 5 * time.Minute},
		{"http upstream_timeout", h.UpstreamTimeout.Duration, 60 * time.Second},
		{"tcp idle_timeout", tcp.IdleTimeout.Duration, 5 * time.Minute},
		{"lb_type", cl.LBType, LBRoundRobin},
		{"connect_timeout (MOSN's)", cl.ConnectTimeout.Duration, 10 * time.Second},
		{"max_idle_conns_per_host", cl.MaxIdleConns, 64},
		{"host network", cl.Hosts[0].Network, NetworkTCP},
		{"host weight", cl.Hosts[0].Weight, 1},
		{"health interval (MOSN's)", cl.HealthCheck.Interval.Duration, 15 * time.Second},
		{"health timeout (MOSN's)", cl.HealthCheck.Timeout.Duration, time.Second},
		{"healthy_threshold (MOSN's)", cl.HealthCheck.HealthyThreshold, 1},
		{"unhealthy_threshold (MOSN's)", cl.HealthCheck.UnhealthyThreshold, 1},
		{"upgrade_watch_period", c.UpgradeWatchPeriod.Duration, 5 * time.Second},
		{"request_header_timeout", h.RequestHeaderTimeout.Duration, 10 * time.Second},
		{"max_request_headers_kb", h.MaxRequestHeadersKB, 60},
		{"max_request_headers_count", h.MaxRequestHeadersCount, 100},
		{"max_request_body_bytes (no limit)", h.MaxRequestBodyBytes, int64(0)},
		{"admin network", c.Admin.Network, NetworkTCP},
		{"pprof off", c.Pprof == nil, true},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestApplyDefaultsKeepsSetValues(t *testing.T) {
	c := &Config{Servers: []Server{{GracefulTimeout: Duration{time.Second}, LogFormat: "json"}}}
	c.ApplyDefaults()
	if c.Servers[0].GracefulTimeout.Duration != time.Second || c.Servers[0].LogFormat != "json" {
		t.Errorf("set values overwritten: %+v", c.Servers[0])
	}
}

func TestValidAddresses(t *testing.T) {
	// Port 0 never clashes; IPv6, zone-less wildcards on other ports, unix
	// sockets and a hostname upstream are all fine.
	data := mutated(t, func(d obj) {
		l := func(i int) obj { return at(t, d, "servers", 0, "listeners", i) }
		l(0)["address"] = "127.0.0.1:0"
		l(1)["address"] = "127.0.0.1:0"
		d["pprof"] = obj{"address": "[::1]:0"}
		d["metrics"] = obj{"address": "/tmp/mosnlite-metrics.sock", "network": "unix"}
		at(t, d, "cluster_manager", "clusters", 1, "hosts", 0)["address"] = "backend.internal:8080"
		at(t, d, "servers", 0, "routers", 0, "virtual_hosts", 0)["domains"] = []any{"*.example.com", "Example.org"}
	})
	if _, err := Parse(data); err != nil {
		t.Fatal(err)
	}
}

func TestValidateProgrammaticConfig(t *testing.T) {
	// Validate works on a Config built in Go, before ApplyDefaults.
	c := &Config{
		Servers: []Server{{Listeners: []Listener{{
			Name: "t", Address: "127.0.0.1:0",
			FilterChains: []FilterChain{{Filters: []Filter{{Type: FilterTCPProxy, TCP: &TCPProxyConfig{Cluster: "c"}}}}},
		}}}},
		ClusterManager: ClusterManager{Clusters: []Cluster{{Name: "c", Hosts: []Host{{Address: "127.0.0.1:1"}}}}},
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	c.Servers[0].Listeners[0].FilterChains[0].Filters[0].TCP = nil
	err := c.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Error() != "servers[0].listeners[0].filter_chains[0].filters[0].config: required" {
		t.Errorf("got %v", err)
	}
}

func TestDefaultConfig(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Servers) != 1 || c.Servers[0].Name != "default" || len(c.Servers[0].Listeners) != 1 {
		t.Fatalf("servers: %+v", c.Servers)
	}
	l := c.Servers[0].Listeners[0]
	if l.Name != "http_default" || l.Address != "127.0.0.1:2046" || l.FilterChains[0].Filters[0].HTTP.RouterConfigName != "default_router" {
		t.Errorf("listener: %+v", l)
	}
	r := c.Servers[0].Router("default_router")
	if r == nil || len(r.VirtualHosts) != 1 || r.VirtualHosts[0].Domains[0] != "*" {
		t.Fatalf("router: %+v", r)
	}
	rt := r.VirtualHosts[0].Routers[0]
	if rt.Match.Prefix != "/" || rt.DirectResponse == nil || rt.DirectResponse.Status != 200 || rt.DirectResponse.Body == "" {
		t.Errorf("route: %+v", rt)
	}
	for name, s := range map[string]*ServiceConfig{"127.0.0.1:34901": c.Admin, "127.0.0.1:34902": c.Pprof, "127.0.0.1:34903": c.Metrics} {
		if s == nil || s.Address != name {
			t.Errorf("service %s: %+v", name, s)
		}
	}
	if c.UDSDir != "" {
		t.Errorf("uds_dir = %q, want empty", c.UDSDir)
	}
	// DefaultJSON hands out a copy.
	b := DefaultJSON()
	b[0] = 'x'
	if DefaultJSON()[0] != '{' {
		t.Error("DefaultJSON shares its buffer")
	}
	if _, err := Parse(DefaultJSON()); err != nil {
		t.Error(err)
	}
}

func TestDefaultUDSDir(t *testing.T) {
	if got := DefaultUDSDir("/a/b/mosn.json"); got != "/a/b/mosnlite-uds" {
		t.Errorf("got %q", got)
	}
	if got, want := DefaultUDSDir(""), filepath.Join(os.TempDir(), "mosnlite-default-uds"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMalformedJSONPosition(t *testing.T) {
	data := "{\n  \"servers\": [\n    {\"name\": \"ä\" \"x\"}\n  ]\n}"
	ps := problemsOf(t, []byte(data))
	if len(ps) != 1 || ps[0].Path != "" || !strings.HasPrefix(ps[0].Msg, "malformed JSON at line 3, column 18:") {
		t.Errorf("got %v", ps)
	}
	for _, bad := range []string{`{"a": 01}`, `{"a": 1.}`, `{"a": -}`, `{"a":1, null: 2}`, `{"a": tru}`, `{"a": "\q"}`} {
		ps := problemsOf(t, []byte(bad))
		if !strings.HasPrefix(ps[0].Msg, "malformed JSON at line 1, column ") {
			t.Errorf("%s: got %v", bad, ps)
		}
	}
}

func TestDeepNestingRefused(t *testing.T) {
	data := `{"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	ps := problemsOf(t, []byte(data))
	if !strings.Contains(ps[0].Msg, "nesting deeper than") {
		t.Errorf("got %v", ps)
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	if err := json.Unmarshal([]byte(`"1m30s"`), &d); err != nil || d.Duration != 90*time.Second {
		t.Errorf("got %v, %v", d, err)
	}
	if err := json.Unmarshal([]byte(`90`), &d); err == nil {
		t.Error("a number was accepted as a duration")
	}
	if err := json.Unmarshal([]byte(`"90"`), &d); err == nil || !strings.Contains(err.Error(), "invalid duration") {
		t.Errorf("got %v", err)
	}
	b, err := json.Marshal(Duration{1500 * time.Millisecond})
	if err != nil || string(b) != `"1.5s"` {
		t.Errorf("marshal: %s, %v", b, err)
	}
}

func TestFilterUnmarshalJSONChecks(t *testing.T) {
	var f Filter
	err := json.Unmarshal([]byte(`{"type":"proxy","config":{"router":"r"}}`), &f)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Path != "config.router" {
		t.Errorf("got %v", err)
	}
}

// TestMetricsNamingWithEitherForm: metrics.naming and native_histograms go
// with MOSN's prometheus sink as with mosnlite's address form, and say
// nothing without a metrics port.
func TestMetricsNamingWithEitherForm(t *testing.T) {
	withMetrics := func(metrics string) string {
		return strings.Replace(baseJSON, `"admin": {"address": "127.0.0.1:34901"}`,
			`"admin": {"address": "127.0.0.1:34901"}, "metrics": `+metrics, 1)
	}
	c, err := Parse([]byte(withMetrics(`{"sinks": [{"type": "prometheus", "config": {"port": 34903}}], "naming": "envoy"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Metrics; m == nil || m.Naming != MetricsNamingEnvoy || m.NativeHistograms || m.Address != "0.0.0.0:34903" {
		t.Errorf("MOSN sink: %+v", m)
	}
	c, err = Parse([]byte(withMetrics(`{"address": "127.0.0.1:34903", "native_histograms": true}`)))
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Metrics; m == nil || m.Naming != "" || !m.NativeHistograms {
		t.Errorf("address form: %+v", m)
	}
	c, err = Parse([]byte(withMetrics(`{"sinks": [{"type": "console"}], "naming": "envoy"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics != nil || !strings.Contains(fmt.Sprint(c.Warnings), "naming and native_histograms have no effect without a metrics port") {
		t.Errorf("no metrics port: %+v, warnings %v", c.Metrics, c.Warnings)
	}
}
