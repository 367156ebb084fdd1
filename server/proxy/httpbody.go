package proxy

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

// reqBody is where a request body's framing stands. Its bytes come first
// from the connection's buffer (those that arrived with the head), then
// from the socket into a buffer of its own, which keeps what was read past
// the body's end (the next request) for the connection at the boundary.
type reqBody struct {
	chunked bool
	left    int64 // Content-Length bytes not read yet
	// leftNow mirrors left for the exchange's goroutine to read while a
	// pump (which owns the rest) streams the body.
	leftNow atomic.Int64
	done    bool
	read    int64 // body bytes read (decoded)
	limit   int64 // 0: none
	dec     http1.ChunkedDecoder
	buf     *buffer
	lo, hi  int // buf.b[lo:hi] read and not consumed
}

func (b *reqBody) init(req *http1.Request, limit int64) {
	b.chunked = req.Chunked
	b.left = max(req.ContentLength, 0)
	b.leftNow.Store(b.left)
	b.done = !b.chunked && b.left == 0
	b.limit = limit
	if b.chunked {
		b.dec.Reset()
		b.dec.Status = http1.StatusBadRequest
	}
}

// remaining is how many body bytes are still to come: -1 if unknown
// (chunked). Safe while a pump runs.
func (b *reqBody) remaining() int64 {
	if b.chunked {
		return -1
	}
	return b.leftNow.Load()
}

// What bodyStep does with the body bytes it gets.
const (
	bodyStage   = iota // before the head goes upstream: frame what is buffered after the head, read nothing
	bodyPump           // stream to the upstream connection
	bodyDiscard        // read away
)

// bodyStep takes one helping of body bytes — what is buffered, or else one
// read from the socket, waiting until deadline — and passes them on as
// mode says. Chunked bodies are decoded and framed anew, so that only
// validated framing reaches the upstream.
func (c *httpConn) bodyStep(x *exchange, mode int, deadline time.Time) error {
	b := &x.body
	if b.done {
		return nil
	}
	var in []byte
	fromConn := false
	switch {
	case c.r < c.w:
		in, fromConn = c.in.b[c.r:c.w], true
	case b.lo < b.hi:
		in = b.buf.b[b.lo:b.hi]
	case mode == bodyStage:
		return nil
	default:
		if b.buf == nil {
			b.buf = c.p.bufs.get(upstreamBufSize)
		}
		room := len(b.buf.b)
		if x.bufLimit > 0 && x.bufLimit < room {
			room = x.bufLimit // conn_buffer_limit_bytes
		}
		if !b.chunked && b.left < int64(room) {
			room = int(b.left) // never read past a known end
		}
		n, err := c.readBody(b.buf.b[:room], deadline)
		if n == 0 {
			return err
		}
		b.lo, b.hi = 0, n
		in = b.buf.b[:n]
	}
	consumed := 0
	if !b.chunked {
		n := int(min(int64(len(in)), b.left))
		consumed = n
		b.left -= int64(n)
		b.leftNow.Store(b.left)
		b.read += int64(n)
		b.done = b.left == 0
		if err := c.bodyOut(x, mode, in[:n]); err != nil {
			return err
		}
	} else {
		for consumed < len(in) && !b.done {
			d, n, err := b.dec.Next(in[consumed:])
			consumed += n
			if err != nil {
				return err
			}
			if len(d) > 0 {
				b.read += int64(len(d))
				if b.limit > 0 && b.read > b.limit {
					return errBodyTooLarge
				}
				if err := c.bodyOut(x, mode, d); err != nil {
					return err
				}
			}
			if b.dec.Done() {
				b.done = true
				if err := c.bodyEnd(x, mode); err != nil {
					return err
				}
			}
		}
	}
	if fromConn {
		c.r += consumed
	} else {
		b.lo += consumed
	}
	return nil
}

// readBody reads body bytes from the client into p, waiting until deadline.
func (c *httpConn) readBody(p []byte, deadline time.Time) (int, error) {
	if c.raw != nil {
		n, err := c.raw.tryRead(p)
		if n > 0 {
			c.p.rxBytes.Add(float64(n))
			return n, nil
		}
		if err != errWouldBlock {
			return 0, fmt.Errorf("%w: %w", errClientGone, err)
		}
	}
	c.forgetHandoff()
	_ = c.nc.SetReadDeadline(deadline)
	n, err := c.nc.Read(p)
	if n > 0 {
		c.p.rxBytes.Add(float64(n))
		return n, nil
	}
	if isTimeout(err) {
		return 0, err
	}
	return 0, fmt.Errorf("%w: %v", errClientGone, err)
}

