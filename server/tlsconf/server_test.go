package tlsconf

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/server/tlsconf/tlstest"
	"github.com/mosnlite/mosnlite/service/stats"
)

// Three certificates on one listener: an exact name, a wildcard, and the
// default for everything else (no SNI, an unknown name).
func TestSNIChoosesAmongThreeCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	def := ca.Issue(t, tlstest.Opts{CN: "default.test", DNS: []string{"default.test"}, Serial: 100})
	exact := ca.Issue(t, tlstest.Opts{CN: "api.example.com", DNS: []string{"api.example.com"}, Serial: 200})
	wild := ca.Issue(t, tlstest.Opts{CN: "*.example.org", DNS: []string{"*.example.org"}, Serial: 300})
	// A wildcard context listed before the exact one: the exact name still wins.
	wildCom := ca.Issue(t, tlstest.Opts{DNS: []string{"*.example.com"}, Serial: 400})
	cfg := parseConfig(t, nil, obj{"tls_context_set": []obj{
		leafContext(t, dir, "def", def, nil),
		leafContext(t, dir, "wildcom", wildCom, nil),
		leafContext(t, dir, "exact", exact, nil),
		leafContext(t, dir, "wild", wild, nil),
		// MOSN's server_name counts as a name of the context.
		leafContext(t, dir, "named", ca.Issue(t, tlstest.Opts{CN: "x", Serial: 500}), obj{"server_name": "Named.Example.NET"}),
	}}, nil)
	s, err := NewServer(listenerOf(cfg), ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveTLS(t, s)
	for _, c := range []struct {
		sni    string
		serial int64
	}{
		{"api.example.com", 200},
		{"API.Example.COM.", 200}, // case and a trailing dot do not matter
		{"www.example.com", 400},
		{"a.b.example.org", 300}, // MOSN's wildcards match deeper names too
		{"example.org", 100},
		{"named.example.net", 500},
		{"other.test", 100},
		{"", 100},
	} {
		cc := &tls.Config{ServerName: c.sni, InsecureSkipVerify: true}
		conn, err := dialTLS(ts.addr(), cc)
		if err != nil {
			t.Fatalf("SNI %q: %v", c.sni, err)
		}
		got := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
		conn.Close()
		if got != c.serial {
			t.Errorf("SNI %q: served the certificate with serial %d, want %d", c.sni, got, c.serial)
		}
		if r := ts.next(t); r.err != nil {
			t.Errorf("SNI %q: server: %v", c.sni, r.err)
		}
	}
	// A verifying client accepts what it gets for the exact name.
	if conn, err := dialTLS(ts.addr(), &tls.Config{ServerName: "api.example.com", RootCAs: ca.Pool()}); err != nil {
		t.Errorf("verifying client: %v", err)
	} else {
		conn.Close()
	}
}

