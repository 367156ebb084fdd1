package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// sleepyBackend answers every request after sleeping d, counting them.
func sleepyBackend(t *testing.T, d time.Duration) (*backend, *atomic.Int32) {
	var hits atomic.Int32
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		hits.Add(1)
		io.WriteString(w, "slept")
	})
	return b, &hits
}

// hist is the state of one histogram series of reg.
func hist(reg *stats.Registry, name string, labels ...string) histsample.Histogram {
	return reg.Histogram(name, "", nil, labels...).Snapshot()
}

// atMost is how many of h's observations are at most bound, one of its
// classic bounds.
func atMost(t *testing.T, h histsample.Histogram, bound float64) uint64 {
	t.Helper()
	var n uint64
	for i, b := range h.Bounds {
		if b > bound {
			return n
		}
		n += h.Counts[i]
		if b == bound {
			return n
		}
	}
	t.Fatalf("%v is not a bound of %s", bound, h.Name)
	return 0
}

func getStatus(t *testing.T, c *http.Client, url string, want int) {
	t.Helper()
	if resp, _ := get(t, c, url); resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d", url, resp.StatusCode, want)
	}
}

// Requests through a backend that sleeps 30 ms on one host and 120 ms on
// the other: the downstream histogram counts exactly the requests sent,
// none below 30 ms; each host's upstream histogram counts exactly the
// requests it answered, none below its sleep; connect times count the
// connections each host accepted; the in-flight gauges come back to zero
// and the open-connection gauge holds the pooled ones. A timed-out request
// counts a timeout and its time; one that no host took counts without a
// time; a direct response counts downstream only.
func TestHTTPRequestMetrics(t *testing.T) {
	fast, fastHits := sleepyBackend(t, 30*time.Millisecond)
	slow, slowHits := sleepyBackend(t, 120*time.Millisecond)
	stuck, _ := sleepyBackend(t, 400*time.Millisecond)
	dead := closedAddr(t)
	router := &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Prefix: "/direct"}, DirectResponse: &config.DirectResponse{Status: 418, Body: "teapot"}},
		{Match: config.RouteMatch{Prefix: "/stuck"}, Route: &config.RouteAction{ClusterName: "stuck", Timeout: config.Duration{Duration: 50 * time.Millisecond}}},
		{Match: config.RouteMatch{Prefix: "/dead"}, Route: &config.RouteAction{ClusterName: "dead"}},
		{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "app"}},
	}}}}
	e := startHTTP(t, config.HTTPProxyConfig{}, router,
		appCluster(fast.addr(), slow.addr()),
		config.Cluster{Name: "stuck", Hosts: []config.Host{{Address: stuck.addr()}}},
		config.Cluster{Name: "dead", Hosts: []config.Host{{Address: dead}}})
	c := e.client()
	const n = 8
	for i := 0; i < n; i++ {
		getStatus(t, c, fmt.Sprintf("http://%s/x%d", e.addr, i), 200)
	}
	reg := e.reg
	down := func(cluster, class string) histsample.Histogram {
		return hist(reg, stats.HTTPRequestDuration, "listener", "web", "cluster", cluster, "status_class", class)
	}
	// Observed at each request's end, after its last byte went out.
	waitFor(t, "the downstream histogram to count every request", func() bool { return down("app", "2xx").Count >= n })
	d := down("app", "2xx")
	if d.Count != n || atMost(t, d, 0.025) != 0 || d.Sum < 0.03*n {
		t.Fatalf("downstream histogram: count %d (want %d), %d at most 25 ms (want 0), sum %v", d.Count, n, atMost(t, d, 0.025), d.Sum)
	}
	if e.requests("app", "2xx") != n {
		t.Fatalf("downstream 2xx counter %v", e.requests("app", "2xx"))
	}
	up := func(cluster, host string) histsample.Histogram {
		return hist(reg, stats.ClusterResponseDuration, "cluster", cluster, "host", host)
	}
	f, s := up("app", fast.addr()), up("app", slow.addr())
	if f.Count != uint64(fastHits.Load()) || s.Count != uint64(slowHits.Load()) || f.Count+s.Count != n || f.Count == 0 || s.Count == 0 {
		t.Fatalf("upstream histograms count %d (fast host) and %d (slow host); the hosts answered %d and %d of %d",
			f.Count, s.Count, fastHits.Load(), slowHits.Load(), n)
	}
	if atMost(t, f, 0.025) != 0 || atMost(t, s, 0.1) != 0 {
		t.Fatalf("upstream times below the backend's sleep: fast host %d at most 25 ms, slow host %d at most 100 ms",
			atMost(t, f, 0.025), atMost(t, s, 0.1))
	}
	if s.Sum < 0.12*float64(s.Count) || f.Sum < 0.03*float64(f.Count) {
		t.Fatalf("upstream sums %v (fast), %v (slow) below the sleeps", f.Sum, s.Sum)
	}
	if got := reg.Counter(stats.ClusterRequests, "", "cluster", "app", "status_class", "2xx").Value(); got != n {
		t.Fatalf("upstream 2xx counter %v, want %d", got, n)
	}
	for _, b := range []*backend{fast, slow} {
		if got, want := hist(reg, stats.ClusterConnectDuration, "cluster", "app", "host", b.addr()).Count, uint64(b.conns.Load()); got != want || got == 0 {
			t.Fatalf("connect time of %s counts %d, the host accepted %d connections", b.addr(), got, want)
		}
	}
	if got, want := reg.Gauge(stats.ClusterCxActive, "", "cluster", "app").Value(), float64(fast.conns.Load()+slow.conns.Load()); got != want {
		t.Fatalf("open upstream connections %v, want the %v pooled", got, want)
	}

	// A response head that does not come within the route's timeout.
	getStatus(t, c, "http://"+e.addr+"/stuck", 504)
	// No host connects.
	getStatus(t, c, "http://"+e.addr+"/dead", 502)
	getStatus(t, c, "http://"+e.addr+"/direct", 418)
	waitFor(t, "the error requests to be observed", func() bool {
		return down("stuck", "5xx").Count == 1 && down("dead", "5xx").Count == 1 && down(stats.NoCluster, "4xx").Count == 1
	})
	if got := reg.Counter(stats.ClusterRequestTimeouts, "", "cluster", "stuck").Value(); got != 1 {
		t.Fatalf("timeouts %v, want 1", got)
	}
	if h := up("stuck", stuck.addr()); h.Count != 1 || atMost(t, h, 0.025) != 0 {
		t.Fatalf("timed-out upstream request: %+v, want one observation of at least the 50 ms timeout", h)
	}
	if h := up("dead", dead); h.Count != 0 {
		t.Fatalf("a request never sent was timed: %+v", h)
	}
	for _, cl := range []string{"stuck", "dead"} {
		if got := reg.Counter(stats.ClusterRequests, "", "cluster", cl, "status_class", "5xx").Value(); got != 1 {
			t.Fatalf("cluster %s: upstream 5xx %v, want 1", cl, got)
		}
	}
	if got := reg.Counter(stats.ClusterCxConnectFail, "", "cluster", "dead").Value(); got != 1+defaultRetries {
		t.Fatalf("connect failures %v, want %d (one request, retried on connect failure as MOSN)", got, 1+defaultRetries)
	}
	for _, g := range []struct{ name, k, v string }{
		{stats.HTTPRequestsActive, "listener", "web"},
		{stats.ClusterRequestsActive, "cluster", "app"},
		{stats.ClusterRequestsActive, "cluster", "stuck"},
		{stats.ClusterRequestsActive, "cluster", "dead"},
	} {
		if v := reg.Gauge(g.name, "", g.k, g.v).Value(); v != 0 {
			t.Fatalf("%s{%s=%s} = %v with nothing in flight", g.name, g.k, g.v, v)
		}
	}
	if v := reg.Gauge(stats.ClusterCxActive, "", "cluster", "stuck").Value(); v != 0 {
		t.Fatalf("the timed-out upstream connection still counts as open: %v", v)
	}
}