// bodyOut passes body data on.
func (c *httpConn) bodyOut(x *exchange, mode int, d []byte) error {
	switch mode {
	case bodyStage:
		if x.body.chunked {
			x.ob = http1.AppendChunkHeader(x.ob, len(d))
			x.ob = append(x.ob, d...)
			x.ob = append(x.ob, '\r', '\n')
		} else if len(d) <= 64<<10 {
			x.ob = append(x.ob, d...) // one write with the head
		} else {
			x.staged = d
		}
	case bodyPump:
		if !x.body.chunked {
			return x.writeUp(d, c.p.idleTimeout)
		}
		if len(x.pb)+len(d)+32 > cap(x.pb) {
			if err := x.flushPump(c.p.idleTimeout); err != nil {
				return err
			}
		}
		if len(d)+32 > cap(x.pb) {
			x.pb = http1.AppendChunkHeader(x.pb, len(d))
			if err := x.flushPump(c.p.idleTimeout); err != nil {
				return err
			}
			if err := x.writeUp(d, c.p.idleTimeout); err != nil {
				return err
			}
			x.pb = append(x.pb, '\r', '\n')
			return nil
		}
		x.pb = http1.AppendChunkHeader(x.pb, len(d))
		x.pb = append(x.pb, d...)
		x.pb = append(x.pb, '\r', '\n')
	}
	return nil
}

// bodyEnd ends a chunked body: the last chunk and the validated trailers.
func (c *httpConn) bodyEnd(x *exchange, mode int) error {
	out := &x.ob
	switch mode {
	case bodyDiscard:
		return nil
	case bodyPump:
		out = &x.pb
	}
	*out = append(*out, "0\r\n"...)
	*out = append(*out, x.body.dec.Trailers()...)
	*out = append(*out, "\r\n"...)
	return nil
}

// writeUp writes request body bytes upstream, waiting at most timeout.
func (x *exchange) writeUp(d []byte, timeout time.Duration) error {
	_ = x.pumpTo.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := x.pumpTo.Write(d); err != nil {
		return fmt.Errorf("send request body: %w", err)
	}
	return nil
}

func (x *exchange) flushPump(timeout time.Duration) error {
	if len(x.pb) == 0 {
		return nil
	}
	err := x.writeUp(x.pb, timeout)
	x.pb = x.pb[:0]
	return err
}

// startPump streams the rest of the request body upstream from a goroutine
// of its own, so that the answer can stream back at the same time (an
// upstream may answer, or echo, before the body ends). Only a body that did
// not arrive whole with its head needs it.
func (c *httpConn) startPump(x *exchange, up *cluster.Conn) {
	if x.body.chunked && x.pbBuf == nil {
		x.pbBuf = c.p.bufs.get(upstreamBufSize)
		x.pb = x.pbBuf.b[:0]
	}
	x.pumping, x.pumpTo = true, up
	x.pump.Add(1)
	go c.pumpBody(x, up)
}

func (c *httpConn) pumpBody(x *exchange, up *cluster.Conn) {
	defer x.pump.Done()
	var err error
	for !x.body.done && err == nil {
		if err = c.bodyStep(x, bodyPump, time.Now().Add(c.p.idleTimeout)); err == nil {
			err = x.flushPump(c.p.idleTimeout)
		}
	}
	if err != nil && !x.pumpStop.Load() {
		x.pumpErr = err
		// The upstream has half a request: it is of no use any more, and
		// closing it wakes the exchange waiting on it.
		_ = up.Close()
	} else if err == nil {
		x.armHeadDeadline(up)
	}
	x.pumpDone.Store(true)
}

// armHeadDeadline starts the route's timeout for the response head once
// the whole body went up, if the head is still awaited.
func (x *exchange) armHeadDeadline(up *cluster.Conn) {
	x.headMu.Lock()
	defer x.headMu.Unlock()
	if x.headWait > 0 {
		// On the embedded socket: the pump is not the connection's holder
		// (cluster.Conn), and nothing was kept (roundTrip set none).
		_ = up.Conn.SetReadDeadline(time.Now().Add(x.headWait))
	}
}

// stopPump stops a pump that still runs and waits for it.
func (c *httpConn) stopPump(x *exchange) {
	if !x.pumping {
		return
	}
	if !x.pumpDone.Load() {
		x.pumpStop.Store(true)
		_ = c.nc.SetReadDeadline(aLongTimeAgo())
		_ = x.pumpTo.SetWriteDeadline(aLongTimeAgo())
	}
	x.pump.Wait()
	x.pumping = false
	c.endKnown = false
	c.forgetHandoff() // once the pump, which sets it too, is done
}

// discardBody reads away what is left of a request body, within limits, so
// that the next request can be read. It reports success.
func (c *httpConn) discardBody(x *exchange) bool {
	if left := x.body.remaining(); left > maxDiscard {
		return false
	}
	c.endKnown = false // it waits for the client
	deadline := time.Now().Add(min(discardTimeout, c.p.idleTimeout))
	start := x.body.read
	for !x.body.done {
		if x.body.read-start > maxDiscard {
			return false
		}
		if err := c.bodyStep(x, bodyDiscard, deadline); err != nil {
			return false
		}
	}
	return true
}
