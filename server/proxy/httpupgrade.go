package proxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

// HTTP/1.1 upgrades (RFC 9110 §7.8), WebSocket's handshake among them. A
// request with Connection: upgrade and an Upgrade header goes upstream with
// both (they are hop-by-hop, so the proxy writes them anew); a 101 answer
// turns the connection into a tunnel: the two sockets, bytes copied both
// ways, run and moved at a process upgrade exactly like a TCP proxy session
// (tcpsession.go, tcpmigrate.go). Any other answer is an ordinary response,
// and the connection stays an HTTP connection.

var (
	errUnaskedSwitch  = errors.New("upstream switched protocols, which was not asked for")
	errSwitchNoTarget = errors.New("upstream switched protocols without an Upgrade header")
)

// upgradeRequested reports whether the request asks to switch protocols in
// a way the proxy passes on: HTTP/1.1, Connection lists upgrade, an Upgrade
// value, and no body. An upgrade request with a body is proxied as a plain
// request (its Upgrade stays behind, as every hop-by-hop field does): what
// follows the body on the wire could not be told from the next request. So
// is an upgrade to h2c, as Envoy does: HTTP/2 over cleartext is a protocol
// of the hop (its HTTP2-Settings is a hop-by-hop field), not something to
// tunnel to whichever upstream the route picks.
func upgradeRequested(req *http1.Request) bool {
	return req.Minor == 1 && req.UpgradeAsked && len(req.Upgrade) > 0 && !req.HasBody() &&
		!bytes.EqualFold(bytes.TrimSpace(req.Upgrade), []byte("h2c"))
}

// upgradeAllowed reports whether the route refuses none of the protocols an
// Upgrade value lists ("websocket", "foo/2, bar": a protocol is matched by
// its name, without the version).
func (r *routeResult) upgradeAllowed(value []byte) bool {
	if r.action == nil || len(r.action.upgrades) == 0 {
		return true
	}
	for len(value) > 0 {
		var tok []byte
		tok, value, _ = bytes.Cut(value, []byte{','})
		name, _, _ := bytes.Cut(bytes.TrimSpace(tok), []byte{'/'})
		if enabled, listed := r.action.upgrades[string(bytes.ToLower(name))]; listed && !enabled {
			return false
		}
	}
	return true
}

// upgradeOf returns a response's Upgrade value, nil if it has none.
func upgradeOf(resp *http1.Response) []byte {
	for _, h := range resp.Headers {
		if http1.Kind(h.Name) == http1.KindUpgrade {
			return h.Value
		}
	}
	return nil
}

// checkSwitch accepts a 101 answer only to a request that asked for an
// upgrade, and only if it names the protocol it switches to.
func checkSwitch(x *exchange) error {
	switch {
	case !x.upgrade:
		return errUnaskedSwitch
	case len(upgradeOf(&x.resp)) == 0:
		return errSwitchNoTarget
	}
	return nil
}

// refuseUpgrade answers an upgrade the route does not allow as Envoy does:
// 403, and the connection stays an HTTP connection.
func (c *httpConn) refuseUpgrade(x *exchange, res routeResult) bool {
	x.info.Cluster = res.cluster
	x.info.Flags |= FlagUpgradeRefused
	return c.answerLocal(x, res.cluster, http.StatusForbidden, "upgrade refused\n", false)
}

// composeSwitch writes the client's 101 head into x.ob: the upstream's
// status and end-to-end fields, and the upgrade's Connection and Upgrade.
func (x *exchange) composeSwitch() {
	resp := &x.resp
	b := appendStatusLine(x.ob[:0], resp.Status, resp.Reason)
	for _, h := range resp.Headers {
		if k := http1.Kind(h.Name); k.HopByHop() || k == http1.KindContentLength || resp.ConnectionOption(h.Name) {
			continue
		}
		b = appendField(b, h.Name, h.Value)
	}
	b = append(b, "Connection: Upgrade\r\n"...)
	b = appendField(b, []byte("Upgrade"), upgradeOf(resp))
	x.ob = append(b, "\r\n"...)
}

// switchProtocols relays a 101 and hands the connection to a tunnel. The
// 101 head and whatever the upstream sent after it are the tunnel's first
// bytes to the client; whatever the client sent after its request, its
// first bytes to the upstream. The upstream connection never goes back to
// the pool. It reports that the connection is no longer an HTTP one.
func (c *httpConn) switchProtocols(x *exchange, cl *cluster.Cluster, up *cluster.Conn) (keepAlive, responded bool) {
	h := up.Host()
	defer h.Release()
	c.setUpstream(nil)
	x.up = nil
	x.upstreamDone() // its answer, the 101, is in
	c.p.answered(x, x.info.Cluster, http.StatusSwitchingProtocols)
	x.info.Status = http.StatusSwitchingProtocols
	x.composeSwitch()
	toDown := append(bytes.Clone(x.ob), x.upBuf.b[x.ur:x.uw]...)
	x.ob, x.ur = x.ob[:0], x.uw
	var toUp []byte
	if c.in != nil && c.r < c.w {
		toUp = bytes.Clone(c.in.b[c.r:c.w])
		c.r = c.w
	}
	if !c.becomeTunnel(up, cl.BufferLimit(), toUp, toDown) {
		up.Close()
		return false, false
	}
	return false, true
}

// becomeTunnel replaces the connection by a tunnel session over the same
// downstream socket, tracked (with the connection's age) before the HTTP
// connection leaves the tracker, so that the listener never looks empty in
// between. It fails if the connection was closed meanwhile.
func (c *httpConn) becomeTunnel(up *cluster.Conn, bufLimit int, toUp, toDown []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	// From now on Close, Drain and Migrate of the HTTP connection do
	// nothing: the tunnel owns the socket.
	c.closed, c.phase, c.upgraded = true, phaseClosed, true
	c.mu.Unlock()
	since, _ := c.p.tracker.Since(c)
	c.p.idle.unregister(c, true)
	c.releaseInput()
	ctx, cancel := context.WithCancel(context.Background())
	s := &tcpSession{p: c.p.tunnels, down: c.nc, up: up.Conn, upc: up, host: up.Host(), ctx: ctx, cancel: cancel,
		started: since, id: c.id, requests: c.requests}
	s.initPipes(toUp, toDown, bufLimit)
	s.remove = c.p.tracker.AddSince(s, since)
	c.remove()
	c.p.idle.reclaim.left()
	c.p.upgrades.Inc()
	go s.serve() // its first write is the 101
	return true
}
