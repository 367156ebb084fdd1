package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// acceptingListener accepts and holds connections until the test ends.
func acceptingListener(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return l
}

func newTestManager(t *testing.T, reg *stats.Registry, cfgs ...config.Cluster) *Manager {
	t.Helper()
	m, err := NewManager(cfgs, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestDialRetriesOnConnectFailure(t *testing.T) {
	live := acceptingListener(t)
	reg := stats.New()
	m := newTestManager(t, reg, config.Cluster{
		Name: "c", LBType: config.LBRoundRobin,
		ConnectTimeout: config.Duration{Duration: time.Second},
		Hosts:          []config.Host{{Address: closedAddr(t)}, {Address: live.Addr().String()}},
	})
	c := m.Get("c")
	conn, h, err := c.DialContext(context.Background())
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	conn.Close()
	if h.Address() != live.Addr().String() {
		t.Fatalf("connected to %s, want the live host %s", h.Address(), live.Addr())
	}
	if got := reg.Counter("cluster.upstream_cx_connect_fail_total", "", "cluster", "c").Value(); got != 1 {
		t.Fatalf("connect_fail = %v, want 1", got)
	}
	if got := reg.Counter("cluster.upstream_cx_total", "", "cluster", "c").Value(); got != 2 {
		t.Fatalf("cx_total = %v, want 2", got)
	}
}

func TestDialAllFailTriesEachHostOnce(t *testing.T) {
	reg := stats.New()
	m := newTestManager(t, reg, config.Cluster{
		Name:  "c",
		Hosts: []config.Host{{Address: closedAddr(t)}, {Address: closedAddr(t)}, {Address: closedAddr(t)}},
	})
	_, _, err := m.Get("c").DialContext(context.Background())
	if err == nil || errors.Is(err, ErrNoHealthyHost) {
		t.Fatalf("err = %v, want a connect error", err)
	}
	if got := reg.Counter("cluster.upstream_cx_total", "", "cluster", "c").Value(); got != 3 {
		t.Fatalf("attempts = %v, want 3 (each host once)", got)
	}
}

func TestDialNoHealthyHost(t *testing.T) {
	live := acceptingListener(t)
	reg := stats.New()
	m := newTestManager(t, reg, config.Cluster{Name: "c", Hosts: []config.Host{{Address: live.Addr().String()}}})
	c := m.Get("c")
	c.setHealthy(c.Hosts()[0], false)
	if _, _, err := c.DialContext(context.Background()); !errors.Is(err, ErrNoHealthyHost) {
		t.Fatalf("err = %v, want ErrNoHealthyHost", err)
	}
	if g := reg.Gauge("cluster.healthy_hosts", "", "cluster", "c").Value(); g != 0 {
		t.Fatalf("healthy_hosts = %v, want 0", g)
	}
	empty := newTestManager(t, reg, config.Cluster{Name: "empty"})
	if _, _, err := empty.Get("empty").DialContext(context.Background()); !errors.Is(err, ErrNoHealthyHost) {
		t.Fatalf("empty cluster err = %v, want ErrNoHealthyHost", err)
	}
}

func TestTransportPoolsPerPickedHost(t *testing.T) {
	type backend struct {
		srv   *httptest.Server
		conns atomic.Int32
		reqs  atomic.Int32
	}
	var bs [2]*backend
	for i := range bs {
		b := &backend{}
		b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.reqs.Add(1)
			io.WriteString(w, "ok")
		}))
		b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		}
		b.srv.Start()
		defer b.srv.Close()
		bs[i] = b
	}
	m := newTestManager(t, stats.New(), config.Cluster{
		Name:  "web",
		Hosts: []config.Host{{Address: bs[0].srv.Listener.Addr().String()}, {Address: bs[1].srv.Listener.Addr().String()}},
	})
	cl := m.Get("web")
	for range 6 {
		h := cl.Pick(nil)
		req, _ := http.NewRequest(http.MethodGet, "http://"+h.PoolKey()+"/", nil)
		resp, err := cl.Transport().RoundTrip(req)
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	for i, b := range bs {
		// Round robin per request: 3 each; one pooled connection per host.
		if b.reqs.Load() != 3 || b.conns.Load() != 1 {
			t.Errorf("backend %d: %d requests over %d connections, want 3 over 1", i, b.reqs.Load(), b.conns.Load())
		}
	}
	// A pool key naming no host is refused, not sent anywhere.
	req, _ := http.NewRequest(http.MethodGet, "http://nohost/", nil)
	if _, err := cl.Transport().RoundTrip(req); err == nil {
		t.Fatal("unknown pool key was dialled")
	}
	// Pick skips tried hosts and returns nil when none is left.
	h1 := cl.Pick(nil)
	h2 := cl.Pick([]*Host{h1})
	if h2 == nil || h2 == h1 || cl.Pick([]*Host{h1, h2}) != nil {
		t.Fatalf("Pick with tried hosts: %v %v", h1, h2)
	}
}

func TestNewManagerErrors(t *testing.T) {
	cases := map[string][]config.Cluster{
		"duplicate": {{Name: "a"}, {Name: "a"}},
		"lb":        {{Name: "a", LBType: "LB_NOPE"}},
		"address":   {{Name: "a", Hosts: []config.Host{{}}}},
	}
	for name, cfgs := range cases {
		if _, err := NewManager(cfgs, stats.New(), quietLog()); err == nil {
			t.Errorf("%s: NewManager accepted bad config", name)
		}
	}
	m, err := NewManager(nil, nil, nil) // nil registry and logger tolerated
	if err != nil {
		t.Fatal(err)
	}
	if m.Get("x") != nil {
		t.Fatal("Get of unknown cluster not nil")
	}
}
