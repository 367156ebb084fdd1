package test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rawCodec carries gRPC messages as the bytes they are: the tests need no
// generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "raw" }

// The test service, /test.Echo/…: Unary echoes (and fails with the code a
// "fail:N" message names, or sleeps for "sleep:DURATION"); Bidi echoes
// each message; Server sends the request's first byte as many times as it
// says; Client answers the count of messages it got. Every answer carries
// a trailer "x-calls".
const echoService = "test.Echo"

func grpcBackend(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: echoService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-calls", "1"))
			s := string(in)
			var code int
			if n, _ := fmt.Sscanf(s, "fail:%d", &code); n == 1 {
				return nil, status.Error(codes.Code(code), "failed as asked: "+s)
			}
			if len(s) > 6 && s[:6] == "sleep:" {
				d, _ := time.ParseDuration(s[6:])
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return &in, nil
		}}},
		Streams: []grpc.StreamDesc{
			{StreamName: "Bidi", ServerStreams: true, ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				n := 0
				for {
					var m []byte
					if err := ss.RecvMsg(&m); err == io.EOF {
						ss.SetTrailer(metadata.Pairs("x-calls", strconv.Itoa(n)))
						return nil
					} else if err != nil {
						return err
					}
					n++
					if err := ss.SendMsg(&m); err != nil {
						return err
					}
				}
			}},
			{StreamName: "Server", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				var m []byte
				if err := ss.RecvMsg(&m); err != nil {
					return err
				}
				for i := 0; i < int(m[0]); i++ {
					out := []byte{byte(i)}
					if err := ss.SendMsg(&out); err != nil {
						return err
					}
				}
				ss.SetTrailer(metadata.Pairs("x-calls", strconv.Itoa(int(m[0]))))
				return nil
			}},
			{StreamName: "Client", ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				n := 0
				for {
					var m []byte
					if err := ss.RecvMsg(&m); err == io.EOF {
						out := []byte(strconv.Itoa(n))
						ss.SetTrailer(metadata.Pairs("x-calls", strconv.Itoa(n)))
						return ss.SendMsg(&out)
					} else if err != nil {
						return err
					}
					n++
				}
			}},
		},
	}, struct{}{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func grpcDial(t testing.TB, target string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// h2Listener is an HTTP listener whose proxy filter speaks the given
// protocols.
func h2Listener(name, address, router, down, up string) obj {
	cfg := obj{"router_config_name": router, "downstream_protocol": down}
	if up != "" {
		cfg["upstream_protocol"] = up
	}
	return obj{"name": name, "address": address, "filter_chains": []obj{{"filters": []obj{{
		"type": "proxy", "config": cfg}}}}}
}

func routerTimeout(name, cluster, timeout string) obj {
	return obj{"router_config_name": name, "virtual_hosts": []obj{{"name": "all", "domains": []string{"*"}, "routers": []obj{
		{"match": obj{"prefix": "/"}, "route": obj{"cluster_name": cluster, "timeout": timeout}}}}}}
}

func h2cGoClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}, Timeout: 10 * time.Second}
}

// TestGRPCThroughProxy: gRPC's four kinds of calls through mosnlite over
// h2c both ways, with trailers, error statuses and deadlines.
func TestGRPCThroughProxy(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	port := freePort(t)
	cfg := mosnConfig(filepath.Join(dir, "uds"), p, "5s",
		[]obj{h2Listener("grpc", addr(port), "r", "Http2", "")},
		[]obj{routerTimeout("r", "grpc", "1s")},
		[]obj{cluster("grpc", grpcBackend(t))})
	startMosn(t, "mosn", writeJSON(t, dir, "c.json", cfg), p)
	cc := grpcDial(t, addr(port))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Unary, with its trailer.
	in, out := []byte("hello"), []byte(nil)
	var tr metadata.MD
	if err := cc.Invoke(ctx, "/test.Echo/Unary", &in, &out, grpc.Trailer(&tr)); err != nil || string(out) != "hello" {
		t.Fatalf("unary: %q %v", out, err)
	}
	if got := tr.Get("x-calls"); len(got) != 1 || got[0] != "1" {
		t.Fatalf("unary trailer: %v", tr)
	}
	// An error status and message relayed (grpc-status, grpc-message).
	in = []byte("fail:5")
	err := cc.Invoke(ctx, "/test.Echo/Unary", &in, &out)
	if s, _ := status.FromError(err); s.Code() != codes.NotFound || s.Message() != "failed as asked: fail:5" {
		t.Fatalf("error status: %v", err)
	}
	// The client's deadline (grpc-timeout) ends the call; so does the
	// route's timeout, for a call with a longer deadline.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	in = []byte("sleep:3s")
	err = cc.Invoke(short, "/test.Echo/Unary", &in, &out)
	cancelShort()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call past its deadline: %v", err)
	}
	start := time.Now()
	err = cc.Invoke(ctx, "/test.Echo/Unary", &in, &out)
	if c := status.Code(err); c != codes.DeadlineExceeded || time.Since(start) > 2500*time.Millisecond {
		t.Fatalf("call past the route timeout of 1s: %v after %v, want DeadlineExceeded at about 1s", err, time.Since(start))
	}

	// Bidirectional: each message echoed before the next is sent.
	bs, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/test.Echo/Bidi")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		m := []byte(fmt.Sprintf("message %d", i))
		if err := bs.SendMsg(&m); err != nil {
			t.Fatalf("bidi send %d: %v", i, err)
		}
		var got []byte
		if err := bs.RecvMsg(&got); err != nil || string(got) != string(m) {
			t.Fatalf("bidi %d: %q %v", i, got, err)
		}
	}
	if err := bs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var last []byte
	if err := bs.RecvMsg(&last); err != io.EOF {
		t.Fatalf("bidi end: %v", err)
	}
	if got := bs.Trailer().Get("x-calls"); len(got) != 1 || got[0] != "50" {
		t.Fatalf("bidi trailer: %v", bs.Trailer())
	}

	// Server streaming.
	ss, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/test.Echo/Server")
	if err != nil {
		t.Fatal(err)
	}
	n := []byte{200}
	if err := ss.SendMsg(&n); err != nil {
		t.Fatal(err)
	}
	_ = ss.CloseSend()
	for i := 0; ; i++ {
		var m []byte
		err := ss.RecvMsg(&m)
		if err == io.EOF {
			if i != 200 {
				t.Fatalf("server streaming: %d messages, want 200", i)
			}
			break
		}
		if err != nil || len(m) != 1 || m[0] != byte(i) {
			t.Fatalf("server streaming message %d: %v %v", i, m, err)
		}
	}

	// Client streaming.
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, "/test.Echo/Client")
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		m := make([]byte, 1000)
		if err := cs.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
	}
	_ = cs.CloseSend()
	var count []byte
	if err := cs.RecvMsg(&count); err != nil || string(count) != "300" {
		t.Fatalf("client streaming: %q %v", count, err)
	}
}

