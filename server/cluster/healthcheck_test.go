package cluster

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fastCheck(path string) *config.HealthCheck {
	return &config.HealthCheck{
		Interval:           config.Duration{Duration: 10 * time.Millisecond},
		Timeout:            config.Duration{Duration: 500 * time.Millisecond},
		HealthyThreshold:   2,
		UnhealthyThreshold: 2,
		Path:               path,
	}
}

func TestTCPHealthCheckFlipsDownAndUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	reg := stats.New()
	m := newTestManager(t, reg, config.Cluster{Name: "c", Hosts: []config.Host{{Address: addr}}, HealthCheck: fastCheck("")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Start(ctx)
	h := m.Get("c").Hosts()[0]
	gauge := reg.Gauge("cluster.healthy_hosts", "", "cluster", "c")

	l.Close()
	waitFor(t, "host to go unhealthy", func() bool { return !h.Healthy() })
	if gauge.Value() != 0 {
		t.Fatalf("healthy_hosts = %v, want 0", gauge.Value())
	}

	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("reopen %s: %v", addr, err)
	}
	defer l2.Close()
	go func() {
		for {
			c, err := l2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	waitFor(t, "host to go healthy", h.Healthy)
	if gauge.Value() != 1 {
		t.Fatalf("healthy_hosts = %v, want 1", gauge.Value())
	}
}

func TestHTTPHealthCheckUsesPathAndStatus(t *testing.T) {
	var ok atomic.Bool
	var wrongPath atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			wrongPath.Add(1)
		}
		if ok.Load() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	m := newTestManager(t, stats.New(), config.Cluster{
		Name: "c", Hosts: []config.Host{{Address: srv.Listener.Addr().String()}}, HealthCheck: fastCheck("/healthz"),
	})
	m.Start(context.Background())
	h := m.Get("c").Hosts()[0]
	waitFor(t, "503 to mark the host unhealthy", func() bool { return !h.Healthy() })
	ok.Store(true)
	waitFor(t, "200 to mark the host healthy", h.Healthy)
	if n := wrongPath.Load(); n != 0 {
		t.Fatalf("%d probes hit a path other than /healthz", n)
	}
	m.Close() // stops the checkers; must not hang
}

func TestMOSNHTTPCheck(t *testing.T) {
	type seen struct{ method, uri, host string }
	got := make(chan seen, 100)
	var status atomic.Int32
	status.Store(204)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- seen{r.Method, r.RequestURI, r.Host}:
		default:
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	// The host's own port answers nothing: the check goes to http_check_config.port.
	hc := fastCheck("")
	hc.Protocol = config.ProtocolHTTP1
	hc.HTTPCheck = &config.HTTPCheckConfig{Port: p, Path: "/health?deep=1", Method: "HEAD", Domain: "svc.internal",
		Codes: []config.CodeRange{{Start: 200, End: 204}}}
	m := newTestManager(t, stats.New(), config.Cluster{Name: "c", Hosts: []config.Host{{Address: closedAddr(t)}}, HealthCheck: hc})
	m.Start(context.Background())
	h := m.Get("c").Hosts()[0]
	s := <-got
	if s.method != "HEAD" || s.uri != "/health?deep=1" || s.host != "svc.internal" {
		t.Fatalf("check sent %+v, want HEAD /health?deep=1 Host svc.internal", s)
	}
	status.Store(205)
	waitFor(t, "a 205 outside the codes to mark the host unhealthy", func() bool { return !h.Healthy() })
	status.Store(204)
	waitFor(t, "a 204 inside the codes to mark it healthy", h.Healthy)

	// Without codes, only 200 is healthy (MOSN's default).
	p2 := mosnProbe(&config.HTTPCheckConfig{}, "10.0.0.1:80", "tcp")
	if !p2.ok(200) || p2.ok(204) || p2.method != "GET" || p2.path != "/" || p2.host != "10.0.0.1:80" {
		t.Fatalf("defaults: %+v ok(204)=%v", p2, p2.ok(204))
	}
	if p3 := mosnProbe(&config.HTTPCheckConfig{Scheme: "https", Domain: "a.example:8443"}, "10.0.0.1:80", "tcp"); p3.tlsName != "a.example" {
		t.Fatalf("https server name %q, want a.example", p3.tlsName)
	}
}

func TestHealthCheckTimingInitialDelayAndJitter(t *testing.T) {
	l := acceptingListener(t)
	hc := fastCheck("")
	hc.Interval = config.Duration{Duration: time.Hour}
	hc.IntervalJitter = config.Duration{Duration: time.Minute}
	hc.InitialDelaySeconds = config.Duration{Duration: 7 * time.Second}
	m := newTestManager(t, stats.New(), config.Cluster{Name: "c", Hosts: []config.Host{{Address: l.Addr().String()}}, HealthCheck: hc})
	c := m.Get("c")
	waits := make(chan time.Duration, 10)
	tick := make(chan time.Time)
	c.after = func(d time.Duration) <-chan time.Time { waits <- d; return tick }
	c.jitter = func(n int64) int64 {
		if n != int64(time.Minute) {
			t.Errorf("jitter drawn from [0, %v), want [0, 1m)", time.Duration(n))
		}
		return int64(3 * time.Second)
	}
	m.Start(context.Background())
	if d := <-waits; d != 7*time.Second {
		t.Fatalf("first wait %v, want the initial delay 7s", d)
	}
	tick <- time.Now()
	if d := <-waits; d != time.Hour+3*time.Second {
		t.Fatalf("wait after a check %v, want the interval plus the jitter drawn (1h3s)", d)
	}
}

// MOSN's scheme https: the check speaks TLS, verifies the server's
// certificate for the domain, and flips the host on the status as over
// plain HTTP; a certificate no trusted CA signed marks the host down.
func TestMOSNHTTPSCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var overTLS atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		overTLS.Store(r.TLS != nil && r.URL.Path == "/health")
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	hc := fastCheck("")
	hc.Protocol = config.ProtocolHTTP1
	hc.HTTPCheck = &config.HTTPCheckConfig{Scheme: "https", Path: "/health", Domain: "example.com"}
	m := newTestManager(t, stats.New(),
		config.Cluster{Name: "trusted", Hosts: []config.Host{{Address: srv.Listener.Addr().String()}}, HealthCheck: hc},
		config.Cluster{Name: "untrusted", Hosts: []config.Host{{Address: srv.Listener.Addr().String()}}, HealthCheck: hc})
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	m.Get("trusted").tlsRoots = roots
	m.Start(context.Background())
	trusted, untrusted := m.Get("trusted").Hosts()[0], m.Get("untrusted").Hosts()[0]
	waitFor(t, "the host with an unverifiable certificate to go down", func() bool { return !untrusted.Healthy() })
	waitFor(t, "a check over TLS", overTLS.Load)
	if !trusted.Healthy() {
		t.Fatal("the verified host is down while it answers 200")
	}
	status.Store(503)
	waitFor(t, "a 503 over TLS to mark the host unhealthy", func() bool { return !trusted.Healthy() })
	status.Store(200)
	waitFor(t, "a 200 over TLS to mark it healthy again", trusted.Healthy)
}
