package proxy

import (
	"bytes"
	"fmt"
	"os"
	"time"
)

// Kind implements Migrator.
func (p *httpProxy) Kind() string { return KindHTTP }

// Migrate asks the connection to move at its next request boundary: at once
// if it is idle, after the response if a request is in flight.
func (c *httpConn) Migrate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.draining || c.moveWanted || c.moveTried {
		return
	}
	c.moveWanted = true
	if c.phase == phaseIdle {
		_ = c.nc.SetReadDeadline(aLongTimeAgo()) // wakes the idle wait
	}
}

// wantsMoveLocked: a move was asked for and nothing has overridden it.
func (c *httpConn) wantsMoveLocked() bool {
	return c.moveWanted && !c.moveTried && !c.draining && !c.closed
}

// park hands the idle connection over and waits for the decision. It
// reports whether the connection moved; if not, it drains from now on.
func (c *httpConn) park() bool {
	park := c.p.parkFunc()
	if park == nil {
		c.stay()
		return false
	}
	h, err := c.handover()
	if err != nil {
		c.log.WithError(err).Warn("http connection cannot move; it stays")
		c.stay()
		return false
	}
	decision := make(chan bool, 1)
	park(NewParked(h, func(moved bool) { decision <- moved }))
	select {
	case moved := <-decision:
		if moved {
			c.mu.Lock()
			c.moved, c.moveTried = true, true
			c.mu.Unlock()
			return true
		}
	case <-c.ctx.Done(): // closed meanwhile: the next read fails
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
// bytes read from the client but not parsed yet.
func (c *httpConn) handover() (Handover, error) {
	if err := c.bw.Flush(); err != nil {
		return Handover{}, fmt.Errorf("proxy: flush before moving: %w", err)
	}
	f, err := dupConn(c.nc, "downstream")
	if err != nil {
		return Handover{}, err
	}
	n := c.br.Buffered()
	buffered := make([]byte, 0, n+len(c.rd.prefix))
	b, _ := c.br.Peek(n)
	buffered = append(append(buffered, b...), c.rd.prefix...)
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
// requests, held until Start. Its reader starts with what the predecessor
// had buffered.
func (p *httpProxy) Adopt(h Handover) (Held, error) {
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
	c.rd.prefix = bytes.Clone(h.Buffered)
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
	go c.serve()
}

func (h *heldHTTP) Drop() {
	h.c.cancel()
	h.c.nc.Close()
}