// The in-flight gauges count a request while it is being served, and the
// upstream one until the upstream's answer has been read.
func TestHTTPActiveRequests(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(b.addr()))
	done := make(chan error, 1)
	go func() {
		resp, err := e.client().Get("http://" + e.addr + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	<-arrived
	down := e.reg.Gauge(stats.HTTPRequestsActive, "", "listener", "web")
	up := e.reg.Gauge(stats.ClusterRequestsActive, "", "cluster", "app")
	if down.Value() != 1 || up.Value() != 1 {
		t.Fatalf("with one request at the backend: downstream active %v, upstream active %v; want 1, 1", down.Value(), up.Value())
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request to end", func() bool { return down.Value() == 0 && up.Value() == 0 })
}

// A request whose client goes away in the middle of its body, before any
// answer, is counted nowhere, and leaves no gauge up.
func TestHTTPAbandonedRequestIsNotCounted(t *testing.T) {
	arrived := make(chan struct{}, 1)
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		if _, err := io.ReadAll(r.Body); err == nil {
			io.WriteString(w, "whole body?")
		}
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(b.addr()))
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	<-arrived
	conn.Close()
	down := e.reg.Gauge(stats.HTTPRequestsActive, "", "listener", "web")
	waitFor(t, "the abandoned request to end", func() bool { return down.Value() == 0 })
	for _, class := range []string{"2xx", "4xx", "5xx"} {
		if v := e.reg.Counter(stats.ClusterRequests, "", "cluster", "app", "status_class", class).Value(); v != 0 {
			t.Fatalf("upstream %s counted %v", class, v)
		}
		if v := e.requests("app", class); v != 0 {
			t.Fatalf("downstream %s counted %v", class, v)
		}
	}
	if v := e.reg.Gauge(stats.ClusterRequestsActive, "", "cluster", "app").Value(); v != 0 {
		t.Fatalf("upstream active %v", v)
	}
	waitFor(t, "the upstream connection to close", func() bool {
		return e.reg.Gauge(stats.ClusterCxActive, "", "cluster", "app").Value() == 0
	})
}

// The proxy records into the handles it is given.
func TestHTTPUsesTheMetricsItIsGiven(t *testing.T) {
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	own, given := stats.New(), stats.New()
	m := newManager(t, own, appCluster(b.addr()))
	clusters, err := RouteClusters(singleRoute(0))
	if err != nil || len(clusters) != 1 || clusters[0] != "app" {
		t.Fatalf("RouteClusters: %v %v", clusters, err)
	}
	p, err := newHTTP(httpListener(config.HTTPProxyConfig{}), singleRoute(0), m, own, quietLog(),
		WithHTTPMetrics(stats.NewHTTPListenerMetrics(given, "web", clusters)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, p)
	getStatus(t, (&httpEnv{}).client(), "http://"+addr+"/", 200)
	count := func(r *stats.Registry) float64 {
		return r.Counter(stats.HTTPRequests, "", "listener", "web", "cluster", "app", "status_class", "2xx").Value()
	}
	if count(given) != 1 || count(own) != 0 {
		t.Fatalf("counted %v in the given series, %v in the registry's own; want 1, 0", count(given), count(own))
	}
}
