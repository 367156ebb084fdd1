package proxy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mosnlite/mosnlite/server/cluster"
)

// Kind implements Migrator.
func (p *httpProxy) Kind() string { return KindHTTP }

// Migrate asks the connection to move at its next request boundary: at once
// if it is idle, after the response if a request is in flight.
func (c *httpConn) Migrate() {
	c.mu.Lock()
	if c.closed || c.draining || c.moveWanted || c.moveTried {
		c.mu.Unlock()
		return
	}
	c.moveWanted = true
	if c.phase == phaseIdle {
		_ = c.nc.SetReadDeadline(aLongTimeAgo()) // wakes a goroutine's idle wait
	}
	c.mu.Unlock()
	if c.p.idle.claim(c) { // idle without a goroutine: one moves it now
		go c.serve(startWoken)
	}
}

// wantsMoveLocked: a move was asked for and nothing has overridden it.
func (c *httpConn) wantsMoveLocked() bool {
	return c.moveWanted && !c.moveTried && !c.draining && !c.closed
}

// park hands the idle connection over and waits for the decision. It
// reports whether the connection moved; if not, it drains from now on.
func (c *httpConn) park() bool {
	c.endKnown = false // it waits for the decision
	park := c.p.parkFunc()
	if park == nil {
		c.stay()
		return false
	}
	h, err := c.handover()
	if err != nil {
		c.p.log.WithError(err).Warn("http connection cannot move; it stays")
		c.stay()
		return false
	}
	decision := make(chan bool, 1)
	closing := make(chan struct{})
	c.mu.Lock()
	c.closing = closing
	closed := c.closed
	c.mu.Unlock()
	if closed {
		h.Files[0].Close()
		return false
	}
	park(NewParked(h, func(moved bool) { decision <- moved }))
	select {
	case moved := <-decision:
		if moved {
			c.mu.Lock()
			c.moved, c.moveTried = true, true
			c.mu.Unlock()
			return true
		}
	case <-closing: // closed meanwhile: the next read fails
	}
	c.stay()
	return false
}

// stay makes a connection that did not move drain like any other.
func (c *httpConn) stay() {
	c.mu.Lock()
	c.moveTried = true
	c.draining = true
	c.mu.Unlock()
}

// handover captures the idle connection: a duplicate of its socket, and the
// bytes read from the client but not parsed yet. (Every response is written
// whole before its request ends: nothing waits to go out.)
func (c *httpConn) handover() (Handover, error) {
	f, err := dupConn(c.nc, "downstream")
	if err != nil {
		return Handover{}, err
	}
	var buffered []byte
	if c.in != nil {
		buffered = bytes.Clone(c.in.b[c.r:c.w])
	}
	buffered = append(buffered, c.prefix...)
	since, _ := c.p.tracker.Since(c)
	return Handover{
		Listener:  c.p.name,
		Kind:      KindHTTP,
		StartedAt: since,
		Files:     []*os.File{f},
		Buffered:  buffered,
		Requests:  c.requests,
	}, nil
}

// Adopt implements Migrator: a downstream connection moved here between two
// requests, held until Start, its reader starting with what the predecessor
// had buffered; or a tunnel, both its sockets.
func (p *httpProxy) Adopt(h Handover) (Held, error) {
	if err := p.refuseAdopt(); err != nil {
		return nil, err
	}
	if h.Kind == KindTunnel { // an upgraded connection (httpupgrade.go)
		return p.tunnels.adopt(h, p.tunnelHost)
	}
	if h.Kind != KindHTTP {
		return nil, fmt.Errorf("proxy: listener %s is an http proxy, cannot take a %q connection", p.name, h.Kind)
	}
	if len(h.Files) != 1 {
		return nil, fmt.Errorf("proxy: listener %s: an http connection needs 1 socket, got %d", p.name, len(h.Files))
	}
	nc, err := fileConn(h.Files[0], "downstream")
	if err != nil {
		return nil, err
	}
	c := p.newConn(nc)
	c.prefix = bytes.Clone(h.Buffered)
	c.requests = h.Requests
	return &heldHTTP{c: c, since: h.StartedAt}, nil
}

type heldHTTP struct {
	c     *httpConn
	since time.Time
}

func (h *heldHTTP) Start() {
	c := h.c
	c.remove = c.p.tracker.AddSince(c, h.since)
	go c.serve(startFresh)
}

func (h *heldHTTP) Drop() { h.c.nc.Close() }

// tunnelHost finds the cluster and host, among those the routes lead to, an
// adopted tunnel's upstream socket is connected to; nils if none.
func (p *httpProxy) tunnelHost(up net.Conn) (*cluster.Cluster, *cluster.Host) {
	var cls []*cluster.Cluster
	for _, name := range p.routes.clusters() {
		if c := p.clusters.Get(name); c != nil {
			cls = append(cls, c)
		}
	}
	return findHost(up, cls...)
}
