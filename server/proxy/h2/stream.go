package h2

import (
	"errors"
	"io"
	"math"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var errWriteAfterEnd = errors.New("h2: write after the end of the stream")

// Stream is one HTTP/2 stream. Its received side (Header, Read, Trailer)
// and its sending side (WriteHeader, Write, WriteTrailer) may each be used
// by one goroutine at a time, concurrently with each other.
type Stream struct {
	c    *Conn
	id   uint32
	cond sync.Cond // L is c.mu

	// Received side, under c.mu.
	header      []hpack.HeaderField
	tooLarge    bool
	gotHeader   bool // a final head arrived (the request's, or the response's)
	trailer     []hpack.HeaderField
	rbuf        []byte // rbuf[roff:] received, not yet read
	roff        int
	recvWindow  int32
	recvUnacked int32
	recvDone    bool // END_STREAM received (or the peer stopped sending by NO_ERROR)
	noMoreBody  bool
	declaredLen int64 // content-length of what is received, -1 if none
	recvLen     int64
	lenExempt   bool // a HEAD request's response: content-length is not its body's

	// Sending side, under c.mu.
	sendWindow int32
	sendDone   bool

	err     error         // why the stream ended early: reset, connection closed
	aborted chan struct{} // closed with err
	onAbort func()        // called (in a goroutine) with the abort; see OnAbort
	closed  bool

	readDeadline, writeDeadline time.Time
	timer                       *time.Timer
}

func (c *Conn) newStreamLocked(id uint32) *Stream {
	st := &Stream{
		c: c, id: id,
		recvWindow:  int32(c.cfg.StreamWindow),
		sendWindow:  c.peerInitWindow,
		declaredLen: -1,
		aborted:     make(chan struct{}),
	}
	st.cond.L = &c.mu
	c.streams[id] = st
	c.open++
	c.markBusyLocked()
	return st
}

// ID returns the stream's id.
func (st *Stream) ID() uint32 { return st.id }

// Header returns the received head's fields (the request's on a server,
// the response's on a client, after ReadHeader), pseudo-fields first. The
// slice is the stream's; it must not be modified.
func (st *Stream) Header() []hpack.HeaderField {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.header
}

// TooLarge reports a received head over the connection's header limits:
// Header then holds only what fitted.
func (st *Stream) TooLarge() bool {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.tooLarge
}

// Trailer returns the received trailer fields; complete once Read has
// returned io.EOF.
func (st *Stream) Trailer() []hpack.HeaderField {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.trailer
}

// BodyEnded reports whether the received body has ended (END_STREAM), so
// that Read returns io.EOF once it has returned what is buffered.
func (st *Stream) BodyEnded() bool {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.recvDone && !st.noMoreBody
}

// Aborted is closed when the stream ends before both sides finished: reset
// by either peer, or its connection closed. Err says why.
func (st *Stream) Aborted() <-chan struct{} { return st.aborted }

// OnAbort has f called, in a goroutine of its own, when the stream is
// aborted (at once if it already was): a watch on the stream without a
// goroutine waiting on Aborted. nil cancels it; a later call replaces an
// earlier one. An f that races with its cancel may still be called once,
// so it must tolerate a call after the work it guards ended.
func (st *Stream) OnAbort(f func()) {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	if f != nil && st.err != nil {
		go f()
		return
	}
	st.onAbort = f
}

// Err returns why the stream was aborted, or nil.
func (st *Stream) Err() error {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.err
}

// SetReadDeadline bounds Read and ReadHeader; zero is no deadline.
func (st *Stream) SetReadDeadline(t time.Time) {
	st.c.mu.Lock()
	st.readDeadline = t
	st.cond.Broadcast()
	st.c.mu.Unlock()
}

// SetWriteDeadline bounds the waits of Write for the peer's flow-control
// windows; zero is no deadline.
func (st *Stream) SetWriteDeadline(t time.Time) {
	st.c.mu.Lock()
	st.writeDeadline = t
	st.cond.Broadcast()
	st.c.mu.Unlock()
}

// waitLocked waits for the stream's condition until deadline.
func (st *Stream) waitLocked(deadline time.Time) error {
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return errTimeout
		}
		if st.timer == nil {
			st.timer = time.AfterFunc(d, st.wake)
		} else {
			st.timer.Reset(d)
		}
	}
	st.cond.Wait()
	return nil
}

