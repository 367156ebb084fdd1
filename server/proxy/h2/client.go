package h2

import (
	"net"

	"golang.org/x/net/http2/hpack"
)

// NewClient starts the client side of an HTTP/2 connection on nc (prior
// knowledge: the preface and our SETTINGS go out at once) and its reader.
// Streams are opened with Reserve, then OpenStream.
func NewClient(nc net.Conn, cfg Config) (*Conn, error) {
	c := newConn(nc, nc, false, cfg)
	if err := c.writeOpening(); err != nil {
		c.closeWith(err)
		return nil, err
	}
	go func() {
		err := c.readLoop()
		c.closeWith(err)
	}()
	c.mu.Lock()
	c.armIdleLocked()
	c.mu.Unlock()
	return c, nil
}

// Reserve claims room for one more stream: false when the connection takes
// none now (the peer's concurrency limit is reached, it is going away, it
// is closed). A reservation is used by OpenStream or given back by
// Unreserve.
func (c *Conn) Reserve() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.lingering || c.peerGoAway || c.goAway != goAwayNone || c.nextStream > maxStreamID-2*uint32(c.reserved+1) {
		return false
	}
	if uint32(c.open+c.reserved) >= c.peerMaxStreams {
		return false
	}
	c.reserved++
	c.markBusyLocked()
	return true
}

// Unreserve gives back a reservation that OpenStream will not use.
func (c *Conn) Unreserve() {
	c.mu.Lock()
	c.reserved--
	c.afterStreamLocked()
	c.mu.Unlock()
}

// Gone reports that the connection will take no new stream again.
func (c *Conn) Gone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || c.lingering || c.peerGoAway || c.goAway != goAwayNone
}

// Idle reports whether the connection has no stream open or reserved.
func (c *Conn) Idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open == 0 && c.reserved == 0
}

// OpenStream uses a reservation (see Reserve) to open a stream with the
// request head fields (pseudo-fields first); end says it has no body.
// head marks a HEAD request, whose response's content-length is not its
// body's. ErrUnavailable means the connection no longer takes streams;
// nothing was sent.
func (c *Conn) OpenStream(fields []hpack.HeaderField, end, head bool) (*Stream, error) {
	if err := c.lockWrite(); err != nil {
		_ = c.unlockWrite(err)
		c.Unreserve()
		return nil, ErrUnavailable
	}
	c.mu.Lock()
	if c.closed || c.lingering || c.peerGoAway || c.nextStream > maxStreamID {
		c.reserved--
		c.afterStreamLocked()
		c.mu.Unlock()
		_ = c.unlockWrite(nil)
		return nil, ErrUnavailable
	}
	id := c.nextStream
	c.nextStream += 2
	c.reserved--
	st := c.newStreamLocked(id)
	st.lenExempt = head
	c.mu.Unlock()
	if err := c.unlockWrite(c.writeHeadersLocked(id, fields, end)); err != nil {
		c.mu.Lock()
		st.abortLocked(ErrConnClosed)
		c.closeStreamLocked(st)
		c.mu.Unlock()
		return nil, err
	}
	if end {
		st.sentEnd()
	}
	return st, nil
}

// ReadHeader waits for the response head (informational ones skipped),
// within the read deadline.
func (st *Stream) ReadHeader() ([]hpack.HeaderField, error) {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for !st.gotHeader {
		if st.err != nil {
			return nil, st.err
		}
		if err := st.waitLocked(st.readDeadline); err != nil {
			return nil, err
		}
	}
	return st.header, nil
}
