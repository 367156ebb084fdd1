// Package tlsconf builds mosnlite's TLS from the config: a listener's
// server side (Server: certificates chosen by SNI, client verification,
// session tickets that survive an upgrade, the handshake of every accepted
// connection with its timeout) and a cluster's client side (Client: SNI,
// verification of the upstream's certificate, a client certificate,
// resumption). Both count their handshakes and failures by reason and
// register the time until each certificate in use expires.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service"
	"github.com/mosnlite/mosnlite/service/stats"
)

// ServerOptions are what a listener's TLS takes besides its config.
type ServerOptions struct {
	Registry *stats.Registry
	// Ring is the lineage's session ticket keys, used by every context
	// without session_ticket_keys; nil leaves such contexts Go's own
	// per-process keys (no resumption across an upgrade).
	Ring *Ring
	// Now is the clock of the certificate expiry series; nil is time.Now.
	Now func() time.Time
	// HTTP says the listener is the HTTP proxy's: a plain HTTP request on
	// it gets a 400 saying the listener wants TLS.
	HTTP bool
}

// Server is one listener's TLS.
type Server struct {
	listener  string
	contexts  []*serverContext
	exact     map[string]*serverContext // lower-case name → the first context with it
	wildcard  map[string]*serverContext // "example.com" for "*.example.com"
	root      *tls.Config
	timeout   time.Duration
	inspector bool
	http      bool
	m         *stats.TLSMetrics
}

type serverContext struct {
	cfg  *tls.Config
	mat  *config.TLSMaterial
	name string // server_name
	keys *ticketKeys
}

// NewServer builds listener l's TLS; nil (and no error) for a listener
// without a TLS context that is on. Its contexts must have been loaded by
// config.Parse.
func NewServer(l *config.Listener, o ServerOptions) (*Server, error) {
	ctxs := l.TLSContexts()
	if len(ctxs) == 0 {
		return nil, nil
	}
	if o.Registry == nil {
		o.Registry = stats.New()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		listener: l.Name, exact: map[string]*serverContext{}, wildcard: map[string]*serverContext{},
		timeout: l.TLSHandshakeTimeout.Duration, inspector: l.Inspector, http: o.HTTP,
		m: stats.NewTLSListenerMetrics(o.Registry, l.Name),
	}
	if s.timeout <= 0 {
		s.timeout = config.DefaultTLSHandshakeTimeout
	}
	for i, t := range ctxs {
		m := t.Loaded
		if m == nil || m.Certificate == nil {
			return nil, fmt.Errorf("tls: listener %s: TLS context %d has no certificate loaded (a config not read by config.Parse?)", l.Name, i)
		}
		c := &serverContext{mat: m, name: t.ServerName, cfg: &tls.Config{
			Certificates:     []tls.Certificate{*m.Certificate},
			MinVersion:       m.MinVersion,
			MaxVersion:       m.MaxVersion,
			CipherSuites:     m.CipherSuites,
			CurvePreferences: m.Curves,
			NextProtos:       m.ALPN,
			ClientAuth:       m.ClientAuth,
			ClientCAs:        pool(m.CAs),
		}}
		c.keys = &ticketKeys{id: contextID(l.Name, i, m), own: m.TicketKeys}
		if len(m.TicketKeys) == 0 {
			c.keys.ring = o.Ring
		}
		if c.keys.ring != nil || len(c.keys.own) > 0 {
			c.keys.apply(c.cfg)
		}
		s.contexts = append(s.contexts, c)
		for _, n := range c.names() {
			if suffix, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := s.wildcard[suffix]; !dup {
					s.wildcard[suffix] = c
				}
			} else if _, dup := s.exact[n]; !dup {
				s.exact[n] = c
			}
		}
		registerExpiry(o.Registry, "listener", l.Name, m, o.Now)
	}
	s.root = &tls.Config{GetConfigForClient: s.configFor}
	return s, nil
}