// grpcUnaryLoad is a load worker making unary calls, each checked, on the
// connection dial gives it.
func grpcUnaryLoad(dial func() *grpc.ClientConn) func(stop <-chan struct{}, tl *tally, w int) {
	return func(stop <-chan struct{}, tl *tally, w int) {
		cc := dial()
		for n := 0; !stopped(stop); n++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			in, out := []byte(fmt.Sprintf("w%d n%d", w, n)), []byte(nil)
			err := cc.Invoke(ctx, "/test.Echo/Unary", &in, &out)
			cancel()
			if err != nil || string(out) != string(in) {
				tl.fail("unary %d: %q %v", n, out, err)
				continue
			}
			tl.ok.Add(1)
		}
	}
}

// TestHTTP2LoadAcrossUpgrades: unary gRPC calls and h2c requests from Go
// clients run while mosnlite is upgraded 10 times; every call and request
// succeeds, and a bidirectional stream open across one upgrade runs to its
// end on the old process (GOAWAY lets it finish).
func TestHTTP2LoadAcrossUpgrades(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	ps := freePorts(t, 2)
	grpcAddr, h2cAddr := addr(ps[0]), addr(ps[1])
	grpcUp := grpcBackend(t)
	web := newHTTPBackend(t, "web")
	config := func(i int) string {
		cfg := mosnConfig(filepath.Join(dir, "uds"), p, "10s",
			[]obj{h2Listener("grpc", grpcAddr, "g", "Http2", "Http2"), h2Listener("h2c", h2cAddr, "w", "Auto", "Http1")},
			[]obj{router("g", "grpc"), router("w", "web")},
			[]obj{cluster("grpc", grpcUp), cluster("web", web.addr())})
		cfg["handoff_timeout"] = "5s"
		return writeJSON(t, dir, fmt.Sprintf("c%d.json", i), cfg)
	}
	cur := startMosn(t, "gen1", config(1), p)

	l := newLoad()
	defer l.finish()
	l.run("grpc unary", 4, grpcUnaryLoad(func() *grpc.ClientConn { return grpcDial(t, grpcAddr) }))
	l.run("h2c requests", 4, func(stop <-chan struct{}, tl *tally, w int) {
		cl := h2cGoClient()
		for n := 0; !stopped(stop); n++ {
			resp, err := cl.Get(fmt.Sprintf("http://%s/?w=%d&n=%d", h2cAddr, w, n))
			if err != nil {
				tl.fail("h2c %d: %v", n, err)
				continue
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				tl.fail("h2c %d: %s %d %v", n, resp.Proto, resp.StatusCode, err)
				continue
			}
			tl.ok.Add(1)
		}
	})

	// A bidirectional stream that is open across the first upgrade.
	cc := grpcDial(t, grpcAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bs, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/test.Echo/Bidi")
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(i int) {
		t.Helper()
		m := []byte(strconv.Itoa(i))
		if err := bs.SendMsg(&m); err != nil {
			t.Fatalf("long stream, message %d: %v", i, err)
		}
		var got []byte
		if err := bs.RecvMsg(&got); err != nil || string(got) != string(m) {
			t.Fatalf("long stream, message %d: %q %v", i, got, err)
		}
	}
	exchange(0)

	for i := 2; i <= 11; i++ {
		next := startProc(t, fmt.Sprintf("gen%d", i), "start", "-c", config(i))
		waitReady(next, i)
		if i == 2 {
			// The old process still carries the stream: it goes on.
			for k := 1; k <= 5; k++ {
				exchange(k)
			}
			_ = bs.CloseSend()
			var last []byte
			if err := bs.RecvMsg(&last); !errors.Is(err, io.EOF) {
				t.Fatalf("long stream end: %v", err)
			}
			if got := bs.Trailer().Get("x-calls"); len(got) != 1 || got[0] != "6" {
				t.Fatalf("long stream trailer: %v", bs.Trailer())
			}
		}
		if code := cur.wait(15 * time.Second); code != 0 {
			t.Fatalf("generation %d exited %d after handing off", i-1, code)
		}
		cur = next
	}
	time.Sleep(100 * time.Millisecond) // a little load on the last generation
	l.finish()
	t.Logf("load:\n%s", l.report())
	for _, name := range l.order {
		tl := l.byName[name]
		if tl.failed.Load() != 0 || tl.ok.Load() == 0 {
			t.Errorf("%s: %s", name, tl)
		}
	}
}
