package test

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// sleepyBackend is an HTTP server that answers every request after
// sleeping, counting the requests it answered and the connections it
// accepted.
type sleepyBackend struct {
	ln    net.Listener
	hits  atomic.Int64
	conns atomic.Int64
}

func newSleepyBackend(t *testing.T, sleep time.Duration) *sleepyBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &sleepyBackend{ln: ln}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(sleep) // the latency the histograms must show
			b.hits.Add(1)
			io.WriteString(w, "slept")
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

func (b *sleepyBackend) addr() string { return b.ln.Addr().String() }

// histSeries is the one series of histogram family name whose labels
// include labels (k, v pairs), nil if there is none.
func histSeries(fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Histogram {
	for _, m := range fams[name].GetMetric() {
		if hasLabels(m, labels...) {
			return m.GetHistogram()
		}
	}
	return nil
}

// cumAt is how many of h's observations are at most bound (one of its bucket
// bounds; fails otherwise).
func cumAt(t *testing.T, h *dto.Histogram, bound float64) uint64 {
	t.Helper()
	for _, b := range h.GetBucket() {
		if math.Abs(b.GetUpperBound()-bound) < 1e-9 {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("no bucket le=%v in %v", bound, h)
	return 0
}

// TestLatencyHistogramsAfterKnownLatencyRequests: requests through a
// cluster whose hosts sleep 30 ms and 120 ms, and a TCP session held open
// for 300 ms, land where they must in the real binary's histograms: the
// downstream request histogram counts exactly the requests sent, none
// below 30 ms and at least as many above 100 ms as the slow host answered;
// each host's upstream response histogram counts exactly the requests it
// answered, none below its sleep; connect times count exactly the
// connections each host accepted; the session is in the (250 ms, 500 ms]
// bucket; nothing is left in flight.
func TestLatencyHistogramsAfterKnownLatencyRequests(t *testing.T) {
	fast, slow := newSleepyBackend(t, 30*time.Millisecond), newSleepyBackend(t, 120*time.Millisecond)
	echo := newEchoBackend(t)
	dir := t.TempDir()
	ps := freePorts(t, 5) // distinct: service ports and listeners
	p := ports{admin: ps[0], pprof: ps[1], metrics: ps[2]}
	web, db := addr(ps[3]), addr(ps[4])
	cfg := writeJSON(t, dir, "c.json", mosnConfig(filepath.Join(dir, "uds"), p, "5s",
		[]obj{httpListener("web", web, "r"), tcpListener("db", db, "echo")},
		[]obj{router("r", "app")},
		[]obj{cluster("app", fast.addr(), slow.addr()), cluster("echo", echo.addr())}))
	startMosn(t, "mosn", cfg, p)

	const requests = 12
	for i := 0; i < requests; i++ {
		if code, body := get(t, fmt.Sprintf("http://%s/r%d", web, i)); code != 200 || body != "slept" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	c, err := net.DialTimeout("tcp", db, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil { // the session is up
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the session's known length
	c.Close()

	// Both are observed at their ends, after the last byte: wait for them.
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(15 * time.Second)
	for {
		fams = scrape(t, p.metricsURL())
		d := histSeries(fams, "mosnlite_http_downstream_rq_duration_seconds", "listener", "web", "cluster", "app", "status_class", "2xx")
		s := histSeries(fams, "mosnlite_tcp_session_duration_seconds", "listener", "db", "cluster", "echo")
		if d.GetSampleCount() >= requests && s.GetSampleCount() >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d requests and a session: downstream %d, sessions %d observations", requests, d.GetSampleCount(), s.GetSampleCount())
		}
		time.Sleep(20 * time.Millisecond)
	}

	fastHits, slowHits := uint64(fast.hits.Load()), uint64(slow.hits.Load())
	if fastHits+slowHits != requests || fastHits == 0 || slowHits == 0 {
		t.Fatalf("the hosts answered %d and %d of %d requests", fastHits, slowHits, requests)
	}
	down := histSeries(fams, "mosnlite_http_downstream_rq_duration_seconds", "listener", "web", "cluster", "app", "status_class", "2xx")
	if n := down.GetSampleCount(); n != requests {
		t.Errorf("downstream histogram counts %d, want the %d requests sent", n, requests)
	}
	if n := cumAt(t, down, 0.025); n != 0 {
		t.Errorf("%d downstream requests took at most 25 ms; every one slept 30 ms or more", n)
	}
	if above := down.GetSampleCount() - cumAt(t, down, 0.1); above < slowHits {
		t.Errorf("%d downstream requests above 100 ms, want at least the %d the 120 ms host answered", above, slowHits)
	}
	for _, h := range []struct {
		b     *sleepyBackend
		hits  uint64
		floor float64 // a bucket bound below the host's sleep
	}{{fast, fastHits, 0.025}, {slow, slowHits, 0.1}} {
		up := histSeries(fams, "mosnlite_cluster_upstream_rq_duration_seconds", "cluster", "app", "host", h.b.addr())
		if up.GetSampleCount() != h.hits {
			t.Errorf("host %s: upstream histogram counts %d, the host answered %d", h.b.addr(), up.GetSampleCount(), h.hits)
		}
		if n := cumAt(t, up, h.floor); n != 0 {
			t.Errorf("host %s: %d upstream times at most %v s, below its sleep", h.b.addr(), n, h.floor)
		}
		connect := histSeries(fams, "mosnlite_cluster_upstream_cx_connect_duration_seconds", "cluster", "app", "host", h.b.addr())
		if got, want := connect.GetSampleCount(), uint64(h.b.conns.Load()); got != want || got == 0 {
			t.Errorf("host %s: connect histogram counts %d, the host accepted %d connections", h.b.addr(), got, want)
		}
	}
	if got := value(t, fams, "mosnlite_cluster_upstream_rq_total", "cluster", "app", "status_class", "2xx"); got != requests {
		t.Errorf("upstream 2xx requests %v, want %d", got, requests)
	}
	session := histSeries(fams, "mosnlite_tcp_session_duration_seconds", "listener", "db", "cluster", "echo")
	if session.GetSampleCount() != 1 || cumAt(t, session, 0.25) != 0 || cumAt(t, session, 0.5) != 1 {
		t.Errorf("TCP session histogram %v, want its one session in (0.25, 0.5]", session)
	}
	if n := histSeries(fams, "mosnlite_cluster_upstream_cx_connect_duration_seconds", "cluster", "echo", "host", echo.addr()).GetSampleCount(); n != 1 {
		t.Errorf("TCP upstream connects timed %d times, want 1", n)
	}
	for _, g := range [][]string{
		{"mosnlite_http_downstream_rq_active", "listener", "web"},
		{"mosnlite_cluster_upstream_rq_active", "cluster", "app"},
	} {
		if v := value(t, fams, g[0], g[1:]...); v != 0 {
			t.Errorf("%s%v = %v with nothing in flight", g[0], g[1:], v)
		}
	}
	if got, want := value(t, fams, "mosnlite_cluster_upstream_cx_active", "cluster", "app"), float64(fast.conns.Load()+slow.conns.Load()); got != want {
		t.Errorf("open upstream connections %v, want the %v the hosts accepted (pooled)", got, want)
	}
}

// TestMovedTCPSessionTimedFromItsAccept: a TCP session accepted by one
// generation, moved to the next by an upgrade and closed there is observed
// once, by the generation that ends it, and timed from its first accept
// (the migration carries it): held 1.2 s before the upgrade, it is above
// the 1 s bound, though it lived in its second process a moment only.
func TestMovedTCPSessionTimedFromItsAccept(t *testing.T) {
	e := newObsEnv(t, "")
	gen1 := startMosn(t, "gen1", e.cfg, e.p)
	c, err := net.DialTimeout("tcp", addr(e.tcpPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	roundTrip := func(b string) {
		t.Helper()
		if _, err := c.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, len(b))); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip("accepted")
	time.Sleep(1200 * time.Millisecond) // its age when the upgrade comes
	e.upgrade(t, gen1, 2)
	roundTrip("moved")
	c.Close()
	series := []string{"listener", "db", "cluster", "echo"}
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(15 * time.Second)
	for {
		fams = scrape(t, e.p.metricsURL())
		if histSeries(fams, "mosnlite_tcp_session_duration_seconds", series...).GetSampleCount() > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := value(t, fams, "mosnlite_server_connections_migrated_total", "listener", "db", "kind", "tcp"); got != 1 {
		t.Fatalf("sessions moved by the upgrade: %v, want 1", got)
	}
	h := histSeries(fams, "mosnlite_tcp_session_duration_seconds", series...)
	if h.GetSampleCount() != 1 || cumAt(t, h, 1) != 0 {
		t.Errorf("session histogram %v, want one observation above 1 s, counted once", h)
	}
}
