package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// featureBackend is an HTTP upstream that answers with what it saw (path,
// Host, headers) as JSON, names itself in X-Backend, sets an X-Internal
// field for the proxy to remove, can be made to fail (status) or its
// health check to fail (health), and counts the connections it accepted.
type featureBackend struct {
	name   string
	ln     net.Listener
	srv    *http.Server
	status atomic.Int32 // featAnswer of every request but /health (0: 200)
	health atomic.Int32 // featAnswer of /health (0: 200)
	conns  atomic.Int32
	hits   atomic.Int32 // requests other than /health
}

type seen struct {
	Backend string              `json:"backend"`
	Path    string              `json:"path"`
	Target  string              `json:"target"`
	Host    string              `json:"host"`
	Header  map[string][]string `json:"header"`
}

func newFeatureBackend(t *testing.T, name string) *featureBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &featureBackend{name: name, ln: ln}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			if s := b.health.Load(); s != 0 {
				w.WriteHeader(int(s))
			}
			return
		}
		b.hits.Add(1)
		if strings.HasPrefix(r.URL.Path, "/slow") {
			<-r.Context().Done()
			return
		}
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Internal", "secret")
		w.Header().Set("Content-Type", "application/json")
		if s := b.status.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
		_ = json.NewEncoder(w).Encode(seen{Backend: name, Path: r.URL.Path, Target: r.RequestURI, Host: r.Host, Header: r.Header})
	})
	b.srv = &http.Server{Handler: h, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *featureBackend) addr() string { return b.ln.Addr().String() }

// featureEnv is the MOSN-shaped fixture testdata/mosn-features/
// http1_route_features.json started with its ports and paths made this
// test's: each upstream port of the fixture is a backend here, 9104 a
// closed port.
type featureEnv struct {
	dir, cfgPath, accessLog, tcpLog, listen, tcpListen, admin string
	blue, green, bad, limited, checkA, checkB                 *featureBackend
	client                                                    *http.Client
}

func newFeatureEnv(t *testing.T) *featureEnv {
	raw, err := os.ReadFile(filepath.Join("testdata", "mosn-features", "http1_route_features.json"))
	if err != nil {
		t.Fatal(err)
	}
	e := &featureEnv{dir: t.TempDir()}
	e.blue, e.green, e.bad = newFeatureBackend(t, "blue"), newFeatureBackend(t, "green"), newFeatureBackend(t, "bad")
	e.limited, e.checkA, e.checkB = newFeatureBackend(t, "limited"), newFeatureBackend(t, "checked-a"), newFeatureBackend(t, "checked-b")
	e.bad.status.Store(503)
	closed := addr(freePort(t)) // nobody listens there
	echo := newEchoBackend(t)
	e.listen, e.tcpListen, e.admin = addr(freePort(t)), addr(freePort(t)), addr(freePort(t))
	e.accessLog, e.tcpLog = filepath.Join(e.dir, "logs", "access.log"), filepath.Join(e.dir, "logs", "tcp_access.log")
	s := string(raw)
	for old, now := range map[string]string{
		"0.0.0.0:2046": e.listen, "0.0.0.0:2047": e.tcpListen, "127.0.0.1:9108": echo.addr(),
		"/home/admin/mosn/logs/tcp_access.log": e.tcpLog, "127.0.0.1:9101": e.blue.addr(), "127.0.0.1:9102": e.green.addr(),
		"127.0.0.1:9103": e.bad.addr(), "127.0.0.1:9104": closed, "127.0.0.1:9105": e.limited.addr(),
		"127.0.0.1:9106": e.checkA.addr(), "127.0.0.1:9107": e.checkB.addr(),
		"/home/admin/mosn/logs/access.log": e.accessLog, "/home/admin/mosn/logs/mosn.pid": filepath.Join(e.dir, "mosn.pid"),
	} {
		if !strings.Contains(s, `"`+old+`"`) {
			t.Fatalf("fixture has no %q", old)
		}
		s = strings.ReplaceAll(s, `"`+old+`"`, `"`+now+`"`)
	}
	var cfg obj
	if err := json.Unmarshal([]byte(s), &cfg); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(e.admin)
	cfg["admin"] = obj{"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": atoi(port)}}}
	cfg["uds_dir"] = filepath.Join(e.dir, "uds")
	// mosnlite's own: the old process exits once drained instead of
	// watching its successor for 5s (keeps the test short).
	cfg["upgrade_watch_period"] = "0s"
	e.cfgPath = writeJSON(t, e.dir, "mosn.json", cfg)
	e.client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