func (st *Stream) wake() {
	st.c.mu.Lock()
	st.cond.Broadcast()
	st.c.mu.Unlock()
}

// abortLocked ends the stream early with err.
func (st *Stream) abortLocked(err error) {
	if st.err == nil {
		st.err = err
		close(st.aborted)
		if f := st.onAbort; f != nil {
			st.onAbort = nil
			go f()
		}
	}
	st.cond.Broadcast()
}

func (st *Stream) finishLocked() {
	if st.timer != nil {
		st.timer.Stop()
	}
	st.cond.Broadcast()
}

// appendLocked buffers received body bytes; the window bounds the buffer.
func (st *Stream) appendLocked(data []byte) {
	if len(data) == 0 {
		return
	}
	if st.roff > 0 && st.roff >= len(st.rbuf)/2 {
		n := copy(st.rbuf, st.rbuf[st.roff:])
		st.rbuf = st.rbuf[:n]
		st.roff = 0
	}
	st.rbuf = append(st.rbuf, data...)
}

// takeCreditLocked returns the stream window to give back now (0 while
// less than half of it is consumed, or when nothing more will come).
func (st *Stream) takeCreditLocked() uint32 {
	if st.recvDone || st.recvUnacked < int32(st.c.cfg.StreamWindow/2) {
		return 0
	}
	n := st.recvUnacked
	st.recvUnacked = 0
	st.recvWindow += n
	return uint32(n)
}

