package tlsconf

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/server/tlsconf/tlstest"
	"github.com/mosnlite/mosnlite/service/stats"
)

// upstream is a TLS server standing in for a cluster's host: it records
// the SNI and client certificate of each handshake.
type upstream struct {
	ln  net.Listener
	mu  sync.Mutex
	sni []string
	cns []string
}

func newUpstream(t *testing.T, leaf *tlstest.Leaf, clientCA *tlstest.CA) *upstream {
	t.Helper()
	u := &upstream{}
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			u.mu.Lock()
			u.sni = append(u.sni, h.ServerName)
			u.mu.Unlock()
			return nil, nil
		}}
	if clientCA != nil {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, clientCA.Pool()
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	u.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					u.mu.Lock()
					u.cns = append(u.cns, pc[0].Subject.CommonName)
					u.mu.Unlock()
				}
				buf := make([]byte, 4)
				n, _ := tc.Read(buf)
				tc.Write(buf[:n])
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

func (u *upstream) lastSNI() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.sni) == 0 {
		return ""
	}
	return u.sni[len(u.sni)-1]
}

// connect dials u and runs c's handshake and one exchange.
func connect(t *testing.T, c *Client, address string) (*tls.Conn, error) {
	t.Helper()
	nc, err := net.Dial("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Handshake(ctx, nc, address)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		conn.Close()
		return nil, err
	}
	buf := make([]byte, 4)
	if _, err := conn.Read(buf); err != nil {
		conn.Close()
		return nil, err
	}
	return conn.(*tls.Conn), nil
}

func newClient(t *testing.T, tlsCtx obj, reg *stats.Registry) *Client {
	t.Helper()
	cfg := parseConfig(t, nil, nil, obj{"tls_context": tlsCtx})
	c, err := NewClient(&cfg.ClusterManager.Clusters[0], ClientOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUpstreamTLSVerification(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "upstream ca")
	up := newUpstream(t, ca.Issue(t, tlstest.Opts{DNS: []string{"backend.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}), nil)
	caFile := ca.Write(t, dir, "ca.pem")
	reg := stats.New()

	// Verified against ca_cert, the host's IP as the name (no server_name).
	c := newClient(t, obj{"status": true, "ca_cert": caFile}, reg)
	conn, err := connect(t, c, up.addr())
	if err != nil {
		t.Fatalf("verified upstream: %v", err)
	}
	conn.Close()
	if sni := up.lastSNI(); sni != "" {
		t.Errorf("SNI %q sent for an IP address", sni)
	}
	// server_name is the SNI and the name verified.
	c = newClient(t, obj{"status": true, "ca_cert": caFile, "server_name": "backend.test"}, reg)
	if conn, err = connect(t, c, up.addr()); err != nil {
		t.Fatalf("server_name backend.test: %v", err)
	}
	conn.Close()
	if sni := up.lastSNI(); sni != "backend.test" {
		t.Errorf("SNI %q, want backend.test", sni)
	}
	// A name the certificate does not have, or no CA that signed it: refused.
	for _, ctx := range []obj{
		{"status": true, "ca_cert": caFile, "server_name": "other.test"},
		{"status": true, "server_name": "backend.test"}, // the system's CAs do not know ours
	} {
		c = newClient(t, ctx, reg)
		if conn, err := connect(t, c, up.addr()); err == nil {
			conn.Close()
			t.Errorf("%v: an unverifiable upstream was accepted", ctx)
		} else if reasonOf(err) != stats.TLSReasonBadServer {
			t.Errorf("%v: %v, want reason %s", ctx, err, stats.TLSReasonBadServer)
		}
	}
	// The clients share the registry's series (they are of one cluster name).
	if got := counter(reg, stats.TLSUpstreamFailures, "cluster", "c", "reason", stats.TLSReasonBadServer); got != 2 {
		t.Errorf("bad_server_cert failures %v, want 2", got)
	}
	// insecure_skip, only when asked.
	c = newClient(t, obj{"status": true, "insecure_skip": true}, reg)
	if conn, err := connect(t, c, up.addr()); err != nil {
		t.Errorf("insecure_skip: %v", err)
	} else {
		conn.Close()
	}
}

func TestUpstreamClientCertificateAndResumption(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	up := newUpstream(t, ca.Issue(t, tlstest.Opts{DNS: []string{"backend.test"}}), ca)
	reg := stats.New()
	plain := newClient(t, obj{"status": true, "ca_cert": ca.Write(t, dir, "ca.pem"), "server_name": "backend.test"}, reg)
	if conn, err := connect(t, plain, up.addr()); err == nil {
		conn.Close()
		t.Error("an upstream requiring a client certificate accepted none")
	}
	cert, key := ca.Issue(t, tlstest.Opts{CN: "mosnlite", Client: true}).Write(t, dir, "client")
	reg = stats.New()
	c := newClient(t, obj{"status": true, "ca_cert": ca.Write(t, dir, "ca.pem"), "server_name": "backend.test",
		"cert_chain": cert, "private_key": key}, reg)
	for i := range 3 {
		conn, err := connect(t, c, up.addr())
		if err != nil {
			t.Fatalf("connection %d with a client certificate: %v", i, err)
		}
		if resumed := conn.ConnectionState().DidResume; resumed != (i > 0) {
			t.Errorf("connection %d: resumed %v", i, resumed)
		}
		conn.Close()
	}
	up.mu.Lock()
	cns := append([]string(nil), up.cns...)
	up.mu.Unlock()
	if len(cns) == 0 || cns[0] != "mosnlite" {
		t.Errorf("the upstream saw client certificates %v", cns)
	}
	if h, r := counter(reg, stats.TLSUpstreamHandshakes, "cluster", "c"), counter(reg, stats.TLSUpstreamResumed, "cluster", "c"); h != 3 || r != 2 {
		t.Errorf("handshakes %v resumed %v, want 3 and 2", h, r)
	}
	sets := c.Certificates()
	if len(sets) != 1 || sets[0].Cluster != "c" || len(sets[0].CertChain) != 1 || sets[0].CertChain[0].Subject == "" || len(sets[0].CACerts) != 1 {
		t.Errorf("certificates: %+v", sets)
	}
}
