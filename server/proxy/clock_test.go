package proxy

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

// countingClock is the time package's clock, counting its reads.
type countingClock struct{ reads atomic.Int64 }

func (c *countingClock) Now() time.Time {
	c.reads.Add(1)
	return time.Now()
}

func (c *countingClock) Since(t time.Time) time.Duration {
	c.reads.Add(1)
	return time.Since(t)
}

// A keep-alive request proxied over a pooled upstream connection reads the
// clock four times (its start, its dispatch, the response head, the
// answer's end: clock.go), and every time its access log and metrics expose
// is still measured: none is zero, and they come in order.
func TestHTTPKeepAliveRequestReadsTheClockFourTimes(t *testing.T) {
	clk := &countingClock{}
	infos := make(chan RequestInfo, 64)
	e := startTunedHTTP(t, func(p *httpProxy) {
		p.clock = clk
		// No wait may reach the handoff to the idle poller, however slow
		// the machine: its wake-up reads the clock again. The answer's
		// tail still goes out from the next wait (idle timeout > handoff).
		p.handoff = time.Hour
		p.observers = append(p.observers, func(info *RequestInfo) {
			cp := *info
			cp.Request, cp.resp, cp.route = nil, nil, nil // their slices are not ours after the call
			infos <- cp
		})
	}, config.HTTPProxyConfig{IdleTimeout: config.Duration{Duration: 2 * time.Hour}}, singleRoute(0), appCluster(rawBackend(t)))
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4<<10)
	const warm, n = 3, 40
	for range warm { // the first one connects upstream
		benchRoundTrip(t, c, buf)
		<-infos
	}
	before := clk.reads.Load()
	for i := range n {
		benchRoundTrip(t, c, buf)
		info := <-infos
		if info.Status != 200 || info.Start.IsZero() || info.RequestSent <= 0 ||
			info.ResponseReceived <= info.RequestSent || info.Duration <= info.ResponseReceived ||
			info.UpstreamResponse <= 0 || info.UpstreamResponse > info.ResponseReceived || info.UpstreamConnect != 0 {
			t.Fatalf("request %d: times %+v", i, info)
		}
	}
	// The last request's end was read; its successor's start not yet.
	if got := clk.reads.Load() - before; got != 4*n {
		t.Errorf("%d clock reads for %d requests, want %d", got, n, 4*n)
	}
}

// The reading of an answer's end is not reused once a write to the client
// waited after it: the request's duration covers the wait.
func TestHTTPRequestEndIsReadAgainAfterAWaitingWrite(t *testing.T) {
	clk := &countingClock{}
	var got RequestInfo
	e := startTunedHTTP(t, func(p *httpProxy) {
		p.clock = clk
		p.observers = append(p.observers, func(info *RequestInfo) { got = *info })
	}, config.HTTPProxyConfig{}, singleRoute(0), appCluster(closedAddr(t)))
	client, server := net.Pipe() // no raw I/O: every write waits for its reader
	defer client.Close()
	defer server.Close()
	c := &httpConn{p: e.p, nc: server, rawless: true}
	x := e.p.getExchange()
	x.clk = clk
	x.info.Start = clk.Now()
	e.p.metrics.Active().Inc()                  // as serveRequest does
	c.idleSince, c.endKnown = x.reading(), true // as releaseUpstream does

	const slow = 30 * time.Millisecond
	read := make(chan error, 1)
	go func() {
		time.Sleep(slow) // a client slow to read
		_, err := client.Read(make([]byte, 16))
		read <- err
	}()
	if err := c.write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	reads := clk.reads.Load()
	c.endRequest(x, false)
	if got.Duration < slow {
		t.Errorf("duration %v, want at least the %v the write waited", got.Duration, slow)
	}
	if clk.reads.Load() != reads+1 {
		t.Errorf("the end was not read again")
	}
	if !c.endKnown || !c.idleSince.Equal(got.Start.Add(got.Duration)) {
		t.Errorf("the idle wait does not count from the end read: %v, end %v", c.idleSince, got.Start.Add(got.Duration))
	}
}