// Read reads the received body: io.EOF at its end.
func (st *Stream) Read(p []byte) (int, error) {
	c := st.c
	c.mu.Lock()
	for len(st.rbuf)-st.roff == 0 {
		switch {
		case st.recvDone:
			c.mu.Unlock()
			return 0, io.EOF
		case st.err != nil:
			err := st.err
			c.mu.Unlock()
			return 0, err
		}
		if err := st.waitLocked(st.readDeadline); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	n := copy(p, st.rbuf[st.roff:])
	st.roff += n
	if st.roff == len(st.rbuf) {
		st.rbuf, st.roff = st.rbuf[:0], 0
	}
	st.recvUnacked += int32(n)
	c.recvUnacked += int32(n)
	supd, cupd := st.takeCreditLocked(), c.takeConnCreditLocked()
	c.mu.Unlock()
	if supd > 0 || cupd > 0 {
		_ = c.write(func(fr *http2.Framer) error {
			if supd > 0 {
				if err := fr.WriteWindowUpdate(st.id, supd); err != nil {
					return err
				}
			}
			if cupd > 0 {
				return fr.WriteWindowUpdate(0, cupd)
			}
			return nil
		})
	}
	return n, nil
}

// Buffered returns how many received body bytes wait to be read.
func (st *Stream) Buffered() int {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return len(st.rbuf) - st.roff
}

func (st *Stream) sendCheckLocked() error {
	switch {
	case st.err != nil:
		return st.err
	case st.sendDone:
		return errWriteAfterEnd
	case st.c.closed:
		return ErrConnClosed
	}
	return nil
}

// sentEnd records that END_STREAM went out.
func (st *Stream) sentEnd() {
	c := st.c
	c.mu.Lock()
	st.sendDone = true
	if st.recvDone {
		c.closeStreamLocked(st)
	}
	c.mu.Unlock()
}

// WriteHeader sends a head (a response's on a server); end ends the
// stream with it.
func (st *Stream) WriteHeader(fields []hpack.HeaderField, end bool) error {
	c := st.c
	c.mu.Lock()
	err := st.sendCheckLocked()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.lockWrite(); err != nil {
		return c.unlockWrite(err)
	}
	if err := c.unlockWrite(c.writeHeadersLocked(st.id, fields, end)); err != nil {
		return err
	}
	if end {
		st.sentEnd()
	}
	return nil
}

// WriteResponse sends a head and a whole body, ending the stream: as one
// write of HEADERS and DATA when the flow-control windows and the peer's
// frame size take the body at once, else as WriteHeader and WriteData do.
func (st *Stream) WriteResponse(fields []hpack.HeaderField, body []byte) error {
	c := st.c
	n := int32(min(len(body), math.MaxInt32))
	c.mu.Lock()
	err := st.sendCheckLocked()
	whole := err == nil && n > 0 && int(n) == len(body) && st.sendWindow >= n && c.sendWindow >= n && uint32(n) <= c.peerMaxFrame
	if whole {
		st.sendWindow -= n
		c.sendWindow -= n
	}
	c.mu.Unlock()
	switch {
	case err != nil:
		return err
	case !whole:
		if err := st.WriteHeader(fields, len(body) == 0); err != nil || len(body) == 0 {
			return err
		}
		_, err := st.WriteData(body, true)
		return err
	}
	if err := c.lockWrite(); err != nil {
		return c.unlockWrite(err)
	}
	err = c.writeHeadersLocked(st.id, fields, false)
	if err == nil {
		err = c.fr.WriteData(st.id, true, body)
	}
	if err := c.unlockWrite(err); err != nil {
		return err
	}
	st.sentEnd()
	return nil
}

// WriteTrailer sends trailer fields and ends the stream.
func (st *Stream) WriteTrailer(fields []hpack.HeaderField) error {
	return st.WriteHeader(fields, true)
}

// Write sends body bytes, waiting for flow-control window as needed.
func (st *Stream) Write(p []byte) (int, error) { return st.WriteData(p, false) }

// CloseWrite ends the stream's sending side (an empty DATA frame with
// END_STREAM).
func (st *Stream) CloseWrite() error {
	_, err := st.WriteData(nil, true)
	return err
}

// WriteData sends p, in frames the peer's windows and frame size allow,
// the last one with END_STREAM if end.
func (st *Stream) WriteData(p []byte, end bool) (int, error) {
	c := st.c
	written := 0
	for {
		c.mu.Lock()
		for {
			if err := st.sendCheckLocked(); err != nil {
				c.mu.Unlock()
				return written, err
			}
			if len(p) == 0 || st.sendWindow > 0 && c.sendWindow > 0 {
				break
			}
			if err := st.waitLocked(st.writeDeadline); err != nil {
				c.mu.Unlock()
				return written, err
			}
		}
		k := len(p)
		k = min(k, int(st.sendWindow), int(c.sendWindow), int(c.peerMaxFrame))
		st.sendWindow -= int32(k)
		c.sendWindow -= int32(k)
		c.mu.Unlock()
		last := end && k == len(p)
		err := c.write(func(fr *http2.Framer) error { return fr.WriteData(st.id, last, p[:k]) })
		if err != nil {
			return written, err
		}
		written += k
		p = p[k:]
		if last {
			st.sentEnd()
			return written, nil
		}
		if len(p) == 0 {
			return written, nil
		}
	}
}

// Reset ends the stream with RST_STREAM code; Read and Write fail from
// now on. A stream that has ended both ways is left alone.
func (st *Stream) Reset(code http2.ErrCode) {
	c := st.c
	c.mu.Lock()
	if st.closed {
		c.mu.Unlock()
		return
	}
	st.abortLocked(ResetError{Code: code})
	c.closeStreamLocked(st)
	c.mu.Unlock()
	c.resetStream(st.id, code)
}
