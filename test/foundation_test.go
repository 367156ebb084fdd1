package test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const readyTimeout = 15 * time.Second

// startMosn starts `mosnlite start -c cfg` and waits until admin /ready answers 200.
func startMosn(t testing.TB, name, cfgPath string, p ports) *proc {
	t.Helper()
	pr := startProc(t, name, "start", "-c", cfgPath)
	waitHTTP(t, p.adminURL("/ready"), 200, readyTimeout)
	return pr
}

func TestHTTPAndTCPProxy(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	b1, b2 := newHTTPBackend(t, "b1"), newHTTPBackend(t, "b2")
	echo := newEchoBackend(t)
	httpPort, tcpPort := freePort(t), freePort(t)
	cfg := mosnConfig(filepath.Join(dir, "uds"), p, "5s",
		[]obj{httpListener("http", addr(httpPort), "r"), tcpListener("tcp", addr(tcpPort), "echo")},
		[]obj{router("r", "web", directRoute("/direct", 201, "direct answer"))},
		[]obj{cluster("web", b1.addr(), b2.addr()), cluster("echo", echo.addr())})
	pr := startMosn(t, "mosnlite", writeJSON(t, dir, "c.json", cfg), p)

	// HTTP: round robin over both backends, X-Forwarded-For set, direct response.
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		code, body := get(t, fmt.Sprintf("http://%s/path%d", addr(httpPort), i))
		if code != 200 || !strings.Contains(body, fmt.Sprintf("GET /path%d xff=127.0.0.1", i)) {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
		seen[strings.Fields(body)[0]]++
	}
	if seen["b1"] != 5 || seen["b2"] != 5 {
		t.Fatalf("round robin over 2 hosts: got %v", seen)
	}
	if code, body := get(t, "http://"+addr(httpPort)+"/direct"); code != 201 || body != "direct answer" {
		t.Fatalf("direct response: %d %q", code, body)
	}
	// A large body streams through intact both ways.
	big := make([]byte, 8<<20)
	rand.Read(big)
	resp, err := http.Post("http://"+addr(httpPort)+"/echo", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, big) {
		t.Fatalf("8 MiB echo through the HTTP proxy: got %d bytes, equal=%v", len(got), bytes.Equal(got, big))
	}

	// TCP: bytes echo back exactly, and half-close propagates.
	c, err := net.Dial("tcp", addr(tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	back, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("tcp read: %v", err)
	}
	if !bytes.Equal(back, payload) {
		t.Fatalf("tcp echo: got %d bytes, want %d identical", len(back), len(payload))
	}

	pr.signal(syscall.SIGTERM)
	if code := pr.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

func TestServicePorts(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	b := newHTTPBackend(t, "b")
	httpPort := freePort(t)
	cfg := mosnConfig(filepath.Join(dir, "uds"), p, "5s",
		[]obj{httpListener("web_in", addr(httpPort), "r")},
		[]obj{router("r", "web")}, []obj{cluster("web", b.addr())})
	pr := startMosn(t, "mosnlite", writeJSON(t, dir, "c.json", cfg), p)

	for i := 0; i < 3; i++ {
		if code, _ := get(t, "http://"+addr(httpPort)+"/"); code != 200 {
			t.Fatalf("proxy request: %d", code)
		}
	}
	var info map[string]interface{}
	getJSON(t, p.adminURL("/server_info"), &info)
	if int(info["pid"].(float64)) != pr.pid() || info["state"] != "running" {
		t.Fatalf("server_info: %v", info)
	}
	var ls []map[string]interface{}
	getJSON(t, p.adminURL("/listeners"), &ls)
	found := false
	for _, l := range ls {
		if l["name"] == "web_in" && l["address"] == addr(httpPort) {
			found = true
		}
	}
	if !found {
		t.Fatalf("/listeners lacks web_in at %s: %v", addr(httpPort), ls)
	}
	if code, body := get(t, p.adminURL("/config_dump")); code != 200 || !strings.Contains(body, "web_in") {
		t.Fatalf("config_dump: %d %s", code, body)
	}
	_, stats := get(t, p.adminURL("/stats"))
	if !regexp.MustCompile(`(?m)^listener\.downstream_cx_total\{listener="web_in"\}: [1-9]`).MatchString(stats) {
		t.Fatalf("/stats lacks a downstream_cx_total for web_in:\n%s", stats)
	}
	_, metrics := get(t, p.metricsURL())
	for _, want := range []string{
		`mosnlite_http_downstream_rq_total{cluster="web",listener="web_in",status_class="2xx"} 3`,
		`mosnlite_listener_downstream_cx_active{listener="web_in"}`,
		`mosnlite_listener_downstream_cx_rx_bytes_total{listener="web_in"}`,
		`mosnlite_cluster_upstream_cx_connect_fail_total`,
		"go_goroutines", "process_open_fds",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// pprof: the index and a CPU profile that go tool pprof can read (gzip'd protobuf).
	if code, body := get(t, p.pprofURL("/debug/pprof/")); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index: %d", code)
	}
	code, prof := get(t, p.pprofURL("/debug/pprof/profile?seconds=1"))
	if code != 200 {
		t.Fatalf("pprof profile: %d", code)
	}
	if _, err := gzip.NewReader(strings.NewReader(prof)); err != nil {
		t.Fatalf("pprof profile is not gzip: %v", err)
	}
	// /quitquitquit stops the process cleanly.
	if code := post(t, p.adminURL("/quitquitquit")); code != 200 {
		t.Fatalf("quitquitquit: %d", code)
	}
	if code := pr.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d after quitquitquit", code)
	}
}

func TestGracefulStopUnderLoad(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	b := newHTTPBackend(t, "b")
	httpPort := freePort(t)
	cfg := mosnConfig(filepath.Join(dir, "uds"), p, "10s",
		[]obj{httpListener("web", addr(httpPort), "r")},
		[]obj{router("r", "web")}, []obj{cluster("web", b.addr())})
	pr := startMosn(t, "mosnlite", writeJSON(t, dir, "c.json", cfg), p)

	// Slow requests in flight when SIGTERM arrives must complete.
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr(httpPort))
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			// The body arrives slowly: the request is in flight across the SIGTERM.
			fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
			started <- struct{}{}
			time.Sleep(300 * time.Millisecond)
			fmt.Fprintf(c, "67890")
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufioReader(c), nil)
			if err != nil {
				failed.Add(1)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == 200 && string(body) == "1234567890" {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		}()
	}
	for i := 0; i < 8; i++ {
		<-started
	}
	// A connection the kernel completed but the proxy has not accepted yet is
	// reset when the listener closes, as in any server: wait until all 8
	// are accepted, so that the test is about requests in flight.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, stats := get(t, p.adminURL("/stats"))
		if strings.Contains(stats, `listener.downstream_cx_active{listener="web"}: 8`+"\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not accept 8 connections:\n%s", stats)
		}
		time.Sleep(10 * time.Millisecond)
	}
	pr.signal(syscall.SIGTERM)
	wg.Wait()
	if code := pr.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if failed.Load() != 0 || ok.Load() != 8 {
		t.Fatalf("in-flight requests across SIGTERM: ok=%d failed=%d", ok.Load(), failed.Load())
	}
	// After the stop nothing listens any more.
	if c, err := net.DialTimeout("tcp", addr(httpPort), time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepts after exit")
	}
}

