package proxy

import (
	"bufio"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/conntrack"
)

// keepAliveBurst dials e and sends requests back to back on one connection
// for at least d (and at least 3), so that the idle waits between them
// keep the read deadline the first one armed for its handoff (armIdle).
func keepAliveBurst(t *testing.T, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	buf := make([]byte, 4<<10)
	start := time.Now()
	for n := 0; n < 3 || time.Since(start) < d; n++ {
		benchRoundTrip(t, c, buf)
	}
	return c
}

// startEndRecorder starts a proxy to rawBackend with the given handoff;
// lastEnd is the end of the last request it served (the start of the idle
// wait after it).
func startEndRecorder(t *testing.T, handoff time.Duration, cfg config.HTTPProxyConfig) (e *httpEnv, lastEnd func() time.Time) {
	var mu sync.Mutex
	var end time.Time
	e = startTunedHTTP(t, func(p *httpProxy) {
		p.handoff = handoff
		p.observers = append(p.observers, func(info *RequestInfo) {
			mu.Lock()
			end = info.Start.Add(info.Duration)
			mu.Unlock()
		})
	}, cfg, singleRoute(0), appCluster(rawBackend(t)))
	return e, func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return end
	}
}

// A connection whose idle waits kept an earlier wait's handoff deadline
// still goes to the idle poller no earlier than the handoff after its last
// answer: the kept deadline wakes its wait early, which arms the exact one.
func TestIdleWaitKeptDeadlineNeverHandsOffEarly(t *testing.T) {
	const handoff = 100 * time.Millisecond
	e, lastEnd := startEndRecorder(t, handoff, config.HTTPProxyConfig{IdleTimeout: config.Duration{Duration: 10 * time.Second}})
	// Back to back for 40 ms: the waits after the first keep its deadline,
	// which is thus up to 40 ms before the last wait's handoff.
	keepAliveBurst(t, e.addr, 40*time.Millisecond)
	waitFor(t, "the connection to park", func() bool { return e.p.idle.idleCount() == 1 })
	if idle := time.Since(lastEnd()); idle < handoff {
		t.Fatalf("handed off to the poller %v after its last answer, handoff %v", idle, handoff)
	}
}

// A drain and a migration still wake a wait whose deadline was kept: the
// connection closes after the drain grace, long before the kept deadline.
func TestIdleWaitKeptDeadlineStillWakesForDrainAndMove(t *testing.T) {
	const handoff = 20 * time.Second // the kept deadline: far off
	for _, how := range []string{"drain", "migrate"} {
		t.Run(how, func(t *testing.T) {
			e := startTunedHTTP(t, func(p *httpProxy) { p.handoff = handoff },
				config.HTTPProxyConfig{IdleTimeout: config.Duration{Duration: time.Minute}}, singleRoute(0), appCluster(rawBackend(t)))
			c := keepAliveBurst(t, e.addr, 20*time.Millisecond)
			waitFor(t, "the connection to wait idle", func() bool { return e.p.tracker.Count(conntrack.Idle) == 1 })
			woken := time.Now()
			if how == "drain" {
				e.p.Drain()
			} else {
				parked := make(chan *Parked, 1)
				e.p.Migrate(func(p *Parked) { parked <- p })
				select {
				case p := <-parked:
					p.Resume() // not taken: it stays, and drains
				case <-time.After(handoff / 4):
					t.Fatal("the idle connection was not woken to move")
				}
			}
			expectEOF(t, bufio.NewReader(c))
			if d := time.Since(woken); d > handoff/4 {
				t.Fatalf("closed %v after the %s: the wait was not woken", d, how)
			}
		})
	}
}

// A read deadline set between two idle waits (a head that came in two
// parts waits under the header timeout) is not taken for the one the
// first wait armed: the next wait arms its handoff again, which then comes
// on time, not at the header timeout.
func TestIdleWaitArmsAgainAfterAHeadRead(t *testing.T) {
	const handoff = 100 * time.Millisecond
	e, lastEnd := startEndRecorder(t, handoff, config.HTTPProxyConfig{IdleTimeout: config.Duration{Duration: time.Minute},
		RequestHeaderTimeout: config.Duration{Duration: 30 * time.Second}})
	c := keepAliveBurst(t, e.addr, 0)
	buf := make([]byte, 4<<10)
	half := len(benchRequest) / 2
	if _, err := c.Write(benchRequest[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the proxy reads the first part and waits for the rest
	if _, err := c.Write(benchRequest[half:]); err != nil {
		t.Fatal(err)
	}
	benchReadAnswer(t, c, buf)
	waitFor(t, "the connection to park", func() bool { return e.p.idle.idleCount() == 1 })
	if idle := time.Since(lastEnd()); idle > 5*time.Second {
		t.Fatalf("handed off %v after its last answer, handoff %v: the wait kept the head's deadline", idle, handoff)
	}
}
