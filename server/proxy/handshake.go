package proxy

import (
	"net"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/conntrack"
)

// Handshaker begins every connection a listener accepts before the proxy
// serves it: a TLS listener's handshake (tlsconf.Server). Handshake runs on
// the connection's own goroutine, bounded by its own timeout, and returns
// the connection to serve and the application protocol negotiated ("" for
// none); on failure it has closed nc. Closing nc ends it at once.
type Handshaker interface {
	Handshake(nc net.Conn) (net.Conn, string, error)
}

// handshaking stands in the tracker for a connection whose handshake runs:
// a drain waits for it (it finishes its handshake, then drains as what it
// became), a close ends it.
type handshaking struct{ nc net.Conn }

func (h *handshaking) Drain()       {}
func (h *handshaking) Close() error { return h.nc.Close() }

// begin runs the listener's handshake on nc in a goroutine of its own,
// tracked meanwhile, then calls serve on that goroutine with what to
// serve; serve tracks it in place of placeholder (Tracker.Replace).
func (b *base) begin(nc net.Conn, serve func(c net.Conn, proto string, placeholder conntrack.Conn)) {
	h := &handshaking{nc: nc}
	remove := b.tracker.Add(h)
	go func() {
		c, proto, err := b.handshaker.Handshake(nc)
		if err != nil {
			// Counted by reason; a log line per abusive client would be unbounded.
			b.log.WithError(err).WithField("client", remoteString(nc)).Debug("handshake failed")
			remove()
			return
		}
		serve(c, proto, h)
	}()
}

// WithHandshake makes an HTTP proxy begin every connection with h (a TLS
// listener). Its connections then never move to a successor: they drain.
func WithHandshake(h Handshaker) HTTPOption {
	return func(p *httpProxy) { p.handshaker = h }
}

// WithTCPHandshake is WithHandshake for a TCP proxy.
func WithTCPHandshake(h Handshaker) TCPOption {
	return func(p *tcpProxy) { p.handshaker = h }
}

// serveNegotiated serves an HTTP connection whose handshake is done, by
// the protocol it negotiated (the listener offers h2 only when its
// downstream_protocol is Http2 or Auto, config.HTTPListenerALPN): "h2" is
// served by the HTTP/2 engine, "http/1.1" by the HTTP/1 engine. A client
// that negotiated nothing gets the listener's own protocol: HTTP/2 with
// prior knowledge on an Http2 listener, HTTP/1.x otherwise (an Auto
// listener does not look for the preface inside TLS). Either way the
// connection is tracked in place of its handshake's placeholder.
func (p *httpProxy) serveNegotiated(nc net.Conn, proto string, placeholder conntrack.Conn) {
	switch {
	case proto == "h2", proto == "" && p.downstreamProto == config.ProtocolHTTP2:
		p.trackH2(nc, nil, placeholder)()
	default:
		c := p.newConn(nc)
		c.remove = p.tracker.Replace(placeholder, c)
		c.serve(startFresh)
	}
}
