package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// obj is a JSON object in a config built by a test.
type obj = map[string]interface{}

// ports are the service ports of one test's mosnlite.
type ports struct{ admin, pprof, metrics int }

func newPorts(t testing.TB) ports {
	p := freePorts(t, 3)
	return ports{admin: p[0], pprof: p[1], metrics: p[2]}
}

func (p ports) adminURL(path string) string { return "http://" + addr(p.admin) + path }
func (p ports) metricsURL() string          { return "http://" + addr(p.metrics) + "/metrics" }
func (p ports) pprofURL(path string) string { return "http://" + addr(p.pprof) + path }

// mosnConfig builds a config: one server with the given listeners and routers,
// the given clusters, service ports and uds_dir.
func mosnConfig(udsDir string, p ports, graceful string, listeners, routers, clusters []obj) obj {
	if graceful == "" {
		graceful = "30s"
	}
	return obj{
		"uds_dir": udsDir,
		// These tests time the drain (an old process exits as soon as nothing
		// remains); the watch period, which keeps it for 5s by default, is
		// tested on its own (watch_test.go).
		"upgrade_watch_period": "0s",
		"servers": []obj{{
			"server_name":       "main",
			"default_log_level": "info",
			"graceful_timeout":  graceful,
			"listeners":         listeners,
			"routers":           routers,
		}},
		"cluster_manager": obj{"clusters": clusters},
		"admin":           obj{"address": addr(p.admin)},
		"pprof":           obj{"address": addr(p.pprof)},
		"metrics":         obj{"address": addr(p.metrics)},
	}
}

func httpListener(name, address, router string) obj {
	return obj{"name": name, "address": address, "filter_chains": []obj{{"filters": []obj{{
		"type": "proxy", "config": obj{"router_config_name": router}}}}}}
}

func tcpListener(name, address, cluster string) obj {
	return obj{"name": name, "address": address, "filter_chains": []obj{{"filters": []obj{{
		"type": "tcp_proxy", "config": obj{"cluster": cluster}}}}}}
}

// router routes prefix "/" to cluster, with extra routes before it.
func router(name, cluster string, extra ...obj) obj {
	routes := append(extra, obj{"match": obj{"prefix": "/"}, "route": obj{"cluster_name": cluster}})
	return obj{"router_config_name": name, "virtual_hosts": []obj{{"name": "all", "domains": []string{"*"}, "routers": routes}}}
}

func directRoute(prefix string, status int, body string) obj {
	return obj{"match": obj{"prefix": prefix}, "direct_response": obj{"status": status, "body": body}}
}

func cluster(name string, hosts ...string) obj {
	var hs []obj
	for _, h := range hosts {
		hs = append(hs, obj{"address": h})
	}
	return obj{"name": name, "lb_type": "LB_ROUNDROBIN", "connect_timeout": "2s", "hosts": hs}
}

// httpBackend is a real HTTP server on 127.0.0.1 that names itself in each answer.
type httpBackend struct {
	name string
	ln   net.Listener
	srv  *http.Server
}

func newHTTPBackend(t testing.TB, name string) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{name: name, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s %s xff=%s", name, r.Method, r.URL.Path, r.Header.Get("X-Forwarded-For"))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	b.srv = &http.Server{Handler: mux}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *httpBackend) addr() string { return b.ln.Addr().String() }

// echoBackend is a TCP echo server on 127.0.0.1 that half-closes after EOF.
type echoBackend struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newEchoBackend(t testing.TB) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoBackend{ln: ln, conns: map[net.Conn]bool{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns[c] = true
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				io.Copy(c, c)
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				c.Close()
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.mu.Lock()
		for c := range e.conns {
			c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *echoBackend) addr() string { return e.ln.Addr().String() }

// readStatus reads one raw HTTP response status line and headers from br.
func readHeaders(br *bufio.Reader) (string, map[string]string, error) {
	status, err := br.ReadString('\n')
	if err != nil {
		return "", nil, err
	}
	h := map[string]string{}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			return strings.TrimSpace(status), h, nil
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return "", nil, errors.New("bad header line " + l)
		}
		h[strings.ToLower(k)] = strings.TrimSpace(v)
	}
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

func dialQuick(address string) (net.Conn, error) { return net.DialTimeout("tcp", address, time.Second) }

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// waitGone waits until pid no longer exists.
func waitGone(t testing.TB, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		// A zombie nobody has reaped yet is gone too.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if _, rest, ok := strings.Cut(string(b), ") "); ok && strings.HasPrefix(rest, "Z") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pid %d still alive after %s", pid, timeout)
}

// getQuiet fetches url over a new connection; errors come back as code 0.
func getQuiet(url string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func jsonInto(s string, v interface{}) error { return json.Unmarshal([]byte(s), v) }

// syscallKill sends SIGTERM to a process the test started outside startProc.
func syscallKill(pid int) { _ = syscall.Kill(pid, syscall.SIGTERM) }