func mtlsServer(t *testing.T, ca *tlstest.CA, requireAndVerify bool) (*Server, *stats.Registry) {
	t.Helper()
	dir := t.TempDir()
	ctx := leafContext(t, dir, "srv", ca.Issue(t, tlstest.Opts{DNS: []string{"srv.test"}}), obj{
		"ca_cert": ca.Write(t, dir, "ca.pem"), "verify_client": true, "require_client_cert": requireAndVerify})
	reg := stats.New()
	s, err := NewServer(listenerOf(parseConfig(t, nil, obj{"tls_context": ctx}, nil)), ServerOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func TestMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	other := tlstest.NewCA(t, "other")
	s, reg := mtlsServer(t, ca, true)
	ts := serveTLS(t, s)
	good := ca.Issue(t, tlstest.Opts{CN: "client", Client: true})
	bad := other.Issue(t, tlstest.Opts{CN: "intruder", Client: true})
	base := func() *tls.Config { return &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool()} }

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cc := base()
			cc.MaxVersion, cc.Certificates = v, []tls.Certificate{good.TLS}
			conn, err := dialTLS(ts.addr(), cc)
			if err != nil {
				t.Fatalf("client with a certificate of the CA: %v", err)
			}
			conn.Close()
			r := ts.next(t)
			if r.err != nil {
				t.Fatalf("server refused a good client: %v", r.err)
			}
			if cn := r.conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "client" {
				t.Errorf("server saw client %q", cn)
			}

			cc = base()
			cc.MaxVersion = v
			if conn, err := dialTLS(ts.addr(), cc); err == nil {
				conn.Close()
				t.Error("a client without a certificate got through")
			}
			if r := ts.next(t); reasonOf(r.err) != stats.TLSReasonNoCert {
				t.Errorf("no client certificate: server says %v, want reason %s", r.err, stats.TLSReasonNoCert)
			}

			cc = base()
			cc.MaxVersion, cc.GetClientCertificate = v, sendAnyway(bad)
			if conn, err := dialTLS(ts.addr(), cc); err == nil {
				conn.Close()
				t.Error("a client with another CA's certificate got through")
			}
			if r := ts.next(t); reasonOf(r.err) != stats.TLSReasonBadCert {
				t.Errorf("foreign client certificate: server says %v, want reason %s", r.err, stats.TLSReasonBadCert)
			}
		})
	}
	for reason, want := range map[string]float64{stats.TLSReasonNoCert: 2, stats.TLSReasonBadCert: 2, stats.TLSReasonTimeout: 0} {
		if got := counter(reg, stats.TLSDownstreamFailures, "listener", "web", "reason", reason); got != want {
			t.Errorf("failures{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if got := counter(reg, stats.TLSDownstreamHandshakes, "listener", "web"); got != 2 {
		t.Errorf("handshakes = %v, want 2", got)
	}

	// verify_client alone (MOSN: verify if given): no certificate is fine,
	// a foreign one is not.
	s2, _ := mtlsServer(t, ca, false)
	ts2 := serveTLS(t, s2)
	if conn, err := dialTLS(ts2.addr(), base()); err != nil {
		t.Errorf("verify-if-given, no client certificate: %v", err)
	} else {
		conn.Close()
	}
	if r := ts2.next(t); r.err != nil {
		t.Errorf("verify-if-given, no client certificate: server %v", r.err)
	}
	cc := base()
	cc.GetClientCertificate = sendAnyway(bad)
	if conn, err := dialTLS(ts2.addr(), cc); err == nil {
		conn.Close()
		t.Error("verify-if-given let a foreign certificate through")
	}
	if r := ts2.next(t); reasonOf(r.err) != stats.TLSReasonBadCert {
		t.Errorf("verify-if-given, foreign certificate: %v", r.err)
	}
}

// sendAnyway makes a client send leaf whatever CAs the server asks for
// (Go's client would otherwise send none).
func sendAnyway(leaf *tlstest.Leaf) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &leaf.TLS, nil }
}

