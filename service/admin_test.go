package service

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/service/stats"
)

type fakeInfo struct {
	mu      sync.Mutex
	si      ServerInfo
	ls      []ListenerInfo
	dump    []byte
	dumpErr error
	ready   bool
	drains  int
	quit    chan struct{} // closed by Quit
	hrv     string
}

func newFakeInfo() *fakeInfo {
	return &fakeInfo{quit: make(chan struct{}), hrv: "mosnlite.1"}
}

func (f *fakeInfo) ServerInfo() ServerInfo      { f.mu.Lock(); defer f.mu.Unlock(); return f.si }
func (f *fakeInfo) Listeners() []ListenerInfo   { return f.ls }
func (f *fakeInfo) ConfigDump() ([]byte, error) { return f.dump, f.dumpErr }
func (f *fakeInfo) Ready() bool                 { f.mu.Lock(); defer f.mu.Unlock(); return f.ready }
func (f *fakeInfo) HotRestartVersion() string   { return f.hrv }
func (f *fakeInfo) Quit()                       { close(f.quit) }
func (f *fakeInfo) DrainListeners()             { f.mu.Lock(); f.drains++; f.mu.Unlock() }
func (f *fakeInfo) drainCount() int             { f.mu.Lock(); defer f.mu.Unlock(); return f.drains }
func (f *fakeInfo) setReady(r bool, state string) {
	f.mu.Lock()
	f.ready, f.si.State = r, state
	f.mu.Unlock()
}

var testNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func do(t *testing.T, h http.Handler, method, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return res, string(body)
}

func newTestAdmin(info Info, reg *stats.Registry) http.Handler {
	return NewAdminHandler(info, reg, func() time.Time { return testNow }, nil)
}

