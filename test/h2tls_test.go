package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mosnlite/mosnlite/server/tlsconf/tlstest"
)

// HTTP/2 by TLS ALPN end to end: an HTTPS listener whose proxy filter
// speaks HTTP/2 (downstream_protocol Http2 or Auto) offers h2 before
// http/1.1; one that speaks Http1 does not offer h2.

// h2TLSGoClient is x/net's HTTP/2 client over TLS (it offers h2 only).
func h2TLSGoClient(pool *x509.CertPool, serverName string) *http.Client {
	return &http.Client{Transport: &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName},
	}, Timeout: 10 * time.Second}
}

// h1TLSGoClient is net/http's client with HTTP/2 off: no ALPN at all.
func h1TLSGoClient(pool *x509.CertPool, serverName string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: serverName},
		ForceAttemptHTTP2: false,
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
	}, Timeout: 10 * time.Second}
}

// grpcDialTLS is grpcDial over TLS (grpc-go's credentials: ALPN h2).
func grpcDialTLS(t testing.TB, target string, pool *x509.CertPool, serverName string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: serverName})),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// fetch GETs url and returns the response's protocol, status and body.
func fetch(cl *http.Client, url string) (string, int, string, error) {
	resp, err := cl.Get(url)
	if err != nil {
		return "", 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.Proto, resp.StatusCode, string(b), err
}

// h2TLSSetup is one CA and a certificate for www.example.test, written
// to dir.
func h2TLSSetup(t *testing.T, dir string) (ca *tlstest.CA, cert, key string) {
	ca = tlstest.NewCA(t, "h2 CA")
	leaf := ca.Issue(t, tlstest.Opts{CN: "www.example.test", DNS: []string{"www.example.test"}})
	cert, key = leaf.Write(t, dir, "www")
	return ca, cert, key
}

func TestH2ByALPNOnHTTPSListeners(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	ps := freePorts(t, 3)
	autoAddr, grpcAddr, h1Addr := addr(ps[0]), addr(ps[1]), addr(ps[2])
	ca, cert, key := h2TLSSetup(t, dir)
	web := newHTTPBackend(t, "web")
	logPath := filepath.Join(dir, "access.log")
	auto := withTLS(h2Listener("auto", autoAddr, "w", "Auto", "Http1"), tlsContext(cert, key, nil))
	auto["access_logs"] = []obj{{"log_path": logPath, "log_format": "%request_path% %protocol% %request_scheme%"}}
	cfg := mosnConfig(filepath.Join(dir, "uds"), p, "5s",
		[]obj{auto,
			withTLS(h2Listener("grpc", grpcAddr, "g", "Http2", "Http2"), tlsContext(cert, key, nil)),
			withTLS(h2Listener("h1", h1Addr, "w", "Http1", ""), tlsContext(cert, key, obj{"alpn": "h2,http/1.1"}))},
		[]obj{router("w", "web"), routerTimeout("g", "grpc", "5s")},
		[]obj{cluster("web", web.addr()), cluster("grpc", grpcBackend(t))})
	m := startMosn(t, "mosn", writeJSON(t, dir, "c.json", cfg), p)
	// The Http1 listener's alpn lists h2, which it does not speak: said at load.
	m.waitLog(`h2 not offered: this HTTP listener speaks http/1.1 only`, 10*time.Second)

	// Auto: HTTP/2 for a client that negotiates h2, HTTP/1.1 for one that
	// negotiates nothing, on the same port.
	proto, code, body, err := fetch(h2TLSGoClient(ca.Pool(), "www.example.test"), "https://"+autoAddr+"/h2")
	if err != nil || proto != "HTTP/2.0" || code != 200 || body != "web GET /h2 xff=127.0.0.1" {
		t.Fatalf("h2 client on the Auto listener: %s %d %q %v", proto, code, body, err)
	}
	proto, code, body, err = fetch(h1TLSGoClient(ca.Pool(), "www.example.test"), "https://"+autoAddr+"/h1")
	if err != nil || proto != "HTTP/1.1" || code != 200 || body != "web GET /h1 xff=127.0.0.1" {
		t.Fatalf("HTTP/1.1 client on the Auto listener: %s %d %q %v", proto, code, body, err)
	}
	// The access log says which protocol each request spoke.
	want := map[string]bool{"/h2 Http2 https": true, "/h1 Http1 https": true}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		got := 0
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if want[line] {
				got++
			}
		}
		if got == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log %q, want the lines %v", b, want)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// gRPC over TLS (ALPN h2), unary, to an h2c upstream.
	cc := grpcDialTLS(t, grpcAddr, ca.Pool(), "www.example.test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, out := []byte("over tls"), []byte(nil)
	if err := cc.Invoke(ctx, "/test.Echo/Unary", &in, &out); err != nil || string(out) != "over tls" {
		t.Fatalf("gRPC unary over TLS: %q %v", out, err)
	}

	// Http1: h2 is not offered (an h2-only client is refused), a client
	// offering both gets http/1.1.
	if _, _, _, err := fetch(h2TLSGoClient(ca.Pool(), "www.example.test"), "https://"+h1Addr+"/"); err == nil {
		t.Error("an h2-only client was served by the Http1 listener")
	}
	both := tlsClientConfig(ca.Pool(), "www.example.test")
	both.NextProtos = []string{"h2", "http/1.1"}
	code, body, st, err := httpsGet(h1Addr, "/x", both)
	if err != nil || code != 200 || st.NegotiatedProtocol != "http/1.1" || body != "web GET /x xff=127.0.0.1" {
		t.Errorf("h2,http/1.1 client on the Http1 listener: %d %q ALPN %q %v", code, body, st.NegotiatedProtocol, err)
	}
}

// TestH2OverTLSAcrossUpgrades: HTTP/2-over-TLS requests and gRPC-over-TLS
// calls run while mosnlite is upgraded 3 times. TLS connections do not
// migrate: the old process sends GOAWAY, finishes what is in flight, and
// the clients' next connections reach the new process. Nothing fails.
func TestH2OverTLSAcrossUpgrades(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	ps := freePorts(t, 2)
	webAddr, grpcAddr := addr(ps[0]), addr(ps[1])
	ca, cert, key := h2TLSSetup(t, dir)
	web := newHTTPBackend(t, "web")
	grpcUp := grpcBackend(t)
	config := func(i int) string {
		cfg := mosnConfig(filepath.Join(dir, "uds"), p, "10s",
			[]obj{withTLS(h2Listener("web", webAddr, "w", "Auto", "Http1"), tlsContext(cert, key, nil)),
				withTLS(h2Listener("grpc", grpcAddr, "g", "Http2", "Http2"), tlsContext(cert, key, nil))},
			[]obj{router("w", "web"), router("g", "grpc")},
			[]obj{cluster("web", web.addr()), cluster("grpc", grpcUp)})
		cfg["handoff_timeout"] = "5s"
		return writeJSON(t, dir, fmt.Sprintf("c%d.json", i), cfg)
	}
	cur := startMosn(t, "gen1", config(1), p)

	l := newLoad()
	defer l.finish()
	l.run("h2 over TLS", 4, func(stop <-chan struct{}, tl *tally, w int) {
		cl := h2TLSGoClient(ca.Pool(), "www.example.test")
		for n := 0; !stopped(stop); n++ {
			proto, code, body, err := fetch(cl, fmt.Sprintf("https://%s/w%d/%d", webAddr, w, n))
			if err != nil || proto != "HTTP/2.0" || code != 200 || body != fmt.Sprintf("web GET /w%d/%d xff=127.0.0.1", w, n) {
				tl.fail("h2 %d: %s %d %q %v", n, proto, code, body, err)
				continue
			}
			tl.ok.Add(1)
		}
	})
	l.run("grpc over TLS", 2, grpcUnaryLoad(func() *grpc.ClientConn {
		return grpcDialTLS(t, grpcAddr, ca.Pool(), "www.example.test")
	}))

	for i := 2; i <= 4; i++ {
		next := startProc(t, fmt.Sprintf("gen%d", i), "start", "-c", config(i))
		waitReady(next, i)
		if code := cur.wait(15 * time.Second); code != 0 {
			t.Fatalf("generation %d exited %d after handing off", i-1, code)
		}
		cur = next
		// The load goes on on the new process alone: its clients reconnected.
		waitGrowth(t, l, 20)
	}
	l.finish()
	t.Logf("load:\n%s", l.report())
	for _, name := range l.order {
		tl := l.byName[name]
		if tl.failed.Load() != 0 || tl.ok.Load() == 0 {
			t.Errorf("%s: %s", name, tl)
		}
	}
}
