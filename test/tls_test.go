package test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/server/tlsconf/tlstest"
)

// TLS end to end: certificates are made by each test (tlstest), nothing
// committed expires.

// tlsContext is MOSN's tls_context for a certificate and key file, with
// extra fields.
func tlsContext(cert, key string, extra obj) obj {
	c := obj{"status": true, "cert_chain": cert, "private_key": key}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// withTLS puts a TLS context (one: tls_context; several: tls_context_set)
// on a listener's filter chain.
func withTLS(listener obj, ctxs ...obj) obj {
	fc := listener["filter_chains"].([]obj)[0]
	if len(ctxs) == 1 {
		fc["tls_context"] = ctxs[0]
	} else {
		fc["tls_context_set"] = ctxs
	}
	return listener
}

func prefixRoute(prefix, cluster string) obj {
	return obj{"match": obj{"prefix": prefix}, "route": obj{"cluster_name": cluster}}
}

// tlsClient is an HTTPS client trusting pool, sending serverName as SNI.
func tlsClientConfig(pool *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: serverName, NextProtos: []string{"http/1.1"}}
}

// httpsGet does one GET over a new TLS connection made with cfg and returns
// the status, the body and the connection's state.
func httpsGet(target, path string, cfg *tls.Config) (int, string, tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", target, cfg)
	if err != nil {
		return 0, "", tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", path); err != nil {
		return 0, "", c.ConnectionState(), err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", c.ConnectionState(), err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), c.ConnectionState(), err
}

func serialOf(st tls.ConnectionState) string {
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return serialHex(st.PeerCertificates[0])
}

// serialHex is a serial as /certs shows it (Envoy's: the bytes in hex).
func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber.Bytes()) }

// counterSum adds the counters named name whose labels include every one
// of labels (`listener="x"`).
func counterSum(page, name string, labels ...string) float64 {
	total := 0.0
next:
	for k, v := range parseCounters(page) {
		if !strings.HasPrefix(k, name+"{") && k != name {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(k, l) {
				continue next
			}
		}
		total += v
	}
	return total
}

// tlsBackend is an HTTPS server with a certificate of ca that verifies a
// client certificate if one is given and names it in its answer.
func newTLSBackend(t *testing.T, ca *tlstest.CA, name string) net.Listener {
	t.Helper()
	leaf := ca.Issue(t, tlstest.Opts{CN: name, DNS: []string{name}})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{leaf.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := "none"
		if len(r.TLS.PeerCertificates) > 0 {
			client = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(w, "%s %s client=%s", name, r.URL.Path, client)
	}), ErrorLog: nil}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln
}

