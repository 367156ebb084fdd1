package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2/hpack"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy/h2"
)

// BenchmarkH2CToHTTP1 measures the cost of one h2c stream proxied to an
// HTTP/1.1 backend (the h2c row of mosnlite-bench): a bodyless GET,
// answered by the backend with fixed bytes (benchResponse) on a pooled
// connection. The client is our own h2 client, which allocates little, so
// that allocs/op is mostly the proxy's (the client's share: about 14
// allocations a stream, its frame reads and its stream). serial is one
// stream after another on one connection; parallel runs GOMAXPROCS×4
// streams at once over 4 connections, as mosnlite-bench's load does.
//
//	go test -run '^$' -bench H2CToHTTP1 -benchmem -count 6 ./server/proxy/
func BenchmarkH2CToHTTP1(b *testing.B) {
	p, _ := benchProxyWith(b, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1},
		rawBackend(b))
	addr := benchServe(b, p)
	dial := func() *h2.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c, err := h2.NewClient(nc, h2.Config{StreamWindow: 1 << 20, ConnWindow: 1 << 24, MaxHeaderListSize: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		benchH2Stream(b, c, make([]byte, 4<<10)) // warms the upstream pool
		return c
	}
	b.Run("serial", func(b *testing.B) {
		c := dial()
		buf := make([]byte, 4<<10)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU(b)
		for range b.N {
			benchH2Stream(b, c, buf)
		}
		reportCPU(b, cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		var conns [4]*h2.Conn
		for i := range conns {
			conns[i] = dial()
		}
		var next atomic.Int32
		b.SetParallelism(4)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU(b)
		defer reportCPU(b, cpu)
		b.RunParallel(func(pb *testing.PB) {
			c := conns[int(next.Add(1))%len(conns)]
			buf := make([]byte, 4<<10)
			for pb.Next() {
				benchH2Stream(b, c, buf)
			}
		})
	})
}

var benchH2Request = []hpack.HeaderField{
	{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
	{Name: ":authority", Value: "bench"}, {Name: ":path", Value: "/bench"},
	{Name: "user-agent", Value: "bench"},
}

// benchH2Stream sends the benchmark's request on c and reads its answer.
func benchH2Stream(b testing.TB, c *h2.Conn, buf []byte) {
	if !c.Reserve() {
		b.Fatal("the proxy's connection takes no stream")
	}
	st, err := c.OpenStream(benchH2Request, true, false)
	if err != nil {
		b.Fatal(err)
	}
	head, err := st.ReadHeader()
	if err != nil {
		b.Fatal(err)
	}
	if s := fieldValue(head, ":status"); s != "200" {
		b.Fatalf("status %q", s)
	}
	n := 0
	for {
		m, err := st.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if string(buf[:n]) != "ok" {
		b.Fatalf("body %q", buf[:n])
	}
}
