package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func loadCorpus(t *testing.T, name string) *Config {
	t.Helper()
	c, err := Load(filepath.Join("testdata", "mosn", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCaseInsensitiveMembers: MOSN decodes with encoding/json, which matches
// member names case-insensitively. A config written in any case parses to
// the same config as its lower-case twin.
func TestCaseInsensitiveMembers(t *testing.T) {
	mixed := loadCorpus(t, "ok_case_insensitive")
	lower, err := Parse([]byte(`{
  "servers": [{
    "mosn_server_name": "mixed", "default_log_level": "debug",
    "listeners": [{"name": "l", "address": "127.0.0.1:20465", "bind_port": true,
      "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}],
    "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
      "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c", "timeout": "3s"}}]}]}]
  }],
  "cluster_manager": {"clusters": [{"name": "c", "lb_type": "LB_RANDOM", "hosts": [{"address": "127.0.0.1:18083", "weight": 2}]}]},
  "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34921}}}
}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(mixed, lower) {
		t.Fatalf("mixed case decodes differently:\nmixed %+v\nlower %+v", mixed, lower)
	}
	if mixed.Servers[0].Name != "mixed" || mixed.ClusterManager.Clusters[0].Hosts[0].Weight != 2 ||
		mixed.Admin.Address != "127.0.0.1:34921" || mixed.Servers[0].Routers[0].VirtualHosts[0].Routers[0].Route.Timeout.Duration != 3*time.Second {
		t.Errorf("values lost: %+v", mixed)
	}

	// An exact name is preferred; a member given twice, in two cases, is an error.
	ps := problemsOf(t, []byte(`{"servers": [{"listeners": [], "Listeners": []}]}`))
	if ps[0].String() != `servers[0].listeners: duplicate field (also given as "listeners")` {
		t.Errorf("got %v", ps)
	}
	// Case folds letters only: an underscore is not a dash.
	ps = problemsOf(t, []byte(`{"servers": [{"default-log-level": "INFO"}]}`))
	if ps[0].String() != "servers[0].default-log-level: unknown field" {
		t.Errorf("got %v", ps)
	}
	// mosnlite's aliases fold too.
	c, err := Parse([]byte(`{"servers": [{"SERVER_NAME": "x"}]}`))
	if err != nil || c.Servers[0].Name != "x" {
		t.Errorf("alias in upper case: %v %+v", err, c)
	}
}

func TestMOSNServicePortsResolved(t *testing.T) {
	c := loadCorpus(t, "ok_services_mosn_shape")
	// MOSN binds every interface for an empty admin address and always for
	// the prometheus sink.
	want := map[string]ServiceConfig{
		"admin":   {Address: "0.0.0.0:34901", Network: NetworkTCP},
		"pprof":   {Address: "127.0.0.1:34902", Network: NetworkTCP},
		"metrics": {Address: "0.0.0.0:34903", Network: NetworkTCP, Path: "/stats/prometheus", DisableGoMetrics: true},
	}
	for name, got := range map[string]*ServiceConfig{"admin": c.Admin, "pprof": c.Pprof, "metrics": c.Metrics} {
		if got == nil || *got != want[name] {
			t.Errorf("%s = %+v, want %+v", name, got, want[name])
		}
	}

	c = loadCorpus(t, "ok_services_mosnlite_aliases")
	if c.Admin.Address != "127.0.0.1:34911" || c.Pprof.Address != "127.0.0.1:34912" ||
		*c.Metrics != (ServiceConfig{Address: "/tmp/mosnlite-corpus-metrics.sock", Network: NetworkUnix, Path: "/metrics"}) {
		t.Errorf("aliases: admin %+v pprof %+v metrics %+v", c.Admin, c.Pprof, c.Metrics)
	}

	c = loadCorpus(t, "ok_pprof_off")
	if c.Pprof != nil || c.Metrics != nil {
		t.Errorf("pprof without debug and metrics without sinks are off, as in MOSN: %+v %+v", c.Pprof, c.Metrics)
	}

	c, err := Parse([]byte(`{"servers": [{}], "pprof": {"debug": true}, "admin": {"address": {"socket_address": {"port_value": 0}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Pprof.Address != "0.0.0.0:9090" || c.Admin.Address != "0.0.0.0:0" {
		t.Errorf("MOSN's defaults: pprof %+v (want 0.0.0.0:9090), admin %+v (port 0: any)", c.Pprof, c.Admin)
	}
}

func TestMOSNShapesResolved(t *testing.T) {
	c := loadCorpus(t, "ok_unix_sockets")
	if h := c.ClusterManager.Clusters[0].Hosts[0]; h.Address != "/tmp/mosnlite-corpus-backend.sock" || h.Network != NetworkUnix {
		t.Errorf("unix: host = %+v", h)
	}

	c = loadCorpus(t, "ok_connection_manager")
	l := c.Servers[0].Listeners[0]
	if len(l.FilterChains[0].Filters) != 1 || l.FilterChains[0].Filters[0].HTTP == nil {
		t.Fatalf("the connection_manager filter stays in the chain: %+v", l.FilterChains[0].Filters)
	}
	if r := c.Servers[0].Router("legacy"); r == nil || r.VirtualHosts[0].Routers[0].Route.ClusterName != "app" {
		t.Errorf("connection_manager's routes not in the server's routers: %+v", c.Servers[0].Routers)
	}

	c = loadCorpus(t, "ok_nameless_listener_idle_timeout")
	ls := c.Servers[0].Listeners
	if ls[0].Name != "127.0.0.1:20475" || ls[1].Name != "[::1]:20476" {
		t.Errorf("listeners are named by their address, as in MOSN: %q %q", ls[0].Name, ls[1].Name)
	}
	if d := ls[0].FilterChains[0].Filters[0].HTTP.IdleTimeout.Duration; d != 90*time.Second {
		t.Errorf("connection_idle_timeout applies to the proxy's idle timeout: %v", d)
	}
	if d := ls[1].FilterChains[0].Filters[0].TCP.IdleTimeout.Duration; d != 30*time.Second {
		t.Errorf("the filter's own idle_timeout wins: %v", d)
	}
	if p := c.Servers[0].Processor; p == nil || p.N != 2 {
		t.Errorf("processor: %+v", p)
	}

	c = loadCorpus(t, "ok_tcp_proxy")
	if f := c.Servers[0].Listeners[0].FilterChains[0].Filters[0].TCP; f.IdleTimeout.Duration != 10*time.Minute || f.Routes != nil {
		t.Errorf("tcp_proxy: idle_timeout in nanoseconds %v, routes %v", f.IdleTimeout, f.Routes)
	}

	c = loadCorpus(t, "ok_extend_config")
	h0 := c.Servers[0].Listeners[0].FilterChains[0].Filters[0].HTTP
	h1 := c.Servers[0].Listeners[1].FilterChains[0].Filters[0].HTTP
	if h0.MaxRequestHeadersKB != 16 || h0.MaxRequestBodyBytes != 1<<20 || h1.MaxRequestHeadersKB != 32 {
		t.Errorf("extend_config limits: %d KiB %d bytes; own field wins: %d KiB", h0.MaxRequestHeadersKB, h0.MaxRequestBodyBytes, h1.MaxRequestHeadersKB)
	}

	c = loadCorpus(t, "ok_lb_weights")
	if w := c.ClusterManager.Clusters[1].Hosts[1].Weight; w != MaxHostWeight {
		t.Errorf("weight 200 = %d, want MOSN's clamp to %d", w, MaxHostWeight)
	}
	if w := c.ClusterManager.Clusters[2].Hosts[0].Weight; w != 1 {
		t.Errorf("default weight %d", w)
	}

	c = loadCorpus(t, "ok_route_precedence")
	m := c.Servers[0].Routers[0].VirtualHosts[0].Routers[0].Match
	if m.Prefix != "/v1/" || m.Path != "" || m.Regex != "" {
		t.Errorf("prefix takes precedence: %+v", m)
	}
}

// TestRoundTripMOSNCorpus: every accepted config of the corpus marshals to
// JSON that parses back to the same config (the admin config dump).
func TestRoundTripMOSNCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "mosn", "ok_*.json"))
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: re-parse: %v\n%s", f, err, data)
		}
		c.Warnings, back.Warnings = nil, nil
		if !reflect.DeepEqual(c, back) {
			t.Errorf("%s: round trip changed the config:\n%s", f, data)
		}
	}
}

func TestInlinePrivateKeyRedacted(t *testing.T) {
	c, err := Parse([]byte(`{"servers": [{"listeners": [{"name": "l", "address": "127.0.0.1:0",
  "filter_chains": [{"tls_context": {"status": false, "cert_chain": "/c.pem", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"},
    "filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]}]}],
  "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}],
    "tls_context": {"private_key": "/etc/key.pem"}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "MIIE") || !strings.Contains(s, `"private_key":"***REDACTED***"`) || !strings.Contains(s, `"private_key":"/etc/key.pem"`) {
		t.Errorf("dump: %s", s)
	}
}

func TestLoadRefusesNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct {
		path, want string
		is         error
	}{
		{fifo, "not a regular file (a FIFO)", ErrNotRegular},
		{"/dev/zero", "not a regular file (a character device)", ErrNotRegular},
		{dir, "not a regular file (a directory)", ErrNotRegular},
		{big, "larger than 16 MiB (16777217 bytes)", ErrTooLarge},
	} {
		done := make(chan error, 1)
		go func() { _, err := Load(tc.path); done <- err }()
		select {
		case err := <-done:
			if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want it to name the file and say %q", tc.path, err, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) blocks", tc.path) // a FIFO with no writer must not hang
		}
	}
	// A symlink to a regular file is read.
	link := filepath.Join(dir, "link.json")
	abs, _ := filepath.Abs(filepath.Join("testdata", "full.json"))
	if err := os.Symlink(abs, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link); err != nil {
		t.Errorf("symlink to a config: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !errors.Is(err, os.ErrNotExist) ||
		strings.Count(err.Error(), "missing.json") != 1 {
		t.Errorf("missing file: %v (want the path named once)", err)
	}
}

func TestHTTP2ProtocolsOnTheFilterNotOnARoute(t *testing.T) {
	const tmpl = `{"servers": [{"listeners": [{"name": "web", "address": "127.0.0.1:8080",
      "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "%s", "upstream_protocol": "%s", "router_config_name": "r",
        "http2_initial_stream_window_size": %d}}]}]}],
    "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
      {"match": {"prefix": "/"}, "route": {"cluster_name": "c", "upstream_protocol": "%s"}}]}]}]}],
  "cluster_manager": {"clusters": [{"name": "c", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": "127.0.0.1:9000"}]}]}}`
	for _, down := range []string{"Http2", "Auto"} {
		if _, err := Parse([]byte(fmt.Sprintf(tmpl, down, "Http2", 0, ""))); err != nil {
			t.Errorf("downstream %s, upstream Http2: %v", down, err)
		}
	}
	_, err := Parse([]byte(fmt.Sprintf(tmpl, "Http2", "", 0, "Http2")))
	if err == nil || !strings.Contains(err.Error(), "route.upstream_protocol") || !strings.Contains(err.Error(), "set upstream_protocol on the proxy filter") {
		t.Errorf("route-level Http2: %v, want a refusal naming the field", err)
	}
	_, err = Parse([]byte(fmt.Sprintf(tmpl, "Http2", "", 1000, "")))
	if err == nil || !strings.Contains(err.Error(), "http2_initial_stream_window_size") {
		t.Errorf("window of 1000 bytes: %v, want an out-of-range error", err)
	}
	_, err = Parse([]byte(fmt.Sprintf(tmpl, "http2", "", 0, "")))
	if err == nil || !strings.Contains(err.Error(), "case-sensitive") {
		t.Errorf("downstream http2: %v, want the case error", err)
	}
}
