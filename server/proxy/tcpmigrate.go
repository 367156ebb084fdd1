package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/mosnlite/mosnlite/server/cluster"
)

// Kind implements Migrator.
func (p *tcpProxy) Kind() string { return KindTCP }

// Migrate asks the session to move: at once if both directions run, as soon
// as they do if it is still connecting. A half-closed session stays and
// runs to its end.
func (s *tcpSession) Migrate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.moveWanted || s.moveTried {
		return
	}
	s.moveWanted = true
	if s.running {
		s.pauseLocked()
	}
}

// pauseLocked stops both directions at their next safe point: between a
// read and a write, or in the middle of a write (what is unwritten stays
// pending). Expired deadlines wake whatever they wait on.
func (s *tcpSession) pauseLocked() {
	if _, ok := s.down.(syscall.Conn); !ok || s.ended > 0 || s.p.parkFunc() == nil {
		// A wrapped (TLS) client connection has no socket to hand over,
		// and a pause could break it (a TLS write cut by a deadline is
		// lost); a half-closed session is ending anyway; or nobody takes
		// it: it drains.
		s.moveTried = true
		return
	}
	s.decided = make(chan struct{})
	s.parked = 0
	s.pausing.Store(true)
	_ = s.down.SetDeadline(aLongTimeAgo())
	_ = s.up.SetDeadline(aLongTimeAgo())
}

// park holds a copy direction at the pause until the move is decided, and
// reports whether the session moved. The second direction to park hands the
// session over.
func (s *tcpSession) park() bool {
	s.mu.Lock()
	if !s.pausing.Load() {
		s.mu.Unlock()
		return false
	}
	s.parked++
	both := s.parked == 2
	decided := s.decided
	s.mu.Unlock()
	if both {
		s.handOver()
	}
	select {
	case <-decided:
	case <-s.ctx.Done():
		return false // closed meanwhile: the next I/O fails
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.moved
}

// handOver runs with both directions parked: it duplicates both sockets and
// passes them, with the pending bytes, to the migration.
func (s *tcpSession) handOver() {
	park := s.p.parkFunc()
	down, err := dupConn(s.down, "downstream")
	if err != nil {
		s.p.log.WithError(err).WithField("kind", s.p.kind).Warn("session cannot move; it stays")
		s.decide(false)
		return
	}
	up, err := dupConn(s.up, "upstream")
	if err != nil {
		down.Close()
		s.p.log.WithError(err).WithField("kind", s.p.kind).Warn("session cannot move; it stays")
		s.decide(false)
		return
	}
	since, _ := s.p.tracker.Since(s)
	park(NewParked(Handover{
		Listener:     s.p.name,
		Kind:         s.p.kind,
		StartedAt:    since,
		Files:        []*os.File{down, up},
		ToUpstream:   bytes.Clone(s.toUp.pending),
		ToDownstream: bytes.Clone(s.toDown.pending),
		Requests:     s.requests,
	}, s.decide))
}

// decide ends a pause: moved, the directions return and the session closes
// its copies; not moved, they carry on and the session drains.
func (s *tcpSession) decide(moved bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decideLocked(moved)
}

func (s *tcpSession) decideLocked(moved bool) {
	if !s.pausing.Load() {
		return
	}
	s.pausing.Store(false)
	s.moveTried = true
	s.moved = moved
	if !moved {
		s.touch() // the pause was not idleness
	}
	close(s.decided)
}

// dirEnded records that a copy direction returned. A pause waiting for it
// can no longer complete: the session is half-closed and stays.
func (s *tcpSession) dirEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended++
	if s.pausing.Load() && s.parked < 2 {
		s.decideLocked(false)
	}
}

// Adopt implements Migrator: a session moved here, both sockets connected,
// held until Start.
func (p *tcpProxy) Adopt(h Handover) (Held, error) {
	if err := p.refuseAdopt(); err != nil {
		return nil, err
	}
	if h.Kind != KindTCP {
		return nil, fmt.Errorf("proxy: listener %s is tcp_proxy, cannot take a %q connection", p.name, h.Kind)
	}
	return p.owner.adopt(h, p.hostOf)
}

// adopt makes the held session of a handover of o's kind: both sockets,
// connected, and what was read and not yet written. hostOf, if set, names
// the cluster and host the upstream socket is connected to.
func (o *sessionOwner) adopt(h Handover, hostOf func(net.Conn) (*cluster.Cluster, *cluster.Host)) (Held, error) {
	if len(h.Files) != 2 {
		return nil, fmt.Errorf("proxy: listener %s: a %s session needs 2 sockets, got %d", o.name, o.kind, len(h.Files))
	}
	down, err := fileConn(h.Files[0], "downstream")
	if err != nil {
		return nil, err
	}
	up, err := fileConn(h.Files[1], "upstream")
	if err != nil {
		down.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := h.StartedAt
	if started.IsZero() {
		started = time.Now()
	}
	s := &tcpSession{p: o, down: down, up: up, ctx: ctx, cancel: cancel, started: started,
		id: o.clusters.NextConnID(), requests: h.Requests}
	limit := 0
	if hostOf != nil {
		cl, host := hostOf(up)
		s.host = host
		if cl != nil {
			s.upc = cl.Inherited(up, host)
			limit = cl.BufferLimit()
		}
	}
	s.initPipes(h.ToUpstream, h.ToDownstream, limit)
	return &heldTCP{s: s, since: h.StartedAt}, nil
}

// hostOf finds the host an adopted upstream socket is connected to (nil if
// none matches), for least-request accounting; the session's cluster
// counts the connection as open either way.
func (p *tcpProxy) hostOf(up net.Conn) (*cluster.Cluster, *cluster.Host) {
	_, h := findHost(up, p.cluster)
	return p.cluster, h
}

// findHost returns the cluster among cls, and its host, whose address an
// upstream socket is connected to; nils if none.
func findHost(up net.Conn, cls ...*cluster.Cluster) (*cluster.Cluster, *cluster.Host) {
	ra := up.RemoteAddr()
	if ra == nil {
		return nil, nil
	}
	for _, c := range cls {
		for _, h := range c.Hosts() {
			if h.Address() == ra.String() {
				return c, h
			}
		}
	}
	return nil, nil
}

type heldTCP struct {
	s     *tcpSession
	since time.Time
}

func (h *heldTCP) Start() {
	h.s.remove = h.s.p.tracker.AddSince(h.s, h.since)
	go h.s.serve()
}

// serve pumps a tracked session that is connected already, until it ends
// or moves.
func (s *tcpSession) serve() {
	defer s.remove()
	defer s.recoverPanic()
	defer s.recordEnd()
	defer s.Close()
	s.pump(s.p.log.WithField("client", remoteString(s.down)))
}

func (h *heldTCP) Drop() { h.s.Close() }
