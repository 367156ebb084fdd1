package cluster

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mosnlite/mosnlite/service/stats"
)

// Conn is an upstream connection of one host, taken from the host's pool
// for one exchange and given back (Put) or closed (Discard) at its end. A
// Conn is used by one goroutine at a time.
type Conn struct {
	net.Conn
	// Attached is state the connection's user keeps with it from one
	// exchange to the next (the HTTP engine's non-blocking I/O helper); the
	// pool never touches it.
	Attached any
	host     *Host
	cl       *Cluster
	id       uint64
	uses     int          // exchanges completed on it before this one
	idleAt   time.Time    // when it went back to the pool
	open     *stats.Gauge // the cluster's open connections, which Close leaves
	closed   atomic.Bool
	// readBy is the read deadline KeepReadDeadline last left on the
	// socket; zero once SetReadDeadline or SetDeadline may have changed it.
	readBy time.Time
}

// SetReadDeadline sets the socket's read deadline (net.Conn's). It and
// SetDeadline and KeepReadDeadline are for the connection's holder, the
// goroutine of its exchange: another goroutine (one that cuts the
// exchange's wait short, or a helper of the exchange) sets its deadline on
// the embedded net.Conn, and so leaves readBy to the holder.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.readBy = time.Time{}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets the socket's read and write deadlines (net.Conn's).
func (c *Conn) SetDeadline(t time.Time) error {
	c.readBy = time.Time{}
	return c.Conn.SetDeadline(t)
}

// KeepReadDeadline bounds the reads that follow by d, and spares the
// runtime a timer update per exchange on a busy connection: it leaves the
// deadline an earlier call set when that one is no later than d and still
// at least half of d's distance from now away, so that a connection
// answering a stream of exchanges has it set about once per half of their
// timeout. A read may then time out before d; the holder, when the time
// read after it is still before d, sets d (SetReadDeadline) and reads on.
func (c *Conn) KeepReadDeadline(d, now time.Time) {
	if k := c.readBy; !k.IsZero() && !k.After(d) && 2*k.Sub(now) >= d.Sub(now) {
		return
	}
	_ = c.Conn.SetReadDeadline(d)
	c.readBy = d
}

// Close closes the connection, which stops counting among the cluster's
// open connections and frees its place under max_connections (once,
// however often it is called, from any goroutine).
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.Conn.Close()
	if c.open != nil {
		c.open.Dec()
	}
	if c.cl != nil {
		c.cl.lim.releaseConn()
	}
	return err
}

// Host returns the host the connection goes to.
func (c *Conn) Host() *Host { return c.host }

// ID is the connection's number in the process (MOSN's
// upstream_connection_id).
func (c *Conn) ID() uint64 { return c.id }

// Reused reports whether the connection carried an exchange before: a
// failure before any response byte may then be the upstream having closed
// it while it idled, and a request that can be sent again may be.
func (c *Conn) Reused() bool { return c.uses > 0 }

// IdleFor is how long the connection idled in the pool before Get returned it.
func (c *Conn) IdleFor(now time.Time) time.Duration {
	if c.idleAt.IsZero() {
		return 0
	}
	return now.Sub(c.idleAt)
}

// pool is one host's idle connections, most recently used last: Get takes
// the warmest one, and the oldest ones age out at the bottom.
type pool struct {
	mu     sync.Mutex
	idle   []*Conn
	max    int
	closed bool
}

// take returns the most recently pooled connection, or nil; stale ones met
// on the way are returned in stale for the caller to close.
func (p *pool) take(now time.Time, maxIdle time.Duration) (c *Conn, stale []*Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(c.idleAt) < maxIdle {
			return c, stale
		}
		stale = append(stale, c)
	}
	return nil, stale
}

// put pools c, or returns false if the pool is full or closed. The oldest
// connection, if past maxIdle, is handed back for closing.
func (p *pool) put(c *Conn, now time.Time, maxIdle time.Duration) (ok bool, stale *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= p.max {
		return false, nil
	}
	if len(p.idle) > 0 && now.Sub(p.idle[0].idleAt) >= maxIdle {
		stale = p.idle[0]
		copy(p.idle, p.idle[1:])
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
	}
	c.idleAt = now
	p.idle = append(p.idle, c)
	return true, stale
}

