package cluster

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
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