func TestServerInfo(t *testing.T) {
	info := newFakeInfo()
	info.si = ServerInfo{
		PID: 4242, Version: "0.3.0", Commit: "abc123", GoVersion: "go1.26",
		State: "running", Generation: 3, DrainingPID: 4100,
		StartTime:      testNow.Add(-12500 * time.Millisecond),
		FirstStartTime: testNow.Add(-3725 * time.Second),
		RestartEpoch:   2, BaseID: 7,
		CommandLine: []string{"mosnlite", "start", "-c", "x.json"},
	}
	res, body := do(t, newTestAdmin(info, nil), "GET", "/server_info")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	want := map[string]any{
		"pid": 4242.0, "version": "0.3.0", "commit": "abc123", "go_version": "go1.26",
		"state": "running", "generation": 3.0, "draining_pid": 4100.0,
		"uptime_seconds": 12.5, "uptime_all_epochs_seconds": 3725.0,
		"uptime_current_epoch": "12s", "uptime_all_epochs": "3725s",
		"hot_restart_version": "mosnlite.1", // from Info.HotRestartVersion as ServerInfo's is empty
		"start_time":          "2024-05-01T11:59:47.5Z",
		"first_start_time":    "2024-05-01T10:57:55Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	opts, ok := got["command_line_options"].(map[string]any)
	if !ok || opts["restart_epoch"] != 2.0 || opts["base_id"] != "7" {
		t.Errorf("command_line_options = %#v", got["command_line_options"])
	}
	if cl, ok := got["command_line"].([]any); !ok || len(cl) != 4 || cl[3] != "x.json" {
		t.Errorf("command_line = %#v", got["command_line"])
	}
}

func TestServerInfoEnvoyOptions(t *testing.T) {
	info := newFakeInfo()
	info.si = ServerInfo{Generation: 1, StartTime: testNow, RestartEpoch: 1, Options: CommandLineOptions{
		ServiceCluster: "web", ServiceNode: "web-7", ServiceZone: "eu-west-1a",
		LogLevel: "debug", ComponentLogLevel: "upstream:trace", LogPath: "/var/log/m.log", LogFormat: "[%l] %v",
		Concurrency: 2, Mode: "Serve", LocalAddressIPVersion: "v4", FileFlushInterval: 500 * time.Millisecond,
		DrainTime: 600 * time.Second, ParentShutdownTime: 900 * time.Second, DrainStrategy: "Gradual",
	}}
	_, body := do(t, newTestAdmin(info, nil), "GET", "/server_info")
	var got struct {
		Options map[string]any `json:"command_line_options"`
		Node    map[string]any `json:"node"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"restart_epoch": 1.0, "service_cluster": "web", "service_node": "web-7", "service_zone": "eu-west-1a",
		"log_level": "debug", "component_log_level": "upstream:trace", "log_path": "/var/log/m.log",
		"log_format": "[%l] %v", "concurrency": 2.0, "mode": "Serve", "local_address_ip_version": "v4",
		"file_flush_interval": "0.500s", "drain_time": "600s", "parent_shutdown_time": "900s", "drain_strategy": "Gradual",
	}
	for k, v := range want {
		if got.Options[k] != v {
			t.Errorf("command_line_options.%s = %#v, want %#v", k, got.Options[k], v)
		}
	}
	loc, _ := got.Node["locality"].(map[string]any)
	if got.Node["id"] != "web-7" || got.Node["cluster"] != "web" || loc["zone"] != "eu-west-1a" {
		t.Errorf("node = %#v", got.Node)
	}

	// A MOSN-style process shows no node and no Envoy options.
	info.si = ServerInfo{Generation: 1, StartTime: testNow}
	_, body = do(t, newTestAdmin(info, nil), "GET", "/server_info")
	if strings.Contains(body, `"node"`) || strings.Contains(body, "drain_time") || strings.Contains(body, "service_cluster") {
		t.Errorf("MOSN-style server_info shows Envoy options: %s", body)
	}
}

func TestServerInfoFirstGeneration(t *testing.T) {
	info := newFakeInfo()
	info.si = ServerInfo{Generation: 1, StartTime: testNow.Add(-90 * time.Second), HotRestartVersion: "own"}
	_, body := do(t, newTestAdmin(info, nil), "GET", "/server_info")
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got["uptime_all_epochs"] != "90s" || got["uptime_current_epoch"] != "90s" {
		t.Errorf("without FirstStartTime both uptimes are this process's: %v %v", got["uptime_all_epochs"], got["uptime_current_epoch"])
	}
	if got["draining_pid"] != 0.0 || got["hot_restart_version"] != "own" {
		t.Errorf("draining_pid %v, hot_restart_version %v", got["draining_pid"], got["hot_restart_version"])
	}
	if cl, ok := got["command_line"].([]any); !ok || len(cl) != 0 {
		t.Errorf("command_line should be an empty list, got %#v", got["command_line"])
	}
}

func TestListeners(t *testing.T) {
	info := newFakeInfo()
	info.ls = []ListenerInfo{
		{Name: "http", Kind: "server", Network: "tcp", Address: "127.0.0.1:1234"},
		{Name: "v6", Kind: "server", Network: "tcp", Address: "[::1]:8080"},
		{Name: "uds", Kind: "server", Network: "unix", Address: "/tmp/m.sock"},
		{Name: "admin", Kind: "service", Network: "tcp", Address: "127.0.0.1:9901"},
	}
	h := newTestAdmin(info, nil)

	res, body := do(t, h, "GET", "/listeners")
	var plain []map[string]string
	if err := json.Unmarshal([]byte(body), &plain); err != nil || res.StatusCode != 200 {
		t.Fatalf("plain: status %d err %v: %s", res.StatusCode, err, body)
	}
	if len(plain) != 4 || plain[0]["name"] != "http" || plain[0]["network"] != "tcp" ||
		plain[0]["address"] != "127.0.0.1:1234" || plain[3]["kind"] != "service" {
		t.Errorf("plain listeners = %v", plain)
	}

	_, body = do(t, h, "GET", "/listeners?format=json")
	var env struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress *struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
				Pipe *struct {
					Path string `json:"path"`
				} `json:"pipe"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("envoy shape: %v\n%s", err, body)
	}
	if len(env.ListenerStatuses) != 4 {
		t.Fatalf("envoy shape: %s", body)
	}
	s0 := env.ListenerStatuses[0]
	if s0.Name != "http" || s0.LocalAddress.SocketAddress == nil ||
		s0.LocalAddress.SocketAddress.Address != "127.0.0.1" || s0.LocalAddress.SocketAddress.PortValue != 1234 {
		t.Errorf("first status wrong: %s", body)
	}
	if sa := env.ListenerStatuses[1].LocalAddress.SocketAddress; sa == nil || sa.Address != "::1" || sa.PortValue != 8080 {
		t.Errorf("ipv6 status wrong: %s", body)
	}
	if p := env.ListenerStatuses[2].LocalAddress.Pipe; p == nil || p.Path != "/tmp/m.sock" || env.ListenerStatuses[2].LocalAddress.SocketAddress != nil {
		t.Errorf("unix status should be a pipe: %s", body)
	}
	if !strings.Contains(body, `"port_value": 1234`) {
		t.Errorf("port_value must be a JSON number: %s", body)
	}

	_, body = do(t, h, "GET", "/listeners?format=text")
	if !strings.HasPrefix(body, "http::127.0.0.1:1234\nv6::[::1]:8080\n") {
		t.Errorf("text listeners = %q", body)
	}
	if res, _ := do(t, h, "GET", "/listeners?format=xml"); res.StatusCode != 400 {
		t.Errorf("bad format: status %d, want 400", res.StatusCode)
	}
}

func TestListenersEmptyIsList(t *testing.T) {
	_, body := do(t, newTestAdmin(newFakeInfo(), nil), "GET", "/listeners")
	if strings.TrimSpace(body) != "[]" {
		t.Errorf("no listeners should be [], got %q", body)
	}
	_, body = do(t, newTestAdmin(newFakeInfo(), nil), "GET", "/listeners?format=json")
	if !strings.Contains(body, `"listener_statuses": []`) {
		t.Errorf("no listeners should be an empty listener_statuses, got %q", body)
	}
}

func TestStats(t *testing.T) {
	reg := stats.New()
	reg.Counter("listener.downstream_cx_total", "Connections accepted.", "listener", "x").Add(3)
	reg.Gauge("listener.downstream_cx_active", "", "listener", "x").Set(1)
	reg.Counter("upgrade.done_total", "").Inc()
	h := newTestAdmin(newFakeInfo(), reg)

	res, body := do(t, h, "GET", "/stats")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, line := range []string{`listener.downstream_cx_total{listener="x"}: 3`, "upgrade.done_total: 1"} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/stats lacks %q:\n%s", line, body)
		}
	}

	_, body = do(t, h, "GET", "/stats?filter=^upgrade")
	if body != "upgrade.done_total: 1\n" {
		t.Errorf("filtered stats = %q", body)
	}
	if res, _ := do(t, h, "GET", "/stats?filter=("); res.StatusCode != 400 {
		t.Errorf("bad regex: status %d, want 400", res.StatusCode)
	}

	_, body = do(t, h, "GET", "/stats?format=json&filter=cx_total")
	var js struct {
		Stats []struct {
			Name  string  `json:"name"`
			Value float64 `json:"value"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(body), &js); err != nil || len(js.Stats) != 1 ||
		js.Stats[0].Name != `listener.downstream_cx_total{listener="x"}` || js.Stats[0].Value != 3 {
		t.Errorf("json stats = %s (err %v)", body, err)
	}

	_, body = do(t, h, "GET", "/stats/prometheus")
	if !strings.Contains(body, `mosnlite_listener_downstream_cx_total{listener="x"} 3`) ||
		strings.Contains(body, "go_goroutines") {
		t.Errorf("/stats/prometheus should hold the registry only:\n%s", body)
	}
}

func TestReady(t *testing.T) {
	info := newFakeInfo()
	h := newTestAdmin(info, nil)
	info.setReady(true, "running")
	if res, body := do(t, h, "GET", "/ready"); res.StatusCode != 200 || body != "LIVE\n" {
		t.Errorf("ready: %d %q", res.StatusCode, body)
	}
	info.setReady(false, "draining")
	if res, body := do(t, h, "GET", "/ready"); res.StatusCode != 503 || body != "DRAINING\n" {
		t.Errorf("not ready: %d %q", res.StatusCode, body)
	}
}

func TestQuitQuitQuit(t *testing.T) {
	info := newFakeInfo()
	h := newTestAdmin(info, nil)

	res, _ := do(t, h, "GET", "/quitquitquit")
	if res.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(res.Header.Get("Allow"), "POST") {
		t.Errorf("GET: status %d Allow %q, want 405 POST", res.StatusCode, res.Header.Get("Allow"))
	}
	select {
	case <-info.quit:
		t.Fatal("GET must not quit")
	default:
	}

	res, body := do(t, h, "POST", "/quitquitquit")
	if res.StatusCode != 200 || body != "OK\n" {
		t.Errorf("POST: %d %q", res.StatusCode, body)
	}
	select {
	case <-info.quit:
	case <-time.After(5 * time.Second):
		t.Fatal("Quit was not called")
	}
}

func TestDrainListeners(t *testing.T) {
	info := newFakeInfo()
	h := newTestAdmin(info, nil)
	if res, _ := do(t, h, "GET", "/drain_listeners"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", res.StatusCode)
	}
	if info.drainCount() != 0 {
		t.Fatal("GET must not drain")
	}
	if res, body := do(t, h, "POST", "/drain_listeners"); res.StatusCode != 200 || body != "OK\n" {
		t.Errorf("POST: %d %q", res.StatusCode, body)
	}
	if n := info.drainCount(); n != 1 {
		t.Errorf("DrainListeners called %d times, want 1", n)
	}
}

func TestConfigDump(t *testing.T) {
	info := newFakeInfo()
	info.dump = []byte(`{"servers":[]}`)
	h := newTestAdmin(info, nil)
	res, body := do(t, h, "GET", "/config_dump")
	if res.StatusCode != 200 || body != `{"servers":[]}` || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("config_dump: %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	info.dumpErr = errors.New("no config")
	if res, body := do(t, h, "GET", "/config_dump"); res.StatusCode != 500 || !strings.Contains(body, "no config") {
		t.Errorf("config_dump error: %d %q", res.StatusCode, body)
	}
}

func TestHotRestartVersion(t *testing.T) {
	res, body := do(t, newTestAdmin(newFakeInfo(), nil), "GET", "/hot_restart_version")
	if res.StatusCode != 200 || body != "mosnlite.1\n" {
		t.Errorf("hot_restart_version: %d %q", res.StatusCode, body)
	}
}

func TestAdminRouting(t *testing.T) {
	h := newTestAdmin(newFakeInfo(), nil)
	res, body := do(t, h, "GET", "/")
	if res.StatusCode != 200 || !strings.Contains(body, "/quitquitquit") || !strings.Contains(body, "/server_info") {
		t.Errorf("help: %d %q", res.StatusCode, body)
	}
	if res.Header.Get("Cache-Control") == "" {
		t.Error("admin answers should not be cacheable")
	}
	if res, _ := do(t, h, "GET", "/nope"); res.StatusCode != 404 {
		t.Errorf("unknown path: %d, want 404", res.StatusCode)
	}
	if res, _ := do(t, h, "POST", "/server_info"); res.StatusCode != 405 {
		t.Errorf("POST /server_info: %d, want 405", res.StatusCode)
	}
	if res, _ := do(t, h, "HEAD", "/ready"); res.StatusCode != 503 {
		t.Errorf("HEAD /ready: %d, want 503 (not ready)", res.StatusCode)
	}
}
