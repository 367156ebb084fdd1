package test

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/server/tlsconf/tlstest"
)

// mosnExample is what one config of testdata/mosn-examples must do. The
// configs are our own, in the shape of the examples MOSN ships (configs/,
// examples/codes/*/) that use an HTTP/1 proxy or a tcp_proxy with plain
// clusters: each starts unchanged (but for its ports) and serves, or is
// refused with an error naming the MOSN feature mosnlite lacks.
type mosnExample struct {
	refused []string                                        // substrings of the refusal, or none: it starts
	check   func(t *testing.T, ex *runningExample, cfg obj) // what it serves once started
}

func mosnExamples() map[string]mosnExample {
	httpVia := func(listener, wantBody string) func(*testing.T, *runningExample, obj) {
		return func(t *testing.T, ex *runningExample, _ obj) {
			code, body := get(t, "http://"+ex.listeners[listener]+"/hello")
			if code != 200 || !strings.Contains(body, wantBody) {
				t.Errorf("GET through %s: %d %q, want 200 containing %q", listener, code, body, wantBody)
			}
		}
	}
	return map[string]mosnExample{
		"chain_http1_auto.json": {check: func(t *testing.T, ex *runningExample, cfg obj) {
			httpVia("client_listener", "hello from the app listener")(t, ex, cfg)
			var info map[string]interface{}
			getJSON(t, "http://"+ex.admin+"/server_info", &info)
			if info["state"] != "running" {
				t.Errorf("server_info: %v", info)
			}
		}},
		"tcp_proxy_routes.json":   {check: tcpEcho("tcp_listener")},
		"http1_with_tracing.json": {check: httpVia("http_listener", "web GET /hello")},
		"connection_manager_routes.json": {check: func(t *testing.T, ex *runningExample, cfg obj) {
			httpVia("legacy", "web GET /hello")(t, ex, cfg)
			if code, _ := get(t, "http://"+ex.pprof+"/debug/pprof/"); code != 200 {
				t.Errorf("pprof in MOSN's shape: %d", code)
			}
		}},
		"uds_tcp_proxy.json":         {check: tcpEcho("uds_in")},
		"http1_disable_upgrade.json": {check: httpVia("l", "web GET /hello")},
		"http1_tls_server.json": {check: func(t *testing.T, ex *runningExample, _ obj) {
			code, body, st, err := httpsGet(ex.listeners["l"], "/hello", tlsClientConfig(ex.ca.Pool(), "example.test"))
			if err != nil || code != 200 || !strings.Contains(body, "web GET /hello") || st.NegotiatedProtocol != "http/1.1" {
				t.Errorf("HTTPS through l: %d %q %v (ALPN %q)", code, body, err, st.NegotiatedProtocol)
			}
		}},
		"proxy_fallback_tcp.json": {refused: []string{"fallback_for_unknown_protocol (MOSN's fallback to the tcp_proxy filter)",
			`several network filters ("proxy", "tcp_proxy")`}},
		"http1_jwt_authn.json": {refused: []string{`stream filter "jwt_authn" (MOSN's JWT authentication) is not supported by mosnlite`}},
		"http1_ip_access.json": {refused: []string{`stream filter "ip_access" (MOSN's IP access control) is not supported by mosnlite`}},
		"transparent_proxy.json": {refused: []string{"use_original_dst (MOSN's transparent proxying)",
			`listener filter "original_dst"`, "bind_port: false"}},
		"udp_proxy.json": {refused: []string{"udp (MOSN's UDP listeners)", `network filter "udp_proxy" (MOSN's UDP proxy)`}},
		"broadcast_mirror.json": {refused: []string{"request_mirror_policies (MOSN's request mirroring)",
			`stream filter "mirror"`, `"LB_REQUEST_ROUNDROBIN" (MOSN's per-request ordered host failover)`}},
		"slow_start_weights.json": {refused: []string{"slow_start (MOSN's weight ramp-up for new hosts)"}},
		"xds_bootstrap.json":      {refused: []string{"dynamic_resources (configuration from an xDS control plane)", "static_resources (the xDS bootstrap)"}},
		"dubbo_proxy.json":        {refused: []string{`downstream_protocol: "dubbo" (MOSN's Dubbo RPC) is not supported by mosnlite`}},
	}
}

func TestMOSNExampleShapes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "mosn-examples", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	examples := mosnExamples()
	if len(files) != len(examples) {
		t.Fatalf("%d example configs, %d expectations: every config needs one", len(files), len(examples))
	}
	for _, file := range files {
		name := filepath.Base(file)
		ex, ok := examples[name]
		if !ok {
			t.Fatalf("%s: no expectation", name)
		}
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var cfg obj
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			if len(ex.refused) > 0 {
				out, err := exec.Command(binPath, "validate", "-c", file).CombinedOutput()
				if exitCode(err) != 1 {
					t.Fatalf("validate: exit %d, want 1 (refused)\n%s", exitCode(err), out)
				}
				for _, want := range ex.refused {
					if !strings.Contains(string(out), want) {
						t.Errorf("refusal does not name %q:\n%s", want, out)
					}
				}
				return
			}
			runExample(t, cfg, ex.check)
		})
	}
}

