package cluster

import (
	"context"
	"errors"
	"io"
	"net"
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
	conn, err := c.DialContext(context.Background())
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	h := conn.Host()
	if h.Address() != live.Addr().String() {
		t.Fatalf("connected to %s, want the live host %s", h.Address(), live.Addr())
	}
	// The connect is timed for the host that answered only; the connection
	// counts as open until it is closed, once.
	connectTime := func(host string) uint64 {
		return reg.Histogram(stats.ClusterConnectDuration, "", nil, "cluster", "c", "host", host).Snapshot().Count
	}
	if live, dead := connectTime(h.Address()), connectTime(c.Hosts()[0].Address()); live != 1 || dead != 0 {
		t.Fatalf("connect time observations: live host %d, failed host %d; want 1, 0", live, dead)
	}
	open := reg.Gauge(stats.ClusterCxActive, "", "cluster", "c")
	if open.Value() != 1 {
		t.Fatalf("cx_active = %v with one connection open", open.Value())
	}
	conn.Close()
	conn.Close()
	if open.Value() != 0 {
		t.Fatalf("cx_active = %v after the close (twice)", open.Value())
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
	_, err := m.Get("c").DialContext(context.Background())
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
	if _, err := c.DialContext(context.Background()); !errors.Is(err, ErrNoHealthyHost) {
		t.Fatalf("err = %v, want ErrNoHealthyHost", err)
	}
	if g := reg.Gauge("cluster.healthy_hosts", "", "cluster", "c").Value(); g != 0 {
		t.Fatalf("healthy_hosts = %v, want 0", g)
	}
	empty := newTestManager(t, reg, config.Cluster{Name: "empty"})
	if _, err := empty.Get("empty").DialContext(context.Background()); !errors.Is(err, ErrNoHealthyHost) {
		t.Fatalf("empty cluster err = %v, want ErrNoHealthyHost", err)
	}
}

// countingListener accepts connections, counts them, and keeps them open.
func countingListener(t *testing.T) (net.Listener, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			t.Cleanup(func() { c.Close() })
		}
	}()
	return l, &n
}

func TestPoolReusesPerHost(t *testing.T) {
	l1, n1 := countingListener(t)
	l2, n2 := countingListener(t)
	m := newTestManager(t, stats.New(), config.Cluster{Name: "web", MaxIdleConns: 2,
		Hosts: []config.Host{{Address: l1.Addr().String()}, {Address: l2.Addr().String()}}})
	cl := m.Get("web")
	h1, h2 := cl.Hosts()[0], cl.Hosts()[1]
	ctx := context.Background()

	a, err := cl.Get(ctx, h1)
	if err != nil {
		t.Fatal(err)
	}
	if a.Reused() || a.Host() != h1 {
		t.Fatalf("a new connection: reused %v host %v", a.Reused(), a.Host())
	}
	cl.Put(a)
	b, err := cl.Get(ctx, h1)
	if err != nil || b != a || !b.Reused() {
		t.Fatalf("second Get: %v %v, want the pooled connection, reused", b, err)
	}
	// The other host has a pool of its own.
	c, err := cl.Get(ctx, h2)
	if err != nil || c == a || c.Host() != h2 {
		t.Fatalf("other host: %v %v", c, err)
	}
	// Three back, pool of two: one is closed.
	d, _ := cl.Get(ctx, h1)
	e, _ := cl.Get(ctx, h1)
	cl.Put(b)
	cl.Put(d)
	cl.Put(e)
	if h1.IdleConns() != 2 {
		t.Fatalf("idle on h1 = %d, want the pool size 2", h1.IdleConns())
	}
	// Last in, first out: the warmest connection goes first.
	if got, _ := cl.Get(ctx, h1); got != d {
		t.Fatal("Get did not return the most recently pooled connection")
	}
	cl.Discard(c)
	waitFor(t, "connections to reach the backends", func() bool { return n1.Load() == 3 && n2.Load() == 1 })
}

