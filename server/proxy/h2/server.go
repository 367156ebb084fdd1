package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ClientPreface is what an HTTP/2 client sends first (RFC 9113 §3.4).
const ClientPreface = http2.ClientPreface

// ErrBadPreface: what the client sent first is not the HTTP/2 preface.
var ErrBadPreface = errors.New("h2: the client did not send the HTTP/2 preface")

// NewServer prepares the server side of an HTTP/2 connection on nc, whose
// first bytes — the client preface, or part of it — may already have been
// read into prefix. handler runs in a goroutine of its own for every stream
// the client opens; it must end the stream's sending side (WriteHeader with
// end, a body with end, WriteTrailer, or Reset) before it returns.
func NewServer(nc net.Conn, prefix []byte, cfg Config, handler func(*Stream)) *Conn {
	var r io.Reader = nc
	if len(prefix) > 0 {
		r = io.MultiReader(bytes.NewReader(bytes.Clone(prefix)), nc)
	}
	c := newConn(nc, r, true, cfg)
	c.handler = handler
	return c
}

// Serve runs the connection until it ends, and returns once every handler
// has returned: nil when the client or a shutdown closed it, else why.
func (c *Conn) Serve() error {
	err := c.serve()
	c.closeWith(ErrConnClosed)
	c.handlersDone.Wait()
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || c.lingeringNow() {
		return nil
	}
	return err
}

func (c *Conn) lingeringNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lingering
}

