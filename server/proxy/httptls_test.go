package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/conntrack"
	"github.com/mosnlite/mosnlite/service/stats"
)

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serveTLS serves p on a TLS listener of its own until the test ends, and
// returns its address.
func serveTLS(t *testing.T, p *httpProxy) string {
	t.Helper()
	l := listen(t)
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	done := make(chan error, 1)
	go func() { done <- p.Serve(tl) }()
	t.Cleanup(func() {
		tl.Close()
		<-done
		p.CloseAll()
		p.Wait(waitCtx(t))
	})
	return l.Addr().String()
}

func dialTLS(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The engine serves a connection it gets wrapped (a *tls.Conn, as a TLS
// listener will hand it): keep-alive, body framing, the boundary. Such a
// connection has no socket of its own to poll, so it waits for its next
// request with its goroutine instead of in the idle poller, and still
// drains at a request boundary.
func TestHTTPOverTLSConn(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.URL.Path, b)
		if xfp := r.Header.Get("X-Forwarded-Proto"); xfp != "https" {
			t.Errorf("X-Forwarded-Proto over TLS: %q", xfp)
		}
	})
	reg := stats.New()
	m := newManager(t, reg, appCluster(be.addr()))
	p, err := newHTTP(httpListener(config.HTTPProxyConfig{}), singleRoute(0), m, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	p.handoff = 10 * time.Millisecond
	c := dialTLS(t, serveTLS(t, p))
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for i := range 3 {
		fmt.Fprintf(c, "POST /%d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", i)
		expectAnswer(t, br, fmt.Sprintf("/%d abc", i), false)
	}
	waitFor(t, "the connection to go idle", func() bool { return p.tracker.Count(conntrack.Idle) == 1 })
	var held *httpConn
	p.tracker.Range(func(cc conntrack.Conn, _ conntrack.State) bool { held = cc.(*httpConn); return false })
	if !held.rawless || p.idle.park(held) {
		t.Fatal("a TLS connection can go to the idle poller, which cannot see the records it has buffered")
	}
	p.Drain()
	expectEOF(t, br)
}

// A tunnel over a TLS client connection works like any other, and stays
// when its listener's connections move: it has no socket of its own to
// hand over.
func TestUpgradeTunnelOverTLSConnStays(t *testing.T) {
	be := startTCPBackend(t)
	reg := stats.New()
	m := newManager(t, reg, appCluster(be.addr))
	p, err := newHTTP(httpListener(config.HTTPProxyConfig{}), upgradeRoute(), m, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	c := dialTLS(t, serveTLS(t, p))
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, wsHandshake)
	up := be.accept(t)
	readRequest(t, up)
	io.WriteString(up, switched+"over tls")
	br := bufio.NewReader(c)
	readSwitch(t, br)
	if got := readN(t, br, 8); got != "over tls" {
		t.Fatalf("client read %q", got)
	}
	parks := make(chan *Parked, 1)
	p.Migrate(parkInto(parks)) // decided at once: it stays
	send(t, c, up, payload(64<<10))
	big := payload(256 << 10)
	go up.Write(big)
	if got := readN(t, br, len(big)); got != string(big) {
		t.Fatal("bytes differ after the migration began")
	}
	if len(parks) != 0 {
		t.Fatal("a TLS tunnel was offered to a successor")
	}
	c.CloseWrite()
	if n, err := up.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("upstream after the client's close_notify: %d %v", n, err)
	}
	up.CloseWrite()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("client after the upstream's FIN: %v", err)
	}
}