// TestTLSListenersAndUpstreams drives one process: HTTPS through the
// proxy, SNI among three certificates, mTLS accepted and refused, a
// tcp_proxy listener terminating TLS, upstream TLS verified, refused and
// skipped, admin /certs and the TLS metrics.
func TestTLSListenersAndUpstreams(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	ca, otherCA := tlstest.NewCA(t, "mosnlite test CA"), tlstest.NewCA(t, "some other CA")
	caPath, otherPath := ca.Write(t, dir, "ca.pem"), otherCA.Write(t, dir, "other.pem")
	def := ca.Issue(t, tlstest.Opts{CN: "default.test", DNS: []string{"default.test"}})
	exact := ca.Issue(t, tlstest.Opts{CN: "api.example.test", DNS: []string{"api.example.test"}})
	wild := ca.Issue(t, tlstest.Opts{CN: "wild", DNS: []string{"*.apps.example.test"}})
	mtlsLeaf := ca.Issue(t, tlstest.Opts{CN: "mtls.test", DNS: []string{"mtls.test"}})
	client := ca.Issue(t, tlstest.Opts{CN: "good client", Client: true})
	stranger := otherCA.Issue(t, tlstest.Opts{CN: "stranger", Client: true})
	upClient := ca.Issue(t, tlstest.Opts{CN: "mosnlite upstream client", Client: true})
	ctx := func(l *tlstest.Leaf, name string, extra obj) obj {
		c, k := l.Write(t, dir, name)
		return tlsContext(c, k, extra)
	}
	upCert, upKey := upClient.Write(t, dir, "upclient")

	web, echo := newHTTPBackend(t, "web"), newEchoBackend(t)
	tb := newTLSBackend(t, ca, "backend.internal")
	ps := freePorts(t, 3)
	https, mtls, tcps := addr(ps[0]), addr(ps[1]), addr(ps[2])
	cfg := mosnConfig(filepath.Join(dir, "uds"), p, "5s",
		[]obj{
			withTLS(httpListener("https", https, "r"),
				ctx(def, "default", obj{"alpn": "http/1.1"}), // the first: the default
				ctx(exact, "exact", obj{"alpn": "http/1.1"}),
				ctx(wild, "wild", obj{"alpn": "http/1.1"})),
			withTLS(httpListener("mtls", mtls, "r"),
				ctx(mtlsLeaf, "mtls", obj{"ca_cert": caPath, "verify_client": true, "require_client_cert": true})),
			// Inline PEM, as MOSN allows.
			withTLS(tcpListener("tcps", tcps, "echo"), tlsContext(string(def.CertPEM), string(def.KeyPEM), nil)),
		},
		[]obj{router("r", "web",
			prefixRoute("/up/verified", "up_verified"), prefixRoute("/up/mtls", "up_mtls"),
			prefixRoute("/up/refused", "up_refused"), prefixRoute("/up/skip", "up_skip"))},
		[]obj{
			cluster("web", web.addr()), cluster("echo", echo.addr()),
			withClusterTLS(cluster("up_verified", tb.Addr().String()), obj{"status": true, "ca_cert": caPath, "server_name": "backend.internal"}),
			withClusterTLS(cluster("up_mtls", tb.Addr().String()), obj{"status": true, "ca_cert": caPath, "server_name": "backend.internal",
				"cert_chain": upCert, "private_key": upKey}),
			withClusterTLS(cluster("up_refused", tb.Addr().String()), obj{"status": true, "ca_cert": otherPath, "server_name": "backend.internal"}),
			withClusterTLS(cluster("up_skip", tb.Addr().String()), obj{"status": true, "insecure_skip": true}),
		})
	startMosn(t, "mosnlite", writeJSON(t, dir, "c.json", cfg), p)

	t.Run("https through the proxy", func(t *testing.T) {
		code, body, st, err := httpsGet(https, "/hello", tlsClientConfig(ca.Pool(), "default.test"))
		if err != nil || code != 200 || !strings.HasPrefix(body, "web GET /hello xff=127.0.0.1") {
			t.Fatalf("HTTPS GET: %d %q %v", code, body, err)
		}
		if st.NegotiatedProtocol != "http/1.1" || st.Version < tls.VersionTLS12 {
			t.Errorf("negotiated %q, version %x", st.NegotiatedProtocol, st.Version)
		}
		// TLS 1.1 is refused by default.
		old := tlsClientConfig(ca.Pool(), "default.test")
		old.MinVersion, old.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
		if _, _, _, err := httpsGet(https, "/", old); err == nil {
			t.Error("a TLS 1.1 client was served")
		}
		// Plain HTTP to a TLS listener is refused.
		if code, _ := getQuiet("http://" + https + "/"); code == 200 {
			t.Error("plain HTTP served on a TLS listener")
		}
	})

	t.Run("SNI chooses among three certificates", func(t *testing.T) {
		for _, c := range []struct {
			sni  string
			want *tlstest.Leaf
		}{
			{"api.example.test", exact}, {"API.Example.Test", exact},
			{"a.apps.example.test", wild}, {"b.apps.example.test", wild},
			{"default.test", def}, {"unknown.test", def}, {"", def},
		} {
			cfg := tlsClientConfig(ca.Pool(), c.sni)
			if c.sni == "" || c.sni == "unknown.test" {
				// Nothing to verify the name against: check the serial only.
				cfg.InsecureSkipVerify = true
			}
			code, _, st, err := httpsGet(https, "/", cfg)
			if err != nil || code != 200 {
				t.Fatalf("SNI %q: %d %v", c.sni, code, err)
			}
			if got, want := serialOf(st), serialHex(c.want.Cert); got != want {
				t.Errorf("SNI %q: certificate serial %s (%s), want %s (%s)", c.sni, got, st.PeerCertificates[0].Subject.CommonName, want, c.want.Cert.Subject.CommonName)
			}
		}
	})

	t.Run("mTLS accepted and refused", func(t *testing.T) {
		good := tlsClientConfig(ca.Pool(), "mtls.test")
		good.Certificates = []tls.Certificate{client.TLS}
		if code, body, _, err := httpsGet(mtls, "/m", good); err != nil || code != 200 || !strings.HasPrefix(body, "web GET /m") {
			t.Fatalf("a client with a good certificate: %d %q %v", code, body, err)
		}
		none := tlsClientConfig(ca.Pool(), "mtls.test")
		if code, _, _, err := httpsGet(mtls, "/m", none); err == nil {
			t.Fatalf("a client without a certificate was served: %d", code)
		}
		bad := tlsClientConfig(ca.Pool(), "mtls.test")
		// Sent although the server names its CA (Go would send none).
		bad.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger.TLS, nil }
		if code, _, _, err := httpsGet(mtls, "/m", bad); err == nil {
			t.Fatalf("a client with a certificate of another CA was served: %d", code)
		}
		// The refusals are counted by reason (the server sees the client's
		// failure after its own Finished: wait for the counters).
		waitCounter(t, p.metricsURL(), "mosnlite_tls_downstream_handshake_failures_total", 1, `listener="mtls"`, `reason="no_client_cert"`)
		waitCounter(t, p.metricsURL(), "mosnlite_tls_downstream_handshake_failures_total", 1, `listener="mtls"`, `reason="bad_client_cert"`)
	})

	t.Run("tcp_proxy terminates TLS", func(t *testing.T) {
		c, err := tls.Dial("tcp", tcps, tlsClientConfig(ca.Pool(), "default.test"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := strings.Repeat("through TLS to a plain echo ", 1000)
		go fmt.Fprint(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo through TLS: %v (%d bytes back)", err, len(got))
		}
	})

	t.Run("upstream TLS", func(t *testing.T) {
		plain := tlsClientConfig(ca.Pool(), "default.test")
		for _, c := range []struct {
			path, want string
		}{
			{"/up/verified", "backend.internal /up/verified client=none"},
			{"/up/mtls", "backend.internal /up/mtls client=mosnlite upstream client"},
			{"/up/skip", "backend.internal /up/skip client=none"},
		} {
			if code, body, _, err := httpsGet(https, c.path, plain); err != nil || code != 200 || body != c.want {
				t.Errorf("%s: %d %q %v, want 200 %q", c.path, code, body, err, c.want)
			}
		}
		// A certificate that does not verify: no request reaches the host.
		if code, body, _, err := httpsGet(https, "/up/refused", plain); err != nil || code != 502 || strings.Contains(body, "backend.internal") {
			t.Errorf("/up/refused: %d %q %v, want the proxy's 502 (no host connects)", code, body, err)
		}
		_, page := get(t, p.metricsURL())
		if n := counterSum(page, "mosnlite_tls_upstream_handshake_failures_total", `cluster="up_refused"`, `reason="bad_server_cert"`); n < 1 {
			t.Errorf("upstream verification failures counted %v", n)
		}
		if n := counterSum(page, "mosnlite_tls_upstream_handshakes_total", `cluster="up_verified"`); n < 1 {
			t.Errorf("upstream handshakes counted %v", n)
		}
	})

	t.Run("admin certs and expiry metrics", func(t *testing.T) {
		var certs struct {
			Certificates []struct {
				Listener, Cluster, ServerName string
				CertChain                     []struct {
					Path, Subject       string
					SerialNumber        string                 `json:"serial_number"`
					DaysUntilExpiration string                 `json:"days_until_expiration"`
					ExpirationTime      string                 `json:"expiration_time"`
					SubjectAltNames     []struct{ DNS string } `json:"subject_alt_names"`
				} `json:"cert_chain"`
				CACert []struct {
					SerialNumber string `json:"serial_number"`
				} `json:"ca_cert"`
			}
		}
		getJSON(t, p.adminURL("/certs"), &certs)
		var https3 []string
		seen := map[string]bool{}
		for _, c := range certs.Certificates {
			id := c.Listener + c.Cluster
			seen[id] = true
			if c.Listener == "https" && len(c.CertChain) > 0 {
				https3 = append(https3, c.CertChain[0].SerialNumber)
				if c.CertChain[0].DaysUntilExpiration != "0" || len(c.CertChain[0].SubjectAltNames) == 0 {
					t.Errorf("https certificate %+v: a day to run is 0 whole days, with a SAN", c.CertChain[0])
				}
			}
			if c.Listener == "mtls" && (len(c.CACert) != 1 || c.CACert[0].SerialNumber != serialHex(ca.Cert)) {
				t.Errorf("mtls CA in /certs: %+v", c.CACert)
			}
		}
		want := []string{serialHex(def.Cert), serialHex(exact.Cert), serialHex(wild.Cert)}
		if strings.Join(https3, ",") != strings.Join(want, ",") {
			t.Errorf("/certs for listener https: serials %v, want %v", https3, want)
		}
		for _, id := range []string{"https", "mtls", "tcps", "up_verified", "up_mtls", "up_refused", "up_skip"} {
			if !seen[id] {
				t.Errorf("/certs lacks %s", id)
			}
		}
		_, page := get(t, p.metricsURL())
		re := regexp.MustCompile(`(?m)^mosnlite_tls_certificate_seconds_until_expiration\{([^}]*)\} (\S+)$`)
		found := false
		for _, m := range re.FindAllStringSubmatch(page, -1) {
			if strings.Contains(m[1], `serial="`+want[1]+`"`) && strings.Contains(m[1], `scope="listener"`) {
				v, _ := strconv.ParseFloat(m[2], 64)
				left := time.Until(exact.Cert.NotAfter).Seconds()
				if v <= 0 || v > left+60 || v < left-600 {
					t.Errorf("seconds until expiration %v, the certificate has %v", v, left)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("no expiry series for serial %s", want[1])
		}
		if n := counterSum(page, "mosnlite_tls_downstream_handshakes_total", `listener="https"`); n < 8 {
			t.Errorf("handshakes on https: %v", n)
		}
		if n := counterSum(page, "mosnlite_tls_downstream_handshake_failures_total", `listener="https"`); n < 2 {
			t.Errorf("failures on https (TLS 1.1, plain HTTP): %v", n)
		}
	})
}

func withClusterTLS(c obj, ctx obj) obj {
	c["tls_context"] = ctx
	return c
}

// waitCounter waits until the sum of a counter reaches at least want.
func waitCounter(t *testing.T, url, name string, want float64, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, page := getQuiet(url)
		n := counterSum(page, name, labels...)
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serialLog records the serial each new connection saw and when its dial
// began.
type serialLog struct {
	mu   sync.Mutex
	seen []serialSeen
}

type serialSeen struct {
	at     time.Time
	serial string
}

func (s *serialLog) add(at time.Time, serial string) {
	s.mu.Lock()
	s.seen = append(s.seen, serialSeen{at, serial})
	s.mu.Unlock()
}

// tlsDialer dials with cfg (no session cache: every connection is a full
// handshake and shows the certificate), recording the serial in log.
func tlsDialer(cfg *tls.Config, log *serialLog) dialer {
	return func(target string) (net.Conn, error) {
		at := time.Now()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", target, cfg)
		if err != nil {
			return nil, err
		}
		if log != nil {
			log.add(at, serialOf(c.ConnectionState()))
		}
		return c, nil
	}
}

// TestTLSRotationAcrossUpgrades: HTTPS keep-alive and new-connection load
// across 10 upgrades, each rotating the certificate. No handshake and no
// request fails; every connection begun after an upgrade is ready sees the
// new certificate; a client's session from each generation resumes on the
// next (the ticket keys went with the sockets).
func TestTLSRotationAcrossUpgrades(t *testing.T) {
	e := newUpgradeEnv(t)
	ca := tlstest.NewCA(t, "rotation CA")
	leaves := map[int]*tlstest.Leaf{}
	config := func(gen int) string {
		l := ca.Issue(t, tlstest.Opts{CN: "www.example.test", DNS: []string{"www.example.test"}, Serial: 1000 + int64(gen)})
		leaves[gen] = l
		c, k := l.Write(t, e.dir, fmt.Sprintf("gen%d", gen))
		cfg := mosnConfig(e.uds, e.p, "10s",
			[]obj{withTLS(httpListener("web", addr(e.httpPort), "r"), tlsContext(c, k, obj{"alpn": "http/1.1"}))},
			[]obj{router("r", "web")}, []obj{cluster("web", e.web.addr())})
		cfg["handoff_timeout"] = "5s"
		return writeJSON(t, e.dir, fmt.Sprintf("c%d.json", gen), cfg)
	}
	web := addr(e.httpPort)
	cur := startMosn(t, "gen1", config(1), e.p)

	conns := &serialLog{}
	base := tlsClientConfig(ca.Pool(), "www.example.test")
	l := newLoad()
	l.run("https keep-alive", 3, keepAliveHTTPWith(tlsDialer(base, nil), web, "/"))
	l.run("https new connection per request", 2, connPerRequestHTTPWith(tlsDialer(base, conns), web, "/"))
	defer l.finish()

	// A client that resumes: its cache keeps the ticket of the last
	// connection.
	resumer := tlsClientConfig(ca.Pool(), "www.example.test")
	resumer.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if code, _, st, err := httpsGet(web, "/", resumer); err != nil || code != 200 || st.DidResume {
		t.Fatalf("first connection: %d %v resumed=%v", code, err, st.DidResume)
	}

	const upgrades = 10
	ready := map[int]time.Time{1: time.Now()}
	started := map[int]time.Time{}
	for gen := 2; gen <= upgrades+1; gen++ {
		cfg := config(gen)
		started[gen] = time.Now()
		next := startProc(t, fmt.Sprintf("gen%d", gen), "start", "-c", cfg)
		waitReady(next, gen)
		ready[gen] = time.Now()
		// The first new connection: the new certificate, and the session
		// of the last generation resumed.
		code, _, st, err := httpsGet(web, "/", resumer)
		if err != nil || code != 200 {
			t.Fatalf("after upgrade %d: %d %v", gen-1, code, err)
		}
		if !st.DidResume {
			t.Errorf("after upgrade %d: the session from generation %d did not resume", gen-1, gen-1)
		}
		fresh := tlsClientConfig(ca.Pool(), "www.example.test")
		if _, _, st, err := httpsGet(web, "/", fresh); err != nil || serialOf(st) != genSerial(gen) {
			t.Fatalf("after upgrade %d: a new connection sees serial %s (%v), want %s", gen-1, serialOf(st), err, genSerial(gen))
		}
		if code := cur.wait(15 * time.Second); code != 0 {
			t.Fatalf("generation %d exited %d after handing off", gen-1, code)
		}
		cur = next
		// Each generation serves some of the load before the next one.
		waitGrowth(t, l, 3)
	}
	l.finish()
	t.Logf("load:\n%s", l.report())
	for _, name := range l.order {
		if tl := l.byName[name]; tl.failed.Load() != 0 || tl.ok.Load() == 0 {
			t.Errorf("%s: %s", name, tl)
		}
	}
	// Every new connection begun after generation g was ready saw g's
	// certificate, or (once g+1 was starting) g+1's.
	conns.mu.Lock()
	defer conns.mu.Unlock()
	checked := 0
	for _, s := range conns.seen {
		g := 0
		for gen, at := range ready {
			if s.at.After(at) && gen > g {
				g = gen
			}
		}
		if g == 0 {
			continue
		}
		checked++
		ok := s.serial == genSerial(g)
		if st, next := started[g+1]; next && s.at.After(st) {
			ok = ok || s.serial == genSerial(g+1)
		}
		if !ok {
			t.Errorf("a connection begun %v after generation %d was ready saw serial %s", s.at.Sub(ready[g]), g, s.serial)
		}
	}
	if checked < upgrades {
		t.Errorf("only %d new connections checked", checked)
	}
	t.Logf("%d new connections checked against the generation's serial", checked)
	_, page := get(t, e.p.metricsURL())
	if n := counterSum(page, "mosnlite_tls_downstream_handshake_failures_total", `listener="web"`); n != 0 {
		t.Errorf("%v handshakes failed across the upgrades", n)
	}
	if n := counterSum(page, "mosnlite_tls_downstream_sessions_resumed_total", `listener="web"`); n < upgrades {
		t.Errorf("resumed sessions counted across generations: %v, want at least %d", n, upgrades)
	}
	// TLS connections drain: none moved.
	if n := counterSum(page, "mosnlite_server_connections_migrated_total", `listener="web"`); n != 0 {
		t.Errorf("%v TLS connections migrated", n)
	}
	if n := counterSum(page, "mosnlite_tls_downstream_handshakes_total", `listener="web"`); n < float64(checked) {
		t.Errorf("handshakes counted across generations: %v, fewer than the %d new connections", n, checked)
	}
}

// genSerial is the serial of generation gen's certificate in the rotation
// test, as /certs and serialOf show it.
func genSerial(gen int) string { return fmt.Sprintf("%x", big.NewInt(1000+int64(gen)).Bytes()) }

// TestTLSConfigErrors: certificates and keys are checked at load, and what
// is wrong is named with its JSON path; an expired certificate only warns.
func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	ca := tlstest.NewCA(t, "config CA")
	good := ca.Issue(t, tlstest.Opts{CN: "good.test", DNS: []string{"good.test"}})
	other := ca.Issue(t, tlstest.Opts{CN: "other.test"})
	expired := ca.Issue(t, tlstest.Opts{CN: "expired.test", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	cert, key := good.Write(t, dir, "good")
	_, otherKey := other.Write(t, dir, "other")
	expCert, expKey := expired.Write(t, dir, "expired")
	garbled := filepath.Join(dir, "garbled.crt")
	if err := os.WriteFile(garbled, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	write := func(name string, ctx obj) string {
		return writeJSON(t, dir, name, mosnConfig(filepath.Join(dir, "uds"), p, "5s",
			[]obj{withTLS(httpListener("https", addr(port), "r"), ctx)},
			[]obj{router("r", "web")}, []obj{cluster("web", "127.0.0.1:1")}))
	}
	const path = "servers[0].listeners[0].filter_chains[0].tls_context."
	for _, c := range []struct {
		name string
		ctx  obj
		want string
	}{
		{"key of another certificate", tlsContext(cert, otherKey, nil), path + "private_key"},
		{"garbled certificate", tlsContext(garbled, key, nil), path + "cert_chain"},
		{"missing key", tlsContext(cert, filepath.Join(dir, "absent.key"), nil), path + "private_key"},
	} {
		out, err := exec.Command(binPath, "--mode", "validate", "-c", write("bad.json", c.ctx)).CombinedOutput()
		if exitCode(err) != 1 || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: exit %d, %q; want 1 naming %s", c.name, exitCode(err), out, c.want)
		}
	}
	// Expired: a warning naming it, and the listener serves (refusing it is
	// the client's call).
	cfg := write("expired.json", tlsContext(expCert, expKey, nil))
	pr := startMosn(t, "mosnlite", cfg, p)
	pr.waitLog(`level=warning.*`+regexp.QuoteMeta(path+"cert_chain")+`.*expired`, readyTimeout)
	insecure := &tls.Config{InsecureSkipVerify: true}
	if _, _, st, err := httpsGet(addr(port), "/", insecure); err != nil || serialOf(st) != serialHex(expired.Cert) {
		t.Fatalf("the expired certificate is not served: %v", err)
	}
}

// waitGrowth waits until every load in l has answered n more requests.
func waitGrowth(t *testing.T, l *load, n int64) {
	t.Helper()
	from := map[string]int64{}
	for _, name := range l.order {
		from[name] = l.byName[name].ok.Load()
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, name := range l.order {
		for l.byName[name].ok.Load() < from[name]+n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no progress: %s", name, l.byName[name])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestTLSResumptionAcrossEnvoyHotRestart: in Envoy's style too, the
// session ticket keys go with the listening sockets, so a client's session
// from epoch 0 resumes on epoch 1, which presents the rotated certificate
// to a new client.
func TestTLSResumptionAcrossEnvoyHotRestart(t *testing.T) {
	e := &envoyEnv{upgradeEnv: newUpgradeEnv(t)}
	ca := tlstest.NewCA(t, "envoy style CA")
	config := func(epoch int) string {
		l := ca.Issue(t, tlstest.Opts{CN: "www.example.test", DNS: []string{"www.example.test"}, Serial: 1000 + int64(epoch)})
		c, k := l.Write(t, e.dir, fmt.Sprintf("epoch%d", epoch))
		cfg := mosnConfig(e.uds, e.p, "5s",
			[]obj{withTLS(httpListener("web", addr(e.httpPort), "r"), tlsContext(c, k, nil))},
			[]obj{router("r", "web")}, []obj{cluster("web", e.web.addr())})
		return writeJSON(t, e.dir, fmt.Sprintf("c%d.json", epoch), cfg)
	}
	idFile := filepath.Join(e.dir, "base-id")
	e.cfg = config(0)
	startProc(t, "epoch0", "-c", e.cfg, "--restart-epoch", "0", "--use-dynamic-base-id", "--base-id-path", idFile,
		"--drain-time-s", "1", "--drain-strategy", "immediate")
	e.waitGeneration(1)
	b, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	if e.base, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		t.Fatal(err)
	}
	web := addr(e.httpPort)
	resumer := tlsClientConfig(ca.Pool(), "www.example.test")
	resumer.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if code, _, st, err := httpsGet(web, "/", resumer); err != nil || code != 200 || serialOf(st) != genSerial(0) {
		t.Fatalf("epoch 0: %d %v serial %s", code, err, serialOf(st))
	}
	e.cfg = config(1)
	e.epoch(1, "--drain-time-s", "1", "--drain-strategy", "immediate", "--parent-shutdown-time-s", "30")
	e.waitGeneration(2)
	code, _, st, err := httpsGet(web, "/", resumer)
	if err != nil || code != 200 || !st.DidResume {
		t.Fatalf("epoch 1: %d %v resumed=%v", code, err, st.DidResume)
	}
	if _, _, st, err := httpsGet(web, "/", tlsClientConfig(ca.Pool(), "www.example.test")); err != nil || serialOf(st) != genSerial(1) {
		t.Fatalf("epoch 1, a new client: serial %s (%v), want %s", serialOf(st), err, genSerial(1))
	}
}

// TestTLSRotationBySIGHUP: the certificate files replaced in place, then
// SIGHUP: the successor (same binary, same config) presents the new
// certificate to every new connection.
func TestTLSRotationBySIGHUP(t *testing.T) {
	e := newUpgradeEnv(t)
	ca := tlstest.NewCA(t, "sighup CA")
	issue := func(serial int64) {
		l := ca.Issue(t, tlstest.Opts{CN: "www.example.test", DNS: []string{"www.example.test"}, Serial: serial})
		l.Write(t, e.dir, "live") // the same paths every time
	}
	issue(1001)
	cfg := mosnConfig(e.uds, e.p, "5s",
		[]obj{withTLS(httpListener("web", addr(e.httpPort), "r"),
			tlsContext(filepath.Join(e.dir, "live.crt"), filepath.Join(e.dir, "live.key"), nil))},
		[]obj{router("r", "web")}, []obj{cluster("web", e.web.addr())})
	d := startDetached(t, writeJSON(t, e.dir, "c.json", cfg), filepath.Join(e.dir, "mosnlite.log"))
	waitHTTP(t, e.p.adminURL("/ready"), 200, readyTimeout)
	web := addr(e.httpPort)
	client := tlsClientConfig(ca.Pool(), "www.example.test")
	if _, _, st, err := httpsGet(web, "/", client); err != nil || serialOf(st) != genSerial(1) {
		t.Fatalf("before: serial %s (%v)", serialOf(st), err)
	}

	issue(1002)
	succ := d.sighup(t, e.p, 2)
	if _, _, st, err := httpsGet(web, "/", client); err != nil || serialOf(st) != genSerial(2) {
		t.Fatalf("after SIGHUP: serial %s (%v), want %s", serialOf(st), err, genSerial(2))
	}
	d.waitExit(t)
	syscall.Kill(succ, syscall.SIGTERM)
	waitGone(t, succ, 10*time.Second)
}