type featAnswer struct {
	code int
	h    http.Header
	body string
	seen seen
}

// do sends a request with the given header fields ("Name: value") and
// the request id rid; keep-alive across calls.
func (e *featureEnv) do(t *testing.T, method, path, rid string, fields ...string) featAnswer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.listen+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", rid)
	for _, f := range fields {
		k, v, _ := strings.Cut(f, ": ")
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Add(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	a := featAnswer{code: resp.StatusCode, h: resp.Header, body: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(b, &a.seen)
	}
	return a
}

// accessLines waits until the access log at path has lines for every id
// (MOSN's format of the fixture: "id=ID" is its second field) and returns
// them by id.
func accessLines(t *testing.T, path string, ids ...string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := map[string]string{}
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if m := regexp.MustCompile(` id=(\S+) `).FindStringSubmatch(sc.Text()); m != nil {
					got[m[1]] = sc.Text()
				}
			}
			f.Close()
		}
		missing := 0
		for _, id := range ids {
			if got[id] == "" {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log %s: %d of %d lines missing after 15s; has %v", path, missing, len(ids), got)
		}
		time.Sleep(50 * time.Millisecond) // the log is flushed each second
	}
}

// TestMOSNRouteFeaturesEndToEnd drives the real binary with a MOSN-shaped
// config using the route features, cluster limits, health check and access
// log mosnlite honours, and checks what each does on the wire and in the
// access log; then an upgrade, after which the new process appends to the
// same access log, and a SIGUSR1 that reopens it after a rotation.
func TestMOSNRouteFeaturesEndToEnd(t *testing.T) {
	e := newFeatureEnv(t)
	gen1 := startProc(t, "gen1", "start", "-c", e.cfgPath)
	waitReady(gen1, 1)

	t.Run("rewrites", func(t *testing.T) {
		a := e.do(t, "GET", "/old/page?q=1", "rw1")
		if a.code != 200 || a.seen.Target != "/new/page?q=1" || a.seen.Host != "blue.internal" {
			t.Errorf("prefix_rewrite + host_rewrite: %d, backend saw target %q host %q", a.code, a.seen.Target, a.seen.Host)
		}
		if got := a.seen.Header["X-Mosn-Original-Path"]; len(got) != 1 || got[0] != "/old/page" {
			t.Errorf("original path sent along: %q", got)
		}
		a = e.do(t, "GET", "/items/42", "rw2")
		if a.code != 200 || a.seen.Path != "/v2/items/42" {
			t.Errorf("regex_rewrite: %d, backend saw %q", a.code, a.seen.Path)
		}
	})

	t.Run("header operations", func(t *testing.T) {
		a := e.do(t, "GET", "/headers", "h1", "X-Env: dev", "X-Tag: client", "X-Secret: s3cr3t")
		h := a.seen.Header
		if a.code != 200 || strings.Join(h["X-Env"], ",") != "prod" || strings.Join(h["X-Tag"], ",") != "client,mosn" || h["X-Secret"] != nil {
			t.Errorf("request header ops: %d, backend saw X-Env %q X-Tag %q X-Secret %q", a.code, h["X-Env"], h["X-Tag"], h["X-Secret"])
		}
		if a.h.Get("X-Internal") != "" || a.h.Get("X-Served-By") != "blue" || a.h.Get("X-Proxy") != "mosn" || a.h.Get("X-Backend") != "blue" {
			t.Errorf("response header ops: %v", a.h)
		}
	})

	t.Run("regex header match", func(t *testing.T) {
		if a := e.do(t, "GET", "/canary", "m1", "X-Version: v2.3"); a.seen.Backend != "green" {
			t.Errorf("X-Version v2.3 went to %q, want green", a.seen.Backend)
		}
		if a := e.do(t, "GET", "/canary", "m2", "X-Version: v3"); a.seen.Backend != "blue" {
			t.Errorf("X-Version v3 went to %q, want blue (the catch-all)", a.seen.Backend)
		}
	})

	t.Run("weighted clusters", func(t *testing.T) {
		const n = 400
		count := map[string]int{}
		for i := 0; i < n; i++ {
			a := e.do(t, "GET", "/split", fmt.Sprintf("w%d", i))
			if a.code != 200 {
				t.Fatalf("request %d: %d", i, a.code)
			}
			count[a.seen.Backend]++
		}
		// 80/20: blue's share is 320 ± 8 (one standard deviation).
		if count["blue"]+count["green"] != n || count["blue"] < 280 || count["blue"] > 360 {
			t.Errorf("split of %d: %v, want about 320 blue and 80 green", n, count)
		}
	})

	t.Run("retries", func(t *testing.T) {
		// flaky: a host answering 503, a closed port, and blue; every
		// request ends on blue, within num_retries.
		before := e.bad.hits.Load()
		for i := 0; i < 6; i++ {
			a := e.do(t, "GET", "/retry", fmt.Sprintf("r%d", i))
			if a.code != 200 || a.seen.Backend != "blue" {
				t.Fatalf("request %d: %d from %q, want 200 from blue after retries", i, a.code, a.seen.Backend)
			}
		}
		if e.bad.hits.Load() == before {
			t.Error("the failing host was never tried: the retries were not exercised")
		}
	})

	t.Run("redirect and direct response", func(t *testing.T) {
		a := e.do(t, "GET", "/moved?x=1", "d1", "Host: shop.example")
		if a.code != 302 || a.h.Get("Location") != "http://shop.example/new-home?x=1" {
			t.Errorf("redirect: %d Location %q", a.code, a.h.Get("Location"))
		}
		if a := e.do(t, "GET", "/gone", "d2"); a.code != 410 || a.body != "gone for good" {
			t.Errorf("direct_response: %d %q", a.code, a.body)
		}
	})

	t.Run("route timeout", func(t *testing.T) {
		start := time.Now()
		a := e.do(t, "GET", "/slow", "t1")
		if took := time.Since(start); a.code != 504 || took > 5*time.Second {
			t.Errorf("route timeout 300ms: %d after %s, want 504", a.code, took)
		}
	})

	t.Run("max_request_per_conn", func(t *testing.T) {
		before := e.limited.conns.Load()
		for i := 0; i < 9; i++ {
			if a := e.do(t, "GET", "/pooled", fmt.Sprintf("p%d", i)); a.code != 200 || a.seen.Backend != "limited" {
				t.Fatalf("request %d: %d %q", i, a.code, a.seen.Backend)
			}
		}
		// One request after the other: each upstream connection carries 3.
		if got := e.limited.conns.Load() - before; got != 3 {
			t.Errorf("9 sequential requests used %d upstream connections, want 3 (max_request_per_conn 3)", got)
		}
	})

	t.Run("health check", func(t *testing.T) {
		// seenAll waits until n requests in a row went only to want, or
		// fails after the deadline.
		only := func(want string, n int) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			run := 0
			for run < n {
				if time.Now().After(deadline) {
					t.Fatalf("requests never went only to %s", want)
				}
				a := e.do(t, "GET", "/checked", "hc")
				if a.code == 200 && a.seen.Backend == want {
					run++
				} else {
					run = 0
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		both := func() {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			got := map[string]bool{}
			for len(got) < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("requests never reached both hosts again: %v", got)
				}
				a := e.do(t, "GET", "/checked", "hc")
				got[a.seen.Backend] = a.code == 200
				if len(got) < 2 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		both()
		e.checkA.health.Store(500) // its check fails: marked down
		only("checked-b", 10)
		e.checkA.health.Store(0) // and up again
		both()
	})

	// Every request above has its line, with MOSN's variables filled.
	t.Run("access log", func(t *testing.T) {
		lines := accessLines(t, e.accessLog, "rw1", "h1", "r0", "d1", "t1", "p0")
		re := regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3} id=rw1 GET /old/page 200 sent=\d+ recv=0 cluster=blue host=blue-1 from=127\.0\.0\.1:\d+ listener=ingress took=\S+s flag=false$`)
		if !re.MatchString(lines["rw1"]) {
			t.Errorf("line of rw1 %q\n does not match %s", lines["rw1"], re)
		}
		for id, want := range map[string]string{
			"h1": " GET /headers 200 ", "r0": " /retry 200 ", "d1": " /moved 302 ", "t1": " /slow 504 ", "p0": "cluster=limited",
		} {
			if !strings.Contains(lines[id], want) {
				t.Errorf("line of %s %q does not contain %q", id, lines[id], want)
			}
		}
		if !strings.Contains(lines["t1"], "flag=true") || !strings.Contains(lines["d1"], "cluster=- host=- ") {
			t.Errorf("flags or empty values: %q, %q", lines["t1"], lines["d1"])
		}
	})

	// A tcp_proxy session has its line at its end, HTTP variables "-".
	t.Run("tcp access log", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", e.tcpListen, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := "ping-12345"
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo: %q %v", buf, err)
		}
		from := c.LocalAddr().String()
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()
		want := "tcp from=" + from + " host=echo-1 cluster=echo recv=10 sent=10 method=- flag=false"
		deadline := time.Now().Add(15 * time.Second)
		for {
			b, _ := os.ReadFile(e.tcpLog)
			if strings.Contains(string(b), want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("tcp access log has no %q:\n%s", want, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	// An upgrade: the new process appends to the same file.
	e.client.CloseIdleConnections()
	gen2 := startProc(t, "gen2", "start", "-c", e.cfgPath)
	waitReady(gen2, 2)
	if code := gen1.wait(20 * time.Second); code != 0 {
		t.Fatalf("generation 1 exited %d after handing over", code)
	}
	if a := e.do(t, "GET", "/old/after-upgrade", "up1"); a.code != 200 {
		t.Fatalf("after the upgrade: %d", a.code)
	}
	lines := accessLines(t, e.accessLog, "rw1", "up1")
	if !strings.Contains(lines["up1"], "GET /old/after-upgrade 200") {
		t.Errorf("line after the upgrade: %q", lines["up1"])
	}

	// logrotate moves the file, SIGUSR1 reopens it.
	rotated := e.accessLog + ".1"
	if err := os.Rename(e.accessLog, rotated); err != nil {
		t.Fatal(err)
	}
	gen2.signal(syscall.SIGUSR1)
	gen2.waitLog(`msg="log files reopened"`, readyTimeout)
	if a := e.do(t, "GET", "/rotated", "rot1"); a.code != 200 {
		t.Fatalf("after the reopen: %d", a.code)
	}
	accessLines(t, e.accessLog, "rot1")
	if old := accessLines(t, rotated, "rw1", "up1"); old["rot1"] != "" {
		t.Error("a line after the reopen went to the rotated file")
	}

	e.client.CloseIdleConnections()
	gen2.signal(syscall.SIGTERM)
	if code := gen2.wait(20 * time.Second); code != 0 {
		t.Fatalf("generation 2 exited %d on SIGTERM", code)
	}
}

// TestMOSNDisableUpgrade: with MOSN's disable_upgrade a process serves
// but offers no reconfig.sock, and a second process with the same config
// does not take over: it fails to bind the port the first holds, which
// serves on.
func TestMOSNDisableUpgrade(t *testing.T) {
	dir := t.TempDir()
	web := newHTTPBackend(t, "web")
	port := freePort(t)
	uds := filepath.Join(dir, "uds")
	cfg := obj{
		"close_graceful":  true, // MOSN's deprecated name of disable_upgrade
		"uds_dir":         uds,
		"servers":         []obj{{"listeners": []obj{httpListener("web", addr(port), "r")}, "routers": []obj{router("r", "web")}}},
		"cluster_manager": obj{"clusters": []obj{cluster("web", web.addr())}},
	}
	path := writeJSON(t, dir, "mosn.json", cfg)
	first := startProc(t, "first", "start", "-c", path)
	waitReady(first, 1)
	first.waitLog(`disable_upgrade: no reconfig.sock`, readyTimeout)
	if _, err := os.Stat(filepath.Join(uds, "reconfig.sock")); !os.IsNotExist(err) {
		t.Fatalf("reconfig.sock with disable_upgrade: %v", err)
	}
	second := startProc(t, "second", "start", "-c", path)
	if code := second.wait(20 * time.Second); code == 0 {
		t.Fatal("a second process started beside one with disable_upgrade")
	}
	if out := second.out.String(); !strings.Contains(out, "address already in use") {
		t.Errorf("second process: want a bind error, got:\n%s", out)
	}
	if code, body := get(t, "http://"+addr(port)+"/x"); code != 200 || !strings.Contains(body, "web GET /x") {
		t.Errorf("the first process after the refused start: %d %q", code, body)
	}
	first.signal(syscall.SIGTERM)
	if code := first.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d on SIGTERM", code)
	}
}
