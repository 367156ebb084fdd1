package proxy

import (
	"io"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

func sessionTimes(reg *stats.Registry) histsample.Histogram {
	return reg.Histogram(stats.TCPSessionDuration, "", stats.SessionBuckets(), "listener", "tcp-l", "cluster", "echo").Snapshot()
}

// A session held open for 150 ms after its first round trip is observed
// once, at its close, in the (100 ms, 250 ms] bucket; its upstream connect
// is timed and its upstream connection counts as open while it lasts.
func TestTCPSessionDurationObservedAtClose(t *testing.T) {
	echo := startEcho(t)
	reg := stats.New()
	_, addr := startTCP(t, reg, 0, echo.addr)
	began := time.Now()
	c := dial(t, addr)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	open := reg.Gauge(stats.ClusterCxActive, "", "cluster", "echo")
	if open.Value() != 1 {
		t.Fatalf("open upstream connections %v during the session", open.Value())
	}
	if n := hist(reg, stats.ClusterConnectDuration, "cluster", "echo", "host", echo.addr).Count; n != 1 {
		t.Fatalf("connect time observed %d times, want 1", n)
	}
	time.Sleep(150 * time.Millisecond) // the session's known length
	if h := sessionTimes(reg); h.Count != 0 {
		t.Fatalf("observed before the session ended: %+v", h)
	}
	c.CloseWrite()
	io.Copy(io.Discard, c)
	waitFor(t, "the session's end to be observed", func() bool { return sessionTimes(reg).Count > 0 })
	elapsed := time.Since(began).Seconds() // from before the dial to after the end: the most it can be
	h := sessionTimes(reg)
	if h.Count != 1 || atMost(t, h, 0.1) != 0 || h.Sum < 0.15 || h.Sum > elapsed {
		t.Fatalf("session histogram %v / %v (sum %v), want one observation of at least the 0.15 s held and at most the %.3f s the test saw",
			h.Bounds, h.Counts, h.Sum, elapsed)
	}
	waitFor(t, "the upstream connection to close", func() bool { return open.Value() == 0 })
}

// A session that moves is observed once, by the proxy where it ends, from
// its original accept; the old proxy observes nothing. The upstream
// connection counts as open in one process at a time.
func TestTCPMovedSessionObservedOnceWhereItEnds(t *testing.T) {
	be := startTCPBackend(t)
	regA, regB := stats.New(), stats.New()
	a, addr := startTCP(t, regA, 0, be.addr)
	b := newTCPProxy(t, regB, be.addr)
	c := dial(t, addr)
	up := be.accept(t)
	send(t, c, up, []byte("hello"))
	parks := make(chan *Parked, 1)
	a.Migrate(parkInto(parks))
	pk := awaitParked(t, parks)
	h := pk.Handover
	// As if it had been accepted 3 s ago: the successor measures from the
	// accept it is told of.
	h.StartedAt = h.StartedAt.Add(-3 * time.Second)
	held, err := b.Adopt(h)
	if err != nil {
		t.Fatal(err)
	}
	pk.Moved()
	held.Start()
	waitFor(t, "the old proxy to let go", func() bool { return a.Active() == 0 })
	openA := regA.Gauge(stats.ClusterCxActive, "", "cluster", "echo")
	openB := regB.Gauge(stats.ClusterCxActive, "", "cluster", "echo")
	waitFor(t, "the old proxy's upstream copy to close", func() bool { return openA.Value() == 0 })
	if openB.Value() != 1 {
		t.Fatalf("open upstream connections in the new proxy: %v, want 1", openB.Value())
	}
	send(t, c, up, []byte("still here"))
	c.Close()
	up.Close()
	waitFor(t, "the session's end to be observed", func() bool { return sessionTimes(regB).Count > 0 })
	if got := sessionTimes(regB); got.Count != 1 || atMost(t, got, 2.5) != 0 || atMost(t, got, 5) != 1 {
		t.Fatalf("new proxy's session histogram %v / %v (sum %v), want one observation in (2.5, 5]: from the original accept",
			got.Bounds, got.Counts, got.Sum)
	}
	if got := sessionTimes(regA); got.Count != 0 {
		t.Fatalf("the old proxy observed a session that moved: %+v", got)
	}
	waitFor(t, "the new proxy's upstream connection to close", func() bool { return openB.Value() == 0 })
}
