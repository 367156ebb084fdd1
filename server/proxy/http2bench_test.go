package proxy

import (
	"io"
	"net"
	"testing"

	"golang.org/x/net/http2/hpack"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy/h2"
)

// BenchmarkH2CToHTTP1 measures the cost of one h2c stream proxied to an
// HTTP/1.1 backend (the h2c row of mosnlite-bench): a bodyless GET on one
// HTTP/2 connection, answered by the backend with fixed bytes
// (benchResponse) on a pooled connection. The client is our own h2 client,
// which allocates little, so that allocs/op is mostly the proxy's.
//
//	go test -run '^$' -bench H2CToHTTP1 -benchmem -count 6 ./server/proxy/
func BenchmarkH2CToHTTP1(b *testing.B) {
	p, _ := benchProxyWith(b, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1},
		rawBackend(b))
	addr := benchServe(b, p)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c, err := h2.NewClient(nc, h2.Config{StreamWindow: 1 << 20, ConnWindow: 1 << 24, MaxHeaderListSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "bench"}, {Name: ":path", Value: "/bench"},
		{Name: "user-agent", Value: "bench"},
	}
	buf := make([]byte, 4<<10)
	one := func() {
		for !c.Reserve() {
			b.Fatal("the proxy's connection takes no stream")
		}
		st, err := c.OpenStream(fields, true, false)
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
	one() // warms the upstream pool
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	for range b.N {
		one()
	}
	reportCPU(b, cpu)
}