// runningExample is an example config started with its ports remapped.
type runningExample struct {
	listeners    map[string]string // listener name → its address now
	admin, pprof string
	ca           *tlstest.CA // signed the certificate of every TLS context, for example.test
}

// runExample rewrites cfg's ports and paths to this test's (a free port for
// every listening port, hosts that pointed at a listener point at it still,
// other hosts at a test backend), starts it, and runs check.
func runExample(t *testing.T, cfg obj, check func(*testing.T, *runningExample, obj)) {
	dir := t.TempDir()
	web := newHTTPBackend(t, "web")
	echo := newEchoBackend(t)
	uecho := newUnixEcho(t, filepath.Join(dir, "backend.sock"))
	ex := &runningExample{listeners: map[string]string{}, ca: tlstest.NewCA(t, "examples CA")}
	ports := map[string]string{} // old port → new address

	tcpClusters := map[string]bool{}
	for _, s := range list(cfg["servers"]) {
		for _, l := range list(s["listeners"]) {
			name, _ := l["name"].(string)
			old, _ := l["address"].(string)
			if l["network"] == "unix" {
				l["address"] = filepath.Join(dir, filepath.Base(old))
				ex.listeners[name] = l["address"].(string)
			} else {
				_, port, _ := net.SplitHostPort(old)
				ports[port] = addr(freePort(t))
				l["address"] = ports[port]
				ex.listeners[name] = ports[port]
			}
			for _, fc := range list(l["filter_chains"]) {
				if tc, ok := fc["tls_context"].(obj); ok && tc["cert_chain"] != nil {
					// The example's certificate files: made here.
					leaf := ex.ca.Issue(t, tlstest.Opts{CN: "example.test", DNS: []string{"example.test"}})
					tc["cert_chain"], tc["private_key"] = leaf.Write(t, dir, name)
				}
				for _, f := range list(fc["filters"]) {
					if f["type"] == "tcp_proxy" {
						c, _ := f["config"].(obj)
						tcpClusters[c["cluster"].(string)] = true
					}
				}
			}
		}
	}
	cm, _ := cfg["cluster_manager"].(obj)
	for _, c := range list(cm["clusters"]) {
		name, _ := c["name"].(string)
		if name == "" {
			name, _ = c["Name"].(string)
		}
		for _, h := range list(c["hosts"]) {
			a := h["address"].(string)
			if strings.HasPrefix(a, "unix:") {
				h["address"] = "unix:" + uecho
				continue
			}
			_, port, _ := net.SplitHostPort(a)
			switch {
			case ports[port] != "":
				h["address"] = ports[port]
			case tcpClusters[name]:
				h["address"] = echo.addr()
			default:
				h["address"] = web.addr()
			}
		}
	}
	if a, ok := cfg["admin"].(obj); ok {
		ex.admin = addr(freePort(t))
		_, port, _ := net.SplitHostPort(ex.admin)
		p, _ := strconv.Atoi(port)
		a["address"] = obj{"socket_address": obj{"address": "127.0.0.1", "port_value": p}}
	}
	if p, ok := cfg["pprof"].(obj); ok {
		port := freePort(t)
		p["port_value"], p["endpoint"] = port, "127.0.0.1"
		ex.pprof = addr(port)
	}
	cfg["uds_dir"] = filepath.Join(dir, "uds")
	path := writeJSON(t, dir, "config.json", cfg)

	p := startProc(t, "example", "start", "-c", path)
	p.waitLog(`msg=ready `, readyTimeout)
	check(t, ex, cfg)
	p.signal(15)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

func list(v interface{}) []obj {
	var out []obj
	if a, ok := v.([]interface{}); ok {
		for _, e := range a {
			if o, ok := e.(obj); ok {
				out = append(out, o)
			}
		}
	}
	return out
}

// tcpEcho checks that bytes sent through listener come back.
func tcpEcho(listener string) func(*testing.T, *runningExample, obj) {
	return func(t *testing.T, ex *runningExample, _ obj) {
		network, address := "tcp", ex.listeners[listener]
		if strings.HasPrefix(address, "/") {
			network = "unix"
		}
		c, err := net.DialTimeout(network, address, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := "ping through " + listener
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Errorf("echo through %s: %q, %v", listener, buf, err)
		}
	}
}

// newUnixEcho serves a TCP-style echo on a unix socket at path.
func newUnixEcho(t *testing.T, path string) string {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return path
}