func TestPoolDropsStaleAndUnhealthy(t *testing.T) {
	l, _ := countingListener(t)
	reg := stats.New()
	m := newTestManager(t, reg, config.Cluster{Name: "web", Hosts: []config.Host{{Address: l.Addr().String()}}})
	open := reg.Gauge(stats.ClusterCxActive, "", "cluster", "web")
	cl := m.Get("web")
	h := cl.Hosts()[0]
	now := time.Now()
	cl.now = func() time.Time { return now }
	ctx := context.Background()

	a, _ := cl.Get(ctx, h)
	cl.Put(a)
	now = now.Add(upstreamIdleConnTimeout)
	b, err := cl.Get(ctx, h)
	if err != nil || b == a {
		t.Fatalf("a connection idle for %v was reused", upstreamIdleConnTimeout)
	}
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Fatal("the stale connection was not closed")
	}
	cl.Put(b)
	if open.Value() != 1 {
		t.Fatalf("cx_active = %v with the stale connection closed and one pooled", open.Value())
	}
	c, _ := cl.Get(ctx, h)
	cl.Put(c)
	cl.setHealthy(h, false)
	if h.IdleConns() != 0 {
		t.Fatal("an unhealthy host kept pooled connections")
	}
	d, _ := cl.Get(ctx, h)
	cl.Put(d) // unhealthy: closed, not pooled
	if h.IdleConns() != 0 {
		t.Fatal("a connection to an unhealthy host was pooled")
	}
	cl.setHealthy(h, true)
	e, _ := cl.Get(ctx, h)
	m.Close()
	cl.Put(e)
	if h.IdleConns() != 0 {
		t.Fatal("pooled after the manager closed")
	}
	if open.Value() != 0 {
		t.Fatalf("cx_active = %v with every connection closed", open.Value())
	}
}

// The manager records into the series it is given, not into new ones of
// its registry.
func TestManagerUsesTheMetricsItIsGiven(t *testing.T) {
	live := acceptingListener(t)
	own, given := stats.New(), stats.New()
	cfg := config.Cluster{Name: "c", Hosts: []config.Host{{Address: live.Addr().String()}}}
	cm := stats.NewClusterMetrics(given, "c", HostAddresses(cfg))
	m, err := NewManager([]config.Cluster{cfg}, own, nil, WithMetrics(map[string]*stats.ClusterMetrics{"c": cm}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if m.Get("c").Metrics() != cm {
		t.Fatal("the cluster does not hold the metrics given")
	}
	conn, err := m.Get("c").DialContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	connects := func(r *stats.Registry) uint64 {
		return r.Histogram(stats.ClusterConnectDuration, "", nil, "cluster", "c", "host", live.Addr().String()).Snapshot().Count
	}
	if connects(given) != 1 || connects(own) != 0 {
		t.Fatalf("connect observed %d times in the given series, %d in the registry's own; want 1, 0", connects(given), connects(own))
	}
}

func TestPickSkipsTried(t *testing.T) {
	m := newTestManager(t, stats.New(), config.Cluster{Name: "web", Hosts: []config.Host{{Address: "a:1"}, {Address: "b:1"}}})
	cl := m.Get("web")
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

// PutAt and IdleAt take the caller's reading of the clock instead of the
// cluster's: the idle time runs between the two readings given.
func TestPoolTakesTheCallersReadings(t *testing.T) {
	l, _ := countingListener(t)
	reg := stats.New()
	m := newTestManager(t, reg, config.Cluster{Name: "web", Hosts: []config.Host{{Address: l.Addr().String()}}})
	cl := m.Get("web")
	h := cl.Hosts()[0]
	a, err := cl.Connect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	cl.now = func() time.Time { t.Error("the cluster read its own clock"); return time.Now() }
	t0 := time.Now()
	cl.PutAt(a, t0)
	if got := cl.IdleAt(h, t0.Add(upstreamIdleConnTimeout-time.Millisecond)); got != a {
		t.Fatal("a connection idle for less than the idle timeout was not reused")
	}
	cl.PutAt(a, t0)
	if got := cl.IdleAt(h, t0.Add(upstreamIdleConnTimeout)); got != nil {
		t.Fatalf("a connection idle for %v was reused", upstreamIdleConnTimeout)
	}
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Fatal("the stale connection was not closed")
	}
}
