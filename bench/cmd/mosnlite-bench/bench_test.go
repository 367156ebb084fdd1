package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

const wrkOutput = `Running 5s test @ http://127.0.0.1:41234/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.69%
    Req/Sec    56.20k     8.07k   62.00k    86.54%
  Latency Distribution
     50%  250.00us
     75%  491.00us
     90%    1.32ms
     99%    5.46ms
  1120154 requests in 5.10s, 125.22MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 12
Requests/sec: 219638.04
Transfer/sec:     24.55MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.ReqPerSec != 219638.04 {
		t.Errorf("ReqPerSec = %v", r.ReqPerSec)
	}
	if r.P50 != 250*time.Microsecond || r.P99 != 5460*time.Microsecond {
		t.Errorf("P50 %v P99 %v, want 250µs 5.46ms", r.P50, r.P99)
	}
	if r.Requests != 1120154-12 || r.Errors != 1+2+3+4+12 {
		t.Errorf("Requests %d Errors %d", r.Requests, r.Errors)
	}
	if r.Elapsed != 5100*time.Millisecond {
		t.Errorf("Elapsed %v", r.Elapsed)
	}
}

func TestParseWrkCleanRunAndSeconds(t *testing.T) {
	out := strings.NewReplacer("  Socket errors: connect 1, read 2, write 3, timeout 4\n", "",
		"  Non-2xx or 3xx responses: 12\n", "", "99%    5.46ms", "99%    1.50s").Replace(wrkOutput)
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Requests != 1120154 || r.P99 != 1500*time.Millisecond {
		t.Errorf("Errors %d Requests %d P99 %v", r.Errors, r.Requests, r.P99)
	}
}

func TestParseWrkRejectsIncompleteOutput(t *testing.T) {
	noLatency := strings.ReplaceAll(wrkOutput, "99%", "98%")
	for name, out := range map[string]string{"empty": "", "no --latency": noLatency, "garbage": "Requests/sec: fast\n"} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	if _, err := parseWrkDuration("3parsecs"); err == nil {
		t.Error("unknown unit should fail")
	}
}

func TestStreamModule(t *testing.T) {
	debian := "nginx version: nginx/1.22.1\nconfigure arguments: --with-cc-opt=-O2 --modules-path=/usr/lib/nginx/modules --with-stream=dynamic --with-stream_ssl_module"
	st, err := streamModule(debian, func(p string) bool { return p == "/usr/lib/nginx/modules/ngx_stream_module.so" })
	if err != nil || st.builtIn || st.modulePath != "/usr/lib/nginx/modules/ngx_stream_module.so" {
		t.Errorf("debian: %+v %v", st, err)
	}
	if _, err := streamModule(debian, func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "libnginx-mod-stream") {
		t.Errorf("missing module should say how to install it: %v", err)
	}
	if st, err := streamModule("configure arguments: --with-stream --with-http_ssl_module", nil); err != nil || !st.builtIn {
		t.Errorf("static: %+v %v", st, err)
	}
	if _, err := streamModule("configure arguments: --with-http_ssl_module", nil); err == nil {
		t.Error("no stream module should fail")
	}
}

func TestTable(t *testing.T) {
	var res [numCols]result
	res[colDirect].keepAlive = httpResult{ReqPerSec: 30000, P99: 2 * time.Millisecond}
	res[colMosnlite].keepAlive = httpResult{ReqPerSec: 10000, P99: 6 * time.Millisecond}
	res[colNginx].keepAlive = httpResult{ReqPerSec: 20000, P99: 3 * time.Millisecond, Errors: 3}
	res[colMosnlite].tcp, res[colNginx].tcp = tcpResult{MBps: 900}, tcpResult{MBps: 1000}
	res[colMosnlite].cpu = cpuResult{PerRequest: 30 * time.Microsecond, Achieved: 9990}
	res[colNginx].cpu = cpuResult{PerRequest: 40 * time.Microsecond, Achieved: 10000}
	res[colMosnlite].idle = idleResult{PerConn: 1500, Start: 10 << 20, After: 11 << 20}
	res[colNginx].idle = idleResult{PerConn: 600, Start: 8 << 20, After: 8 << 20}
	var buf bytes.Buffer
	if err := writeTable(&buf, resultRows(res, options{rate: 10000, idleConns: 5000})); err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(l); len(f) > 2 {
			lines[f[0]+" "+f[1]+" "+f[2]] = l
		}
	}
	check := func(key string, want ...string) {
		t.Helper()
		l := lines[key]
		for _, w := range want {
			if !strings.Contains(l, w) {
				t.Errorf("row %q = %q, want %q in it\n%s", key, l, w, buf.String())
			}
		}
	}
	check("HTTP keep-alive req/s", "30000", "10000", "20000", "0.50", "higher")
	check("HTTP keep-alive p99", "2ms", "6ms", "3ms", "2.00", "lower")
	check("TCP throughput MB/s", "900.0", "1000.0", "0.90")
	check("HTTP errors 0", " 3 ", " - ")
	check("CPU µs per", "  -  ", "30.0", "40.0", "0.75", "lower")
	check("RSS bytes per", "1500", "600", "2.50", "lower")
	check("RSS MB after", "11.0", "8.0", "1.38")
}

func TestMedianRows(t *testing.T) {
	mk := func(vs ...float64) []row {
		r := row{metric: "m", format: fmtCount, better: "higher"}
		copy(r.vals[:], vs)
		return []row{r}
	}
	got := medianRows([][]row{mk(3, 10, math.NaN()), mk(1, 30, math.NaN()), mk(2, 20, math.NaN())})
	if v := got[0].vals; v[0] != 2 || v[1] != 20 || !math.IsNaN(v[2]) {
		t.Fatalf("medians %v, want [2 20 NaN]", v)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Fatalf("median of an even count = %v, want 2.5", m)
	}
}

func TestProcParsing(t *testing.T) {
	// The name may contain spaces and parentheses.
	st, err := parseStat([]byte("4242 (nginx: worker (x)) S 4200 4200 4200 0 -1 4194624 100 0 0 0 731 269 0 0 20 0 1 0 123 0 0\n"))
	if err != nil || st.ppid != 4200 || st.utime != 731 || st.stime != 269 {
		t.Fatalf("parseStat = %+v, %v", st, err)
	}
	if _, err := parseStat([]byte("1 (x) S 0")); err == nil {
		t.Fatal("short stat accepted")
	}
	rss, err := parseRSS([]byte("Name:\tmosnlite\nVmPeak:\t 9 kB\nVmRSS:\t   12345 kB\nThreads: 7\n"))
	if err != nil || rss != 12345<<10 {
		t.Fatalf("parseRSS = %d, %v", rss, err)
	}
	if _, err := parseRSS([]byte("Name: x\n")); err == nil {
		t.Fatal("status without VmRSS accepted")
	}
	// This process is in its own tree, and its CPU time is counted.
	u, err := usage(os.Getpid())
	if err != nil || u.RSS <= 0 {
		t.Fatalf("usage(self) = %+v, %v", u, err)
	}
}

// The generators against the in-process backend: every answer is counted
// and every byte arrives.
func TestLoadGeneratorsAgainstBackend(t *testing.T) {
	b, err := startBackend(64)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	ctx := context.Background()
	r := goHTTPLoad(ctx, loadSpec{addr: b.httpAddr(), conns: 4, d: 200 * time.Millisecond, wantBody: 64})
	if r.Requests == 0 || r.Errors != 0 || r.P99 <= 0 || r.P50 > r.P99 {
		t.Errorf("http load: %v", r)
	}
	bad := goHTTPLoad(ctx, loadSpec{addr: b.httpAddr(), conns: 1, d: 100 * time.Millisecond, wantBody: 65}) // wrong body size counts as errors
	if bad.Requests != 0 || bad.Errors == 0 {
		t.Errorf("body check: %v", bad)
	}
	// Paced: 200 req/s over 4 connections for a second is about 200
	// requests, never the thousands a closed loop does.
	paced := goHTTPLoad(ctx, loadSpec{addr: b.httpAddr(), conns: 4, d: time.Second, wantBody: 64, rate: 200})
	if paced.Errors != 0 || paced.Requests < 100 || paced.Requests > 210 {
		t.Errorf("paced load: %v, want about 200 requests", paced)
	}
	closing := goHTTPLoad(ctx, loadSpec{addr: b.httpAddr(), conns: 2, d: 200 * time.Millisecond, wantBody: 64, closeEach: true})
	if closing.Requests == 0 || closing.Errors != 0 {
		t.Errorf("conn-per-request load: %v", closing)
	}
	tr, err := tcpLoad(ctx, b, b.sinkAddr(), 2, 200*time.Millisecond)
	if err != nil || tr.Bytes == 0 || tr.MBps <= 0 {
		t.Errorf("tcp load: %v %v", tr, err)
	}
}

// The rendered nginx config passes `nginx -t` where nginx is installed.
func TestNginxConfAccepted(t *testing.T) {
	bin, st, err := findNginx("")
	if err != nil {
		t.Skipf("nginx unavailable: %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	cert, err := makeBenchCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	text := nginxConf(st, dir, "127.0.0.1:1", "127.0.0.1:7", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", cert, 8, 5000, h2Ports{"127.0.0.1:17", "127.0.0.1:18", "127.0.0.1:19"})
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", conf, "-g", "daemon off;").CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s\n%s", err, out, text)
	}
}

func TestMosnliteConfigShape(t *testing.T) {
	cert, err := makeBenchCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := mosnliteConfig("/tmp/x", "127.0.0.1:1", "127.0.0.1:7", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:6", "127.0.0.1:4", "127.0.0.1:5", cert, 8, h2Ports{"127.0.0.1:17", "127.0.0.1:18", "127.0.0.1:19"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		t.Fatalf("mosnlite rejects the bench config: %v\n%s", err, b)
	}
	if len(cfg.Servers) != 1 || len(cfg.Servers[0].Listeners) != 5 || cfg.Admin == nil || cfg.Pprof == nil || len(cfg.ClusterManager.Clusters) != 3 {
		t.Errorf("parsed config: %+v", cfg)
	}
	if l := cfg.Servers[0].Listeners[1]; len(l.TLSContexts()) != 1 || l.TLSContexts()[0].Loaded == nil || l.Address != "127.0.0.1:7" {
		t.Errorf("the HTTPS listener: %+v", l)
	}
	for _, want := range []string{`"type": "proxy"`, `"type": "tcp_proxy"`, `"cluster": "sink"`, `"cluster_name": "backend"`, `"address": "127.0.0.1:4"`,
		`"downstream_protocol": "Http2"`, `"upstream_protocol": "Http2"`, `"cluster_name": "grpc"`, `"address": "127.0.0.1:19"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("config lacks %s:\n%s", want, b)
		}
	}
}