// names are what a context answers to by SNI, as in MOSN: its
// server_name, its certificate's common name and DNS names (lower case).
func (c *serverContext) names() []string {
	var out []string
	add := func(n string) {
		if n = strings.TrimSuffix(strings.ToLower(n), "."); n != "" {
			out = append(out, n)
		}
	}
	add(c.name)
	leaf := c.mat.Certificate.Leaf
	add(leaf.Subject.CommonName)
	for _, d := range leaf.DNSNames {
		add(d)
	}
	return out
}

// configFor chooses a context for a ClientHello: an exact name, then the
// most specific wildcard, then the first context that offers one of the
// client's protocols (MOSN's ALPN match), then the first (the default).
func (s *Server) configFor(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	c := s.pick(hello.ServerName, hello.SupportedProtos)
	if c.keys.ring != nil {
		c.keys.apply(c.cfg) // the ring may have rotated
	}
	return c.cfg, nil
}

func (s *Server) pick(serverName string, protos []string) *serverContext {
	name := strings.TrimSuffix(strings.ToLower(serverName), ".")
	if name != "" {
		if c, ok := s.exact[name]; ok {
			return c
		}
		for rest := name; ; {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			if c, ok := s.wildcard[rest]; ok {
				return c
			}
		}
	}
	for _, c := range s.contexts {
		for _, p := range protos {
			for _, q := range c.mat.ALPN {
				if p == q {
					return c
				}
			}
		}
	}
	return s.contexts[0]
}

// Handshake runs the TLS handshake of an accepted connection, within the
// handshake timeout, and returns the connection to serve and the
// application protocol negotiated ("" for none). With the listener's
// inspector on, a connection whose first byte is not a TLS handshake
// record is returned as it is, plain. On failure nc is closed and the
// error is a *HandshakeError. Closing nc meanwhile ends it at once.
func (s *Server) Handshake(nc net.Conn) (net.Conn, string, error) {
	_ = nc.SetDeadline(time.Now().Add(s.timeout))
	if s.inspector {
		first, err := peekByte(nc)
		if err != nil {
			return nil, "", s.fail(nc, err)
		}
		if first != recordTypeHandshake {
			_ = nc.SetDeadline(time.Time{})
			return nc, "", nil
		}
	}
	tc := tls.Server(nc, s.root)
	if err := tc.Handshake(); err != nil {
		if rhe, ok := err.(tls.RecordHeaderError); ok && s.http && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader[:]) {
			// As net/http does: say what is wrong in the client's language.
			_, _ = rhe.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nClient sent an HTTP request to a TLS listener.\n"))
		}
		return nil, "", s.fail(nc, err)
	}
	_ = nc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	s.m.Handshake(st.DidResume)
	return tc, st.NegotiatedProtocol, nil
}

func (s *Server) fail(nc net.Conn, err error) error {
	reason := Reason(err, false)
	s.m.Failure(reason)
	_ = nc.Close()
	return &HandshakeError{Reason: reason, Err: err}
}

// recordTypeHandshake is the first byte of a TLS ClientHello record.
const recordTypeHandshake = 0x16

func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "} {
		if strings.HasPrefix(m, string(b)) || strings.HasPrefix(string(b), m) {
			return true
		}
	}
	return false
}

// peekByte waits (within nc's read deadline) for the connection's first
// byte and returns it without consuming it: the socket's queue is peeked.
func peekByte(nc net.Conn) (byte, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return recordTypeHandshake, nil // no socket to peek: take it for TLS
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var b [1]byte
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK)
		return rerr != unix.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return b[0], nil
}

// Certificates describes the listener's certificates for admin /certs.
func (s *Server) Certificates() []service.CertificateSet {
	out := make([]service.CertificateSet, 0, len(s.contexts))
	for _, c := range s.contexts {
		out = append(out, certificateSet(c.mat, c.name, func(cs *service.CertificateSet) { cs.Listener = s.listener }))
	}
	return out
}

func pool(cas []*x509.Certificate) *x509.CertPool {
	if len(cas) == 0 {
		return nil
	}
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c)
	}
	return p
}
