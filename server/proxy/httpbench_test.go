package proxy

import (
	"bytes"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/service/stats"
)

// The request and answer of the per-request benchmark: fixed bytes, so that
// neither the client nor the backend allocates and allocs/op is the proxy's.
var (
	benchRequest  = []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
	benchResponse = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
)

// BenchmarkHTTPRequest measures the engine's cost of one keep-alive request
// through the proxy (parse, route, pooled upstream exchange, response,
// metrics): ns/op and allocs/op, with a backend and clients that move fixed
// bytes and allocate nothing. serial is one connection, request after
// request; parallel runs GOMAXPROCS×4 connections at once.
//
//	go test -run '^$' -bench HTTPRequest -benchmem -count 6 ./server/proxy/
func BenchmarkHTTPRequest(b *testing.B) {
	p, _ := benchProxy(b, rawBackend(b))
	addr := benchServe(b, p)
	b.Run("serial", func(b *testing.B) {
		c := benchConn(b, addr)
		buf := make([]byte, 4<<10)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU(b)
		for range b.N {
			benchRoundTrip(b, c, buf)
		}
		reportCPU(b, cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(4)
		b.ReportAllocs()
		var mu sync.Mutex
		cpu := processCPU(b)
		defer reportCPU(b, cpu)
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			c := benchConn(b, addr)
			mu.Unlock()
			buf := make([]byte, 4<<10)
			for pb.Next() {
				benchRoundTrip(b, c, buf)
			}
		})
	})
}

// processCPU is the CPU time (user and system) the test process has used:
// proxy, clients and backend together, which is steadier on a shared
// machine than the wall time of a round trip.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per op since from.
func reportCPU(b *testing.B, from time.Duration) {
	b.ReportMetric(float64(processCPU(b)-from)/float64(b.N), "cpu-ns/op")
}

// benchProxy is an HTTP proxy (not serving yet) routing to cluster "app"
// of host, with a registry of its own.
func benchProxy(b *testing.B, host string) (*httpProxy, *cluster.Manager) {
	return benchProxyWith(b, config.HTTPProxyConfig{}, host)
}

// benchProxyWith is benchProxy with the filter's configuration cfg.
func benchProxyWith(b *testing.B, cfg config.HTTPProxyConfig, host string) (*httpProxy, *cluster.Manager) {
	reg := stats.New()
	clusters, err := cluster.NewManager([]config.Cluster{appCluster(host)}, reg, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(clusters.Close)
	p, err := newHTTP(httpListener(cfg), singleRoute(0), clusters, reg, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	return p, clusters
}

// benchServe serves p on a port of its own until the benchmark ends, and
// returns its address.
func benchServe(b *testing.B, p *httpProxy) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(l)
	b.Cleanup(func() {
		l.Close()
		p.CloseAll()
		p.Wait(waitBenchCtx(b))
	})
	return l.Addr().String()
}

// benchConn dials the proxy and warms the connection (and the upstream pool).
func benchConn(b *testing.B, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	benchRoundTrip(b, c, make([]byte, 4<<10))
	return c
}

// benchRoundTrip sends one request and reads its whole answer, which has
// the backend's fixed length plus what the proxy adds to the head.
func benchRoundTrip(b testing.TB, c net.Conn, buf []byte) {
	if _, err := c.Write(benchRequest); err != nil {
		b.Fatal(err)
	}
	benchReadAnswer(b, c, buf)
}

// benchReadAnswer reads one whole answer of the benchmark's backend.
func benchReadAnswer(b testing.TB, c net.Conn, buf []byte) {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if end := bytes.Index(buf[:n], []byte("\r\n\r\nok")); end >= 0 && n == end+6 {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// rawBackend answers every request of every connection with
// benchResponse, reading up to the end of each head (requests have no body).
func rawBackend(b testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	acceptEach(l, func(c net.Conn) {
		go func() {
			defer c.Close()
			buf := make([]byte, 4<<10)
			n := 0
			for {
				m, err := c.Read(buf[n:])
				n += m
				for {
					end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
					if end < 0 {
						break
					}
					if _, err := c.Write(benchResponse); err != nil {
						return
					}
					n = copy(buf, buf[end+4:n])
				}
				if err != nil {
					return
				}
			}
		}()
	})
	return l.Addr().String()
}

// BenchmarkRequestMetrics measures what the metrics add to one proxied
// request, by itself: the calls the engine makes from a request's start to
// its end (the active gauges, the answer's counter, the downstream and
// upstream histograms), on one series (serial) and from every core at once
// on the same series (parallel, the contended case).
//
//	go test -run '^$' -bench RequestMetrics -benchmem ./server/proxy/
func BenchmarkRequestMetrics(b *testing.B) {
	p, clusters := benchProxy(b, "127.0.0.1:1")
	cl := clusters.Get("app")
	host := cl.Hosts()[0]
	one := func(x *exchange) {
		p.metrics.Active().Inc()
		x.toUpstream(cl, true)
		x.info.Start = time.Now()
		x.upstreamSent(host, x.info.Start)
		p.answered(x, "app", 200)
		x.info.Status = 200
		x.upstreamDone()
		x.info.Duration = time.Millisecond
		p.observeRequest(x)
		x.series, x.upCl, x.upHost = nil, nil, nil
	}
	b.Run("serial", func(b *testing.B) {
		x := &exchange{clk: p.clock}
		b.ReportAllocs()
		for b.Loop() {
			one(x)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			x := &exchange{clk: p.clock}
			for pb.Next() {
				one(x)
			}
		})
	})
}