func TestBadConfigRefused(t *testing.T) {
	dir := t.TempDir()
	bad := `{"servers":[{"listeners":[{"name":"a","address":"127.0.0.1:99999","filter_chains":[{"filters":[{"type":"tcp_proxy","config":{"cluster":"nope"}}]}]}]}]}`
	path := filepath.Join(dir, "bad.json")
	os.WriteFile(path, []byte(bad), 0o644)
	for _, args := range [][]string{{"validate", "-c", path}, {"start", "-c", path}} {
		cmd := exec.Command(binPath, args...)
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 1 {
			t.Fatalf("%v: exit %d (%v), want 1\n%s", args, cmd.ProcessState.ExitCode(), err, out)
		}
		for _, want := range []string{
			`servers[0].listeners[0].address: "127.0.0.1:99999": port out of range`,
			`servers[0].listeners[0].filter_chains[0].filters[0].config.cluster`,
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
	}
	good := filepath.Join("..", "config", "testdata", "full.json")
	if out, err := exec.Command(binPath, "validate", "-c", good).CombinedOutput(); err != nil {
		t.Fatalf("validate full.json: %v\n%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binPath, "version").CombinedOutput()
	if err != nil || !regexp.MustCompile(`^mosnlite \d+\.\d+\.\d+ \(commit \S+, go1\.\d+`).Match(out) {
		t.Fatalf("version: %v %q", err, out)
	}
}
