package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/conntrack"
	"github.com/mosnlite/mosnlite/service/stats"
)

// tlsHandshaker is a TLS listener's handshake (what tlsconf.Server does)
// offering protos by ALPN.
type tlsHandshaker struct{ cfg *tls.Config }

func (h tlsHandshaker) Handshake(nc net.Conn) (net.Conn, string, error) {
	c := tls.Server(nc, h.cfg)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		nc.Close()
		return nil, "", err
	}
	_ = c.SetDeadline(time.Time{})
	return c, c.ConnectionState().NegotiatedProtocol, nil
}

// startTLSHTTP serves an HTTP proxy behind a TLS handshake offering protos,
// recording every request (its Listener replaced by its path, %protocol%
// and %request_scheme%).
func startTLSHTTP(t *testing.T, cfg config.HTTPProxyConfig, protos []string, backend string) (*httpProxy, string, func() []RequestInfo) {
	t.Helper()
	var mu sync.Mutex
	var infos []RequestInfo
	protoVar, err := ParseVariable("protocol")
	if err != nil {
		t.Fatal(err)
	}
	schemeVar, _ := ParseVariable("request_scheme")
	reg := stats.New()
	m := newManager(t, reg, appCluster(backend))
	var p *httpProxy
	hs := tlsHandshaker{&tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: protos}}
	p, err = newHTTP(httpListener(cfg), singleRoute(0), m, reg, quietLog(), WithHandshake(hs),
		WithRequestObserver(func(info *RequestInfo) {
			mu.Lock()
			in := *info
			in.Request = nil // its slices are the engine's: rendered here
			in.Listener = string(info.Request.Path) + " " + string(info.AppendVariable(nil, protoVar)) + " " + string(info.AppendVariable(nil, schemeVar))
			infos = append(infos, in)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	return p, serve(t, p), func() []RequestInfo {
		mu.Lock()
		defer mu.Unlock()
		return append([]RequestInfo(nil), infos...)
	}
}

// h2TLSClient is x/net's HTTP/2 client over TLS (ALPN h2); nextProtos,
// when set, replaces what its handshake offers.
func h2TLSClient(nextProtos []string) *http.Client {
	tr := &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableCompression: true}
	if nextProtos != nil {
		tr.DialTLSContext = func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			cfg = cfg.Clone()
			cfg.NextProtos = nextProtos[1:] // [0] is a marker: offer what follows
			return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
		}
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// h1TLSClient is net/http's client over TLS without HTTP/2: it offers
// nextProtos by ALPN (none when nil, as net/http without HTTP/2 does).
func h1TLSClient(nextProtos ...string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: nextProtos}, ForceAttemptHTTP2: false,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, DisableCompression: true,
	}, Timeout: 20 * time.Second}
}

// An HTTPS listener with downstream_protocol Auto serves the connections
// whose handshake chose h2 with the HTTP/2 engine and the others with the
// HTTP/1 one, on the same port; the records and %protocol% say which. The
// h2 connection is tracked in its handshake's place and drains with GOAWAY.
func TestH2ByALPNOnAnAutoTLSListener(t *testing.T) {
	be := startBackend(t, echoH)
	p, addr, records := startTLSHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolAuto, UpstreamProtocol: config.ProtocolHTTP1},
		[]string{"h2", "http/1.1"}, be.addr())

	h2c := h2TLSClient(nil)
	resp, body := get(t, h2c, "https://"+addr+"/a")
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 || resp.Header.Get("X-Path") != "/a" || resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("h2 client: %s %d %v %q", resp.Proto, resp.StatusCode, resp.Header, body)
	}
	resp, _ = get(t, h1TLSClient(), "https://"+addr+"/b")
	if resp.Proto != "HTTP/1.1" || resp.StatusCode != 200 || resp.Header.Get("X-Path") != "/b" {
		t.Fatalf("HTTP/1.1 client without ALPN: %s %d %v", resp.Proto, resp.StatusCode, resp.Header)
	}
	resp, _ = get(t, h1TLSClient("http/1.1"), "https://"+addr+"/c")
	if resp.Proto != "HTTP/1.1" || resp.StatusCode != 200 || resp.TLS.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("HTTP/1.1 client by ALPN: %s %d %q", resp.Proto, resp.StatusCode, resp.TLS.NegotiatedProtocol)
	}
	waitFor(t, "3 request records", func() bool { return len(records()) == 3 })
	// Records are made once each answer is sent: in any order.
	want := map[string]string{"/a": ProtocolHTTP2, "/b": ProtocolHTTP1, "/c": ProtocolHTTP1}
	for _, in := range records() {
		path, _, _ := strings.Cut(in.Listener, " ")
		w := want[path]
		delete(want, path)
		if w == "" || in.Protocol != w || in.Listener != path+" "+w+" https" || in.ConnID == 0 || in.Remote == nil || in.Status != 200 {
			t.Errorf("record %+v: want protocol %s, path %%protocol%% %%request_scheme%% %q", in, w, path+" "+w+" https")
		}
	}

	// The HTTP/2 connection is what the tracker holds in its handshake's
	// place (the HTTP/1 one went idle or was handed to the idle poller).
	waitFor(t, "the h2 connection tracked as idle", func() bool {
		found := false
		p.tracker.Range(func(c conntrack.Conn, s conntrack.State) bool {
			if _, ok := c.(*h2Conn); ok && s == conntrack.Idle {
				found = true
			}
			_, hs := c.(*handshaking)
			return !found && !hs
		})
		return found
	})
	p.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("drain: %v (left: %d)", err, p.tracker.Len())
	}
}

// An Http2 TLS listener serves a client that negotiated nothing as HTTP/2
// (prior knowledge inside TLS); one that negotiated http/1.1 as HTTP/1.1.
// A listener that does not offer h2 (Http1) refuses a client that wants
// h2 only, and a client offering both gets HTTP/1.1.
func TestNegotiatedProtocolPicksTheEngine(t *testing.T) {
	be := startBackend(t, echoH)
	_, addr, _ := startTLSHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1},
		[]string{"h2", "http/1.1"}, be.addr())
	resp, _ := get(t, h2TLSClient([]string{"none"}), "https://"+addr+"/none")
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 || resp.TLS.NegotiatedProtocol != "" {
		t.Errorf("no ALPN on Http2: %s %d %q", resp.Proto, resp.StatusCode, resp.TLS.NegotiatedProtocol)
	}
	resp, _ = get(t, h1TLSClient("http/1.1"), "https://"+addr+"/h1")
	if resp.Proto != "HTTP/1.1" || resp.StatusCode != 200 || resp.TLS.NegotiatedProtocol != "http/1.1" {
		t.Errorf("http/1.1 on Http2: %s %d", resp.Proto, resp.StatusCode)
	}

	_, addr1, _ := startTLSHTTP(t, config.HTTPProxyConfig{}, config.HTTPListenerALPN(""), be.addr())
	if _, err := h2TLSClient(nil).Get("https://" + addr1 + "/"); err == nil {
		t.Error("an h2-only client got an answer from an Http1 listener")
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true},
		Timeout: 20 * time.Second}).Get("https://" + addr1 + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/1.1" || resp.TLS.NegotiatedProtocol != "http/1.1" {
		t.Errorf("a client offering h2 and http/1.1 to an Http1 listener: %s, ALPN %q", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
}