func (c *Conn) serve() error {
	if c.cfg.HandshakeTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	}
	var pre [len(ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil {
		return err
	}
	if string(pre[:]) != ClientPreface {
		return ErrBadPreface
	}
	if err := c.writeOpening(); err != nil {
		return err
	}
	c.mu.Lock()
	c.opened = true
	asked := c.shutdownAsked
	c.mu.Unlock()
	if asked {
		c.Shutdown()
	}
	f, err := c.fr.ReadFrame()
	if err != nil {
		return err
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		c.fail(http2.ErrCodeProtocol, "first frame is not SETTINGS")
		return errors.New("h2: the client's first frame is not SETTINGS")
	}
	if err := c.handle(sf); err != nil {
		return err
	}
	c.mu.Lock()
	if !c.lingering {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.armIdleLocked()
	c.mu.Unlock()
	return c.readLoop()
}

// onHeaders takes a header block: a new stream's request (server), a
// response head (client), or trailers.
func (c *Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		return c.headersOfStreamLocked(st, f)
	}
	if !c.server {
		never := id >= c.nextStream
		c.mu.Unlock()
		if never {
			return connErr{http2.ErrCodeProtocol, "HEADERS on a stream never opened"}
		}
		return nil // a stream we reset: its answer is of no use
	}
	switch {
	case id%2 == 0:
		c.mu.Unlock()
		return connErr{http2.ErrCodeProtocol, "client stream with an even id"}
	case id <= c.lastPeerStream:
		c.mu.Unlock()
		return nil // trailers of a stream that is gone (reset)
	case c.goAway == goAwayFinal || c.lingering || c.closed:
		c.mu.Unlock()
		return nil // after the final GOAWAY: ignored, the client retries elsewhere
	}
	c.lastPeerStream = id
	if c.open >= int(c.cfg.MaxConcurrentStreams) && c.settingsAcked {
		// Over what we advertise, and the client knows it: refused (it may
		// send it again). Before it acknowledged our SETTINGS a client may
		// open more (Go's opens up to 100): those wait in the queue below.
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	n, err := contentLength(f.Fields)
	if err != nil {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	st := c.newStreamLocked(id)
	st.header = append([]hpack.HeaderField(nil), f.Fields...)
	st.gotHeader = true
	st.declaredLen = n
	st.tooLarge = c.overLimits(f)
	if f.StreamEnded() {
		st.recvDone = true
		if n > 0 {
			st.abortLocked(ResetError{Code: http2.ErrCodeProtocol})
			c.closeStreamLocked(st)
			c.mu.Unlock()
			c.resetStream(id, http2.ErrCodeProtocol)
			return nil
		}
	}
	if c.handlers >= int(c.cfg.MaxConcurrentStreams) {
		// Handlers of streams the client reset may still run: the stream
		// waits for one to return. A client that resets streams as fast as
		// it opens them fills the queue and is told to calm down.
		// Before it acknowledged our SETTINGS a client may have opened as
		// many as it assumes by default (Go's: 100), legitimately.
		limit := 4 * int(c.cfg.MaxConcurrentStreams)
		if !c.settingsAcked {
			limit = max(limit, 2*DefaultMaxConcurrentStreams)
		}
		if len(c.queued) >= limit {
			c.mu.Unlock()
			return connErr{http2.ErrCodeEnhanceYourCalm, "too many streams reset while their handlers run"}
		}
		c.queued = append(c.queued, st)
		c.mu.Unlock()
		return nil
	}
	c.startHandlerLocked(st)
	c.mu.Unlock()
	return nil
}

// Handlers run on workers: a goroutine whose handler has returned waits
// HandlerLinger for the connection's next stream before it ends, so that
// a busy connection neither starts a goroutine per stream nor grows a new
// stack for each (the copying was a tenth of the CPU under h2c load). An
// idle connection keeps no worker past the linger.
func (c *Conn) startHandlerLocked(st *Stream) {
	c.handlers++
	c.handlersDone.Add(1)
	if c.idleWorkers > 0 && len(c.work) < cap(c.work) {
		c.idleWorkers--
		c.work <- st // only sent to under mu, with room: never blocks
		return
	}
	go c.worker(st)
}

// maxHandoffs bounds the streams handed to waiting workers and not taken
// yet (the work channel's size), whatever the concurrency limit is.
const maxHandoffs = 64

// worker runs st's handler, then the handlers of the streams handed to it
// while it waits, until it has waited HandlerLinger or the connection has
// ended.
//
// idleWorkers (under mu) is the workers waiting less the streams handed to
// them and not taken yet. A worker may leave only while it is above zero;
// at zero every waiting worker, this one too, has a stream in c.work.
func (c *Conn) worker(st *Stream) {
	var linger *time.Timer
	for {
		c.runHandler(st)
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		if c.work == nil {
			c.work = make(chan *Stream, min(max(int(c.cfg.MaxConcurrentStreams), 1), maxHandoffs))
		}
		c.idleWorkers++
		c.mu.Unlock()
		st = nil // not kept alive while waiting
		if linger == nil {
			linger = time.NewTimer(c.cfg.HandlerLinger)
		} else {
			linger.Reset(c.cfg.HandlerLinger)
		}
		select {
		case st = <-c.work:
			linger.Stop()
			continue
		case <-linger.C:
		case <-c.done:
			linger.Stop()
		}
		c.mu.Lock()
		if c.idleWorkers > 0 {
			c.idleWorkers--
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		st = <-c.work // handed to this worker before it could leave
	}
}

// startQueuedLocked starts the handler of the next queued stream that is
// still open (those the client reset meanwhile are dropped).
func (c *Conn) startQueuedLocked() {
	for len(c.queued) > 0 && c.handlers < int(c.cfg.MaxConcurrentStreams) {
		st := c.queued[0]
		c.queued[0] = nil
		c.queued = c.queued[1:]
		if st.err == nil && !c.closed {
			c.startHandlerLocked(st)
		}
	}
}

// headersOfStreamLocked takes a header block on a known stream: trailers,
// or (client) the response head after any informational ones. It unlocks.
func (c *Conn) headersOfStreamLocked(st *Stream, f *http2.MetaHeadersFrame) error {
	id := st.id
	if st.recvDone {
		c.mu.Unlock()
		c.streamError(id, http2.ErrCodeStreamClosed)
		return nil
	}
	if !c.server && !st.gotHeader {
		status, err := strconv.Atoi(f.PseudoValue("status"))
		if err != nil || status < 100 || status > 999 {
			c.mu.Unlock()
			c.streamError(id, http2.ErrCodeProtocol)
			return nil
		}
		if status < 200 {
			c.mu.Unlock()
			if f.StreamEnded() {
				c.streamError(id, http2.ErrCodeProtocol)
			}
			return nil // informational: the final head follows
		}
		n, err := contentLength(f.Fields)
		if err != nil {
			c.mu.Unlock()
			c.streamError(id, http2.ErrCodeProtocol)
			return nil
		}
		st.header = append([]hpack.HeaderField(nil), f.Fields...)
		st.gotHeader = true
		st.tooLarge = f.Truncated || headerListSize(f.Fields) > c.cfg.MaxHeaderListSize
		if !st.lenExempt && status != 204 && status != 304 {
			st.declaredLen = n
		}
		if f.StreamEnded() {
			c.receivedEndLocked(st)
		}
		st.cond.Broadcast()
		c.mu.Unlock()
		return nil
	}
	// Trailers: they end the stream.
	if !f.StreamEnded() {
		c.mu.Unlock()
		c.streamError(id, http2.ErrCodeProtocol)
		return nil
	}
	if st.declaredLen >= 0 && st.recvLen != st.declaredLen {
		c.mu.Unlock()
		c.streamError(id, http2.ErrCodeProtocol)
		return nil
	}
	st.trailer = append([]hpack.HeaderField(nil), f.Fields...)
	c.receivedEndLocked(st)
	st.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

// runHandler serves one stream and settles what the handler left: a
// stream whose answer did not end is reset; one whose answer ended before
// the client's body did is told to stop sending (RST_STREAM NO_ERROR).
func (c *Conn) runHandler(st *Stream) {
	defer c.handlersDone.Done()
	defer func() {
		c.mu.Lock()
		c.handlers--
		code, rst := http2.ErrCodeNo, false
		if !st.closed {
			rst = true
			if !st.sendDone {
				code = http2.ErrCodeInternal
				st.abortLocked(ResetError{Code: code})
			} else {
				st.recvDone, st.noMoreBody = true, true
			}
			c.closeStreamLocked(st)
		}
		c.startQueuedLocked()
		c.afterStreamLocked()
		c.mu.Unlock()
		if rst {
			c.resetStream(st.id, code)
		}
	}()
	c.handler(st)
}