// takeOldest removes and returns the connection pooled longest, or nil.
func (p *pool) takeOldest() *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 {
		return nil
	}
	c := p.idle[0]
	copy(p.idle, p.idle[1:])
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
	return c
}

// drain empties the pool and returns what it held; closed pools refuse
// connections from now on.
func (p *pool) drain(closeForGood bool) []*Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.idle
	p.idle = nil
	if closeForGood {
		p.closed = true
	}
	return out
}

func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Get returns a connection to h: a pooled one if any (Idle), else a new
// one (Connect).
func (c *Cluster) Get(ctx context.Context, h *Host) (*Conn, error) {
	if conn := c.Idle(h); conn != nil {
		return conn, nil
	}
	return c.Connect(ctx, h)
}

// Idle returns h's most recently pooled connection, or nil if it has none.
// Connections pooled longer than the idle timeout are closed on the way.
func (c *Cluster) Idle(h *Host) *Conn { return c.IdleAt(h, c.now()) }

// IdleAt is Idle for a caller that has just read the clock: now is that
// reading (a proxy reads it once for several uses).
func (c *Cluster) IdleAt(h *Host, now time.Time) *Conn {
	conn, stale := h.pool.take(now, upstreamIdleConnTimeout)
	for _, s := range stale {
		s.Close()
	}
	return conn
}

// Connect opens a new connection to h within the connect timeout, counting
// the attempt; a failure is a *ConnectError. At the cluster's
// max_connections it first closes a pooled connection of another host to
// make room; with none, it waits — as one of at most max_pending_requests
// requests — until ctx ends for a connection to close or one of h's to come
// back to the pool (which it returns then); with no room to wait it fails
// with an *OverflowError.
func (c *Cluster) Connect(ctx context.Context, h *Host) (*Conn, error) {
	counted := false
	for !c.lim.takeConn() {
		if c.evictIdle() {
			continue
		}
		if !counted {
			c.lim.cxOverflow.Inc()
			counted = true
		}
		if err := c.lim.wait(ctx); err != nil {
			return nil, err
		}
		if conn := c.Idle(h); conn != nil {
			return conn, nil
		}
	}
	conn, err := c.dialHost(ctx, h)
	if err != nil {
		c.lim.releaseConn()
		return nil, err
	}
	return conn, nil
}

// evictIdle closes the longest pooled connection of the cluster's first
// host that has one, to make room under max_connections; false if none has.
func (c *Cluster) evictIdle() bool {
	for _, h := range c.hosts {
		if conn := h.pool.takeOldest(); conn != nil {
			conn.Close()
			return true
		}
	}
	return false
}

// Put gives conn back to its host's pool once its exchange has ended
// cleanly; it is closed instead when the host is unhealthy, its pool is
// full or closed, or it has carried max_request_per_conn requests.
func (c *Cluster) Put(conn *Conn) { c.PutAt(conn, c.now()) }

// PutAt is Put for a caller that has just read the clock: now, that
// reading, is when conn became idle.
func (c *Cluster) PutAt(conn *Conn, now time.Time) {
	conn.uses++
	if !conn.host.Healthy() || c.maxUses > 0 && conn.uses >= c.maxUses {
		conn.Close()
		return
	}
	ok, stale := conn.host.pool.put(conn, now, upstreamIdleConnTimeout)
	if stale != nil {
		stale.Close()
	}
	if !ok {
		conn.Close()
		return
	}
	c.lim.wake() // a request waiting for a connection to this host may take it
}

// Discard closes conn: its exchange failed or left it unusable.
func (c *Cluster) Discard(conn *Conn) { conn.Close() }

// IdleConns returns how many pooled connections h has.
func (h *Host) IdleConns() int { return h.pool.len() }

// closeIdle closes h's pooled connections; forGood also stops it pooling more.
func (h *Host) closeIdle(forGood bool) {
	for _, conn := range h.pool.drain(forGood) {
		conn.Close()
	}
}