// Every way a handshake fails is counted under its own reason.
func TestHandshakeFailureReasons(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	ctx := leafContext(t, dir, "srv", ca.Issue(t, tlstest.Opts{DNS: []string{"srv.test"}}), obj{
		"cipher_suites": "ECDHE-ECDSA-AES128-GCM-SHA256"})
	reg := stats.New()
	s, err := NewServer(listenerOf(parseConfig(t, obj{"tls_handshake_timeout": "2s"}, obj{"tls_context": ctx}, nil)),
		ServerOptions{Registry: reg, HTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveTLS(t, s)
	raw := func(send string, closeAfter bool) string {
		c, err := net.Dial("tcp", ts.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if send != "" {
			c.Write([]byte(send))
		}
		if closeAfter {
			return ""
		}
		b, _ := bufio.NewReader(c).ReadString('\n')
		return b
	}
	client := func(mod func(*tls.Config)) {
		cc := &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool()}
		mod(cc)
		if c, err := dialTLS(ts.addr(), cc); err == nil {
			c.Close()
			t.Errorf("handshake with %+v succeeded", cc)
		}
	}
	for _, c := range []struct {
		reason string
		do     func()
	}{
		{stats.TLSReasonTimeout, func() { raw("", false) }}, // a client that says nothing
		{stats.TLSReasonClosed, func() { raw("\x16\x03\x01\x00\xa0\x01", true) }},
		{stats.TLSReasonNotTLS, func() {
			if got := raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n", false); !strings.HasPrefix(got, "HTTP/1.0 400") {
				t.Errorf("plain HTTP on the TLS listener got %q, want a 400", got)
			}
		}},
		{stats.TLSReasonVersion, func() {
			client(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 })
		}},
		{stats.TLSReasonCipher, func() {
			client(func(c *tls.Config) {
				c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
			})
		}},
		{stats.TLSReasonALPN, func() { client(func(c *tls.Config) { c.NextProtos = []string{"h2"} }) }},
		{stats.TLSReasonAlert, func() { client(func(c *tls.Config) { c.RootCAs = x509.NewCertPool() }) }}, // it refuses our certificate
	} {
		c.do()
		if r := ts.next(t); reasonOf(r.err) != c.reason {
			t.Errorf("want reason %s, server says %v", c.reason, r.err)
		}
		if got := counter(reg, stats.TLSDownstreamFailures, "listener", "web", "reason", c.reason); got != 1 {
			t.Errorf("failures{reason=%s} = %v, want 1", c.reason, got)
		}
	}
	// And a handshake that works: http/1.1 negotiated by default on an HTTP listener.
	conn, err := dialTLS(ts.addr(), &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool(), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if r := ts.next(t); r.err != nil || r.proto != "http/1.1" {
		t.Errorf("negotiated %q, %v; want http/1.1", r.proto, r.err)
	}
}

// A slow client cannot hold a handshake open past the timeout, even
// dribbling bytes.
func TestHandshakeTimeoutBoundsASlowClient(t *testing.T) {
	ts, c := dialServer(t, tlstest.NewCA(t, "ca"), obj{"tls_handshake_timeout": "200ms"})
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte every 50 ms: never a whole ClientHello
		hello := []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write(hello[i%len(hello) : i%len(hello)+1]); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	r := ts.next(t)
	if reasonOf(r.err) != stats.TLSReasonTimeout {
		t.Fatalf("want a timeout, got %v", r.err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the handshake held for %s", d)
	}
}

// With the inspector on, a plain connection is served plain, its bytes
// untouched; a TLS one is terminated.
func TestInspectorServesPlainAndTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	ts, c := dialServer(t, ca, obj{"inspector": true})
	c.Write([]byte("ping"))
	r := ts.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, ok := r.conn.(*tls.Conn); ok {
		t.Fatal("a plain connection was wrapped in TLS")
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("plain echo: %q %v (the peeked byte must stay)", buf, err)
	}
	conn, err := dialTLS(ts.addr(), &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if r := ts.next(t); r.err != nil {
		t.Fatal(r.err)
	} else if _, ok := r.conn.(*tls.Conn); !ok {
		t.Fatal("a TLS connection was served plain")
	}
}

// resumes says whether a client that had a session with server a resumes it on b.
func resumes(t *testing.T, a, b *Server, version uint16, ca *tlstest.CA) bool {
	t.Helper()
	cache := tls.NewLRUClientSessionCache(8)
	cfg := &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool(), ClientSessionCache: cache, MaxVersion: version}
	ta, tb := serveTLS(t, a), serveTLS(t, b)
	c, err := dialTLS(ta.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.ConnectionState().DidResume {
		t.Fatal("first connection resumed")
	}
	c.Close()
	ta.next(t)
	c, err = dialTLS(tb.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tb.next(t)
	return c.ConnectionState().DidResume
}

// Session tickets survive a new process: a server built from the keys its
// predecessor handed over resumes the predecessor's sessions, after a
// certificate rotation too; one with keys of its own does not.
func TestSessionResumptionAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	ctxFor := func(name string) obj {
		return leafContext(t, dir, name, ca.Issue(t, tlstest.Opts{DNS: []string{"srv.test"}}), nil)
	}
	build := func(ring *Ring, ctx obj) *Server {
		s, err := NewServer(listenerOf(parseConfig(t, nil, obj{"tls_context": ctx}, nil)), ServerOptions{Ring: ring})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now
	ring1, err := NewRing(nil, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ring2, err := NewRing(ring1.Keys(), now, rand.Reader) // the successor's
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := NewRing(nil, now, rand.Reader)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			old := build(ring1, ctxFor("old"))
			if !resumes(t, old, build(ring2, ctxFor("new")), v, ca) {
				t.Error("no resumption on the successor with the inherited keys and a new certificate")
			}
			if resumes(t, old, build(fresh, ctxFor("other")), v, ca) {
				t.Error("resumed on a server with keys of its own")
			}
			// Changed client certificate rules: the old sessions do not carry over.
			strict := leafContext(t, dir, "strict", ca.Issue(t, tlstest.Opts{DNS: []string{"srv.test"}}),
				obj{"verify_client": true, "ca_cert": ca.Write(t, dir, "ca.pem")})
			if resumes(t, old, build(ring2, strict), v, ca) {
				t.Error("a session resumed across a change of client verification")
			}
		})
	}
}

// Keys from session_ticket_keys files are the same in every process.
func TestSessionTicketKeyFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	key := make([]byte, 80)
	rand.Read(key)
	path := dir + "/ticket.key"
	if err := writeFile(path, key); err != nil {
		t.Fatal(err)
	}
	build := func(name string) *Server {
		ctx := leafContext(t, dir, name, ca.Issue(t, tlstest.Opts{DNS: []string{"srv.test"}}), obj{"session_ticket_keys": []string{path}})
		ring, _ := NewRing(nil, time.Now, rand.Reader) // unused: the files win
		s, err := NewServer(listenerOf(parseConfig(t, nil, obj{"tls_context": ctx}, nil)), ServerOptions{Ring: ring})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if !resumes(t, build("a"), build("b"), tls.VersionTLS13, ca) {
		t.Error("two processes reading the same session_ticket_keys do not resume each other's sessions")
	}
}

func TestRingRotation(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	r, err := NewRing(nil, clock, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k0 := r.Keys()
	if len(k0) != 1 || !k0[0].Created.Equal(t0) {
		t.Fatalf("fresh ring: %v", k0)
	}
	now = t0.Add(TicketKeyRotation - time.Second)
	if keys, _ := r.current(); len(keys) != 1 {
		t.Fatalf("rotated early: %d keys", len(keys))
	}
	now = t0.Add(TicketKeyRotation)
	keys, _ := r.current()
	if len(keys) != 2 || keys[1].Key != k0[0].Key || keys[0].Key == k0[0].Key {
		t.Fatalf("after a day: want a new key first and the old one after, got %d keys", len(keys))
	}
	now = t0.Add(TicketKeyLifetime + time.Hour)
	keys, _ = r.current()
	for _, k := range keys {
		if k.Key == k0[0].Key {
			t.Error("a key past its lifetime still decrypts")
		}
	}
	// Inherited: stale keys dropped, an unsound list refused (fresh keys instead).
	r2, err := NewRing(append(keys, TicketKey{Created: t0}), clock, rand.Reader)
	if err != nil || len(r2.Keys()) != len(keys) {
		t.Errorf("inherited with a stale key: %d keys, %v", len(r2.Keys()), err)
	}
	if _, err := NewRing([]TicketKey{{}}, clock, rand.Reader); err == nil {
		t.Error("a key without a creation time was taken")
	}
	// Never printed.
	k := k0[0]
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %x", k, k, k0, k, k), fmt.Sprint(k0)} {
		if strings.Contains(out, fmt.Sprint(k.Key)) || strings.Contains(out, fmt.Sprintf("%x", k.Key[:8])) || !strings.Contains(out, "redacted") {
			t.Errorf("a ticket key prints as %q", out)
		}
	}
}

// dialServer serves a listener (with the fields of listener) whose one
// context has a certificate of ca for srv.test, and dials it; the
// connection closes at the end of the test.
func dialServer(t *testing.T, ca *tlstest.CA, listener obj) (*tlsServer, net.Conn) {
	t.Helper()
	ctx := leafContext(t, t.TempDir(), "srv", ca.Issue(t, tlstest.Opts{DNS: []string{"srv.test"}}), nil)
	s, err := NewServer(listenerOf(parseConfig(t, listener, obj{"tls_context": ctx}, nil)), ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveTLS(t, s)
	c, err := net.Dial("tcp", ts.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ts, c
}
