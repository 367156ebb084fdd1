package h2

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Defaults of Config's zero fields.
const (
	DefaultMaxConcurrentStreams = 100
	DefaultStreamWindow         = 256 << 10
	DefaultConnWindow           = 1 << 20
	DefaultMaxHeaderListSize    = 64 << 10
	DefaultPingTimeout          = time.Second
	DefaultWriteTimeout         = time.Minute
)

const (
	initialWindow   = 65535 // RFC 9113 §6.9.2
	maxWindow       = 1<<31 - 1
	maxStreamID     = 1<<31 - 1
	minFrameSize    = 16384
	maxFrameSize    = 1<<24 - 1
	headerTableSize = 4096
	// lingerTimeout bounds how long a closing connection reads away what
	// the peer still sends after our last frame, so that it is not reset
	// before it read that frame.
	lingerTimeout = time.Second
	// DefaultHandlerLinger is Config.HandlerLinger's default.
	DefaultHandlerLinger = time.Second
	// maxEmptyDataPerSec bounds empty DATA frames without END_STREAM.
	maxEmptyDataPerSec = 1000
)

// Config is a connection's limits and timeouts; zero fields take the
// defaults above.
type Config struct {
	// MaxConcurrentStreams is what a server lets a client have open at
	// once (SETTINGS_MAX_CONCURRENT_STREAMS), counting handlers still
	// running for streams the client reset.
	MaxConcurrentStreams uint32
	// StreamWindow and ConnWindow are the receive windows we advertise: per
	// stream, and for the whole connection.
	StreamWindow, ConnWindow uint32
	// MaxHeaderListSize bounds a received header list (RFC 9113 §6.5.2
	// counting: name, value and 32 bytes per field); MaxHeaderCount its
	// fields (0: no count limit). Over them the stream is marked TooLarge.
	MaxHeaderListSize uint32
	MaxHeaderCount    int
	// IdleTimeout closes a connection that has had no stream for this long
	// (a server says GOAWAY first). 0: never.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to the socket.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds a server's wait for the client preface and
	// first SETTINGS. 0: none.
	HandshakeTimeout time.Duration
	// PingTimeout bounds the wait for the PING acknowledgement between a
	// graceful shutdown's two GOAWAY frames.
	PingTimeout time.Duration
	// OnBusy, if set, is called with true when the connection gets its
	// first stream and false when its last one ends (the tracker's active
	// and idle states), from a goroutine of its own without locks held.
	// The calls come in the order of the changes, one at a time; changes
	// that come faster are coalesced, and the last call is always the
	// state the connection is in. Until the first call, a connection
	// counts as busy (as a connection is tracked from its accept).
	OnBusy func(busy bool)
	Log    *logrus.Entry
	// HandlerLinger is how long a server's handler goroutine waits for
	// the connection's next stream before it ends (server.go); 0: 1 s.
	HandlerLinger time.Duration
}

func (cfg *Config) fill() {
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.StreamWindow < initialWindow {
		cfg.StreamWindow = max(cfg.StreamWindow, DefaultStreamWindow)
	}
	cfg.StreamWindow = min(cfg.StreamWindow, maxWindow)
	if cfg.ConnWindow < initialWindow {
		cfg.ConnWindow = max(cfg.ConnWindow, DefaultConnWindow)
	}
	cfg.ConnWindow = min(cfg.ConnWindow, maxWindow)
	if cfg.MaxHeaderListSize == 0 {
		cfg.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if cfg.HandlerLinger <= 0 {
		cfg.HandlerLinger = DefaultHandlerLinger
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		cfg.Log = logrus.NewEntry(l)
	}
}

// Errors a stream's user sees.
var (
	// ErrConnClosed: the connection closed before the stream ended.
	ErrConnClosed = errors.New("h2: connection closed")
	// ErrRefused: the peer did not process the stream (REFUSED_STREAM, or
	// a GOAWAY below its id): it may be sent again on another connection.
	ErrRefused = errors.New("h2: stream refused by the peer, not processed")
	// ErrUnavailable: the connection takes no new stream (going away,
	// closed, full).
	ErrUnavailable = errors.New("h2: connection takes no new stream")
	errTimeout     = timeoutError{}
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "h2: deadline exceeded" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// ResetError is a stream ended by RST_STREAM, from the peer or by us.
type ResetError struct {
	Code   http2.ErrCode
	Remote bool // the peer reset it
}

func (e ResetError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by the peer"
	}
	return fmt.Sprintf("h2: stream reset %s: %v", who, e.Code)
}

// goAway states of our side.
const (
	goAwayNone     = iota
	goAwayGraceful // the first GOAWAY (maximum stream id) and a PING are out
	goAwayFinal    // the GOAWAY with the last stream id we process is out
)

var drainPing = [8]byte{'m', 'o', 's', 'n', 'l', 'i', 't', 'e'}

// Conn is one HTTP/2 connection, server or client side.
type Conn struct {
	cfg     Config
	nc      net.Conn
	server  bool
	fr      *http2.Framer
	br      *bufio.Reader
	bw      *bufio.Writer
	henc    *hpack.Encoder
	hbuf    bytes.Buffer
	handler func(*Stream)
	log     *logrus.Entry

	wmu     sync.Mutex
	writers atomic.Int32 // goroutines holding or waiting for wmu
	werr    error        // under wmu: the write that failed
	wsetAt  time.Time    // under wmu: when the write deadline was last pushed

	mu             sync.Mutex
	streams        map[uint32]*Stream
	peerMaxFrame   uint32
	peerInitWindow int32
	peerMaxStreams uint32
	sendWindow     int32 // connection-level: what we may send
	recvWindow     int32 // connection-level: what the peer may still send
	recvUnacked    int32 // consumed, not yet given back
	lastPeerStream uint32
	settingsAcked  bool   // the peer acknowledged our SETTINGS
	nextStream     uint32 // client: the next stream id
	reserved       int    // client: slots reserved, not opened yet
	open           int    // streams not closed
	handlers       int    // server: handlers running
	queued         []*Stream
	// Server: the workers that wait for a stream to handle, less the
	// streams handed to them in work and not taken yet (server.go).
	idleWorkers    int
	work           chan *Stream
	goAway         int
	peerGoAway     bool
	peerGoAwayLast uint32
	closed         bool
	lingering      bool // our side is shut; reading away what comes
	closeErr       error
	idleTimer      *time.Timer
	pingTimer      *time.Timer
	calmSince      time.Time
	emptyData      int
	busy           bool // it has streams or handlers
	busyTold       bool // the last state OnBusy was called with
	busyTelling    bool // tellBusy's goroutine runs
	opened         bool // server: our SETTINGS went out (a GOAWAY may follow)
	shutdownAsked  bool // server: Shutdown came before that

	handlersDone sync.WaitGroup
	done         chan struct{}
}

func newConn(nc net.Conn, r io.Reader, server bool, cfg Config) *Conn {
	cfg.fill()
	c := &Conn{
		cfg: cfg, nc: nc, server: server, log: cfg.Log,
		streams:        map[uint32]*Stream{},
		peerMaxFrame:   minFrameSize,
		peerInitWindow: initialWindow,
		peerMaxStreams: DefaultMaxConcurrentStreams, // until the peer's SETTINGS say otherwise
		sendWindow:     initialWindow,
		recvWindow:     int32(cfg.ConnWindow),
		nextStream:     1,
		done:           make(chan struct{}),
		busyTold:       true,
	}
	c.bw = bufio.NewWriterSize(writerOnly{nc}, 16<<10)
	c.br = bufio.NewReaderSize(r, 16<<10)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(headerTableSize, nil)
	// The framer decodes up to twice the limit, so that a list (or one
	// field) somewhat over it is still read whole and answered (431) on
	// its stream; only one past that is cut, and a single field past it is
	// a connection error (COMPRESSION_ERROR), as x/net's framer has it.
	c.fr.MaxHeaderListSize = uint32(min(2*uint64(cfg.MaxHeaderListSize), maxWindow))
	c.fr.SetMaxReadFrameSize(minFrameSize)
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

// writerOnly hides a conn's ReadFrom from bufio (which would pick it).
type writerOnly struct{ io.Writer }

// Done is closed once the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close closes the connection now: every stream ends with ErrConnClosed.
func (c *Conn) Close() error {
	c.closeWith(ErrConnClosed)
	return nil
}

// settings are what we advertise.
func (c *Conn) settings() []http2.Setting {
	s := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: c.cfg.StreamWindow},
		{ID: http2.SettingMaxHeaderListSize, Val: c.cfg.MaxHeaderListSize},
	}
	if c.server {
		s = append(s, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.cfg.MaxConcurrentStreams})
	} else {
		s = append(s, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	return s
}

// writeOpening writes our SETTINGS and the connection window beyond the
// initial one (after the preface, for a client).
func (c *Conn) writeOpening() error {
	return c.write(func(fr *http2.Framer) error {
		if !c.server {
			if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
				return err
			}
		}
		if err := fr.WriteSettings(c.settings()...); err != nil {
			return err
		}
		if inc := c.cfg.ConnWindow - initialWindow; inc > 0 {
			return fr.WriteWindowUpdate(0, inc)
		}
		return nil
	})
}

// lockWrite takes the write side; unlockWrite flushes if no other writer
// waits (so that queued writes go out together) and releases it.
func (c *Conn) lockWrite() error {
	c.writers.Add(1)
	c.wmu.Lock()
	if c.werr != nil {
		return c.werr
	}
	if now := time.Now(); now.Sub(c.wsetAt) > c.cfg.WriteTimeout/8 {
		c.wsetAt = now
		_ = c.nc.SetWriteDeadline(now.Add(c.cfg.WriteTimeout))
	}
	return nil
}

func (c *Conn) unlockWrite(err error) error {
	if err == nil && c.werr == nil && c.writers.Load() == 1 {
		err = c.bw.Flush()
	}
	if err != nil && c.werr == nil {
		c.werr = err
	}
	err = c.werr
	c.writers.Add(-1)
	c.wmu.Unlock()
	if err != nil {
		go c.closeWith(fmt.Errorf("h2: write: %w", err))
	}
	return err
}

// write runs fn with the framer, under the write lock.
func (c *Conn) write(fn func(fr *http2.Framer) error) error {
	if err := c.lockWrite(); err != nil {
		return c.unlockWrite(err)
	}
	return c.unlockWrite(fn(c.fr))
}

// writeHeadersLocked encodes fields and writes them as HEADERS and
// CONTINUATION frames; the write lock is held.
func (c *Conn) writeHeadersLocked(id uint32, fields []hpack.HeaderField, end bool) error {
	c.hbuf.Reset()
	for _, f := range fields {
		if err := c.henc.WriteField(f); err != nil {
			return err
		}
	}
	block := c.hbuf.Bytes()
	c.mu.Lock()
	max := int(c.peerMaxFrame)
	c.mu.Unlock()
	first := true
	for first || len(block) > 0 {
		frag := block
		if len(frag) > max {
			frag = frag[:max]
		}
		block = block[len(frag):]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = c.fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// closeWith ends the connection: every stream sees err, the socket closes.
func (c *Conn) closeWith(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.closeErr = err
	for _, st := range c.streams {
		st.abortLocked(ErrConnClosed)
	}
	c.streams = map[uint32]*Stream{}
	c.open = 0
	c.queued = nil
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	c.mu.Unlock()
	_ = c.nc.Close()
	close(c.done)
}

// fail ends the connection for a protocol error: GOAWAY with code, then close.
func (c *Conn) fail(code http2.ErrCode, why string) {
	c.log.WithField("reason", why).Debug("h2: connection error")
	c.mu.Lock()
	last := c.lastPeerStream
	c.mu.Unlock()
	_ = c.write(func(fr *http2.Framer) error { return fr.WriteGoAway(last, code, []byte(why)) })
	c.closeWith(http2.ConnectionError(code))
}

// readLoop reads and handles frames until the connection ends.
func (c *Conn) readLoop() error {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				// A malformed header block (already decoded: the HPACK
				// state is intact) or a bad frame on one stream.
				c.streamError(se.StreamID, se.Code)
				continue
			case errors.As(err, &ce):
				why := "protocol"
				if d := c.fr.ErrorDetail(); d != nil {
					why = d.Error()
				}
				c.fail(http2.ErrCode(ce), why)
				return err
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.fail(http2.ErrCodeFrameSize, "frame too large")
				return err
			}
			return err
		}
		if err := c.handle(f); err != nil {
			return err
		}
	}
}

// connErr is a connection error met while handling a frame.
type connErr struct {
	code http2.ErrCode
	why  string
}

func (e connErr) Error() string { return fmt.Sprintf("h2: %v: %s", e.code, e.why) }

func (c *Conn) handle(f http2.Frame) error {
	var err error
	switch f := f.(type) {
	case *http2.SettingsFrame:
		err = c.onSettings(f)
	case *http2.MetaHeadersFrame:
		err = c.onHeaders(f)
	case *http2.DataFrame:
		err = c.onData(f)
	case *http2.WindowUpdateFrame:
		err = c.onWindowUpdate(f)
	case *http2.PingFrame:
		err = c.onPing(f)
	case *http2.RSTStreamFrame:
		c.onReset(f)
	case *http2.GoAwayFrame:
		c.onGoAway(f)
	case *http2.PushPromiseFrame:
		err = connErr{http2.ErrCodeProtocol, "PUSH_PROMISE is not allowed"}
	default:
		// PRIORITY, PRIORITY_UPDATE, unknown types: ignored.
	}
	var ce connErr
	if errors.As(err, &ce) {
		c.fail(ce.code, ce.why)
	}
	return err
}

func (c *Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		c.settingsAcked = true
		c.mu.Unlock()
		return nil
	}
	var table uint32
	hasTable := false
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int32(s.Val) - c.peerInitWindow
			for _, st := range c.streams {
				if int64(st.sendWindow)+int64(delta) > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.peerInitWindow = int32(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				st.cond.Broadcast()
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = s.Val
		case http2.SettingHeaderTableSize:
			table, hasTable = s.Val, true
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		code := http2.ErrCodeProtocol
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			code = http2.ErrCode(ce)
		}
		return connErr{code, "bad SETTINGS: " + err.Error()}
	}
	return c.write(func(fr *http2.Framer) error {
		if hasTable {
			c.henc.SetMaxDynamicTableSizeLimit(table)
		}
		return fr.WriteSettingsAck()
	})
}

func (c *Conn) onPing(f *http2.PingFrame) error {
	if f.IsAck() {
		if f.Data == drainPing {
			go c.finalGoAway()
		}
		return nil
	}
	return c.write(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
}

func (c *Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if int64(c.sendWindow)+int64(f.Increment) > maxWindow {
			return connErr{http2.ErrCodeFlowControl, "connection window over 2^31-1"}
		}
		c.sendWindow += int32(f.Increment)
		for _, st := range c.streams {
			st.cond.Broadcast()
		}
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil // closed already
	}
	if int64(st.sendWindow)+int64(f.Increment) > maxWindow {
		c.mu.Unlock()
		c.streamError(f.StreamID, http2.ErrCodeFlowControl)
		c.mu.Lock()
		return nil
	}
	st.sendWindow += int32(f.Increment)
	st.cond.Broadcast()
	return nil
}

func (c *Conn) onReset(f *http2.RSTStreamFrame) {
	c.mu.Lock()
	st := c.streams[f.StreamID]
	if st == nil {
		c.mu.Unlock()
		return
	}
	err := error(ResetError{Code: f.ErrCode, Remote: true})
	if !c.server && f.ErrCode == http2.ErrCodeRefusedStream {
		err = ErrRefused
	}
	if c.server && f.ErrCode == http2.ErrCodeNo && st.sendDone {
		// The client has the whole answer and stops sending its body.
		st.recvDone = true
		st.noMoreBody = true
		c.closeStreamLocked(st)
		c.mu.Unlock()
		return
	}
	st.abortLocked(err)
	c.closeStreamLocked(st)
	c.mu.Unlock()
}

func (c *Conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	c.peerGoAway = true
	c.peerGoAwayLast = f.LastStreamID
	var refused []*Stream
	if !c.server {
		for id, st := range c.streams {
			if id > f.LastStreamID {
				refused = append(refused, st)
			}
		}
		for _, st := range refused {
			st.abortLocked(ErrRefused)
			c.closeStreamLocked(st)
		}
	}
	idle := c.open == 0 && c.reserved == 0
	c.mu.Unlock()
	if f.ErrCode != http2.ErrCodeNo {
		c.log.WithField("code", f.ErrCode.String()).WithField("debug", truncate(string(f.DebugData()), 128)).Debug("h2: peer sent GOAWAY")
	}
	if !c.server && idle {
		c.closeWith(ErrConnClosed)
	}
}

// onData takes a DATA frame: flow control first (the connection's window
// counts every frame, even one for a stream that is gone), then the bytes
// go to the stream's buffer.
func (c *Conn) onData(f *http2.DataFrame) error {
	n := int32(f.Length)
	data := f.Data()
	pad := n - int32(len(data))
	c.mu.Lock()
	if n > c.recvWindow {
		c.mu.Unlock()
		return connErr{http2.ErrCodeFlowControl, "DATA beyond the connection window"}
	}
	c.recvWindow -= n
	st := c.streams[f.StreamID]
	if st == nil || st.recvDone {
		// Gone (closed, reset): its bytes are given back at once.
		c.recvUnacked += n
		idle := c.server && f.StreamID > c.lastPeerStream || !c.server && f.StreamID >= c.nextStream
		upd := c.takeConnCreditLocked()
		c.mu.Unlock()
		if idle {
			return connErr{http2.ErrCodeProtocol, "DATA on a stream never opened"}
		}
		c.sendWindowUpdate(0, upd)
		if st != nil || f.StreamID != 0 {
			c.resetStream(f.StreamID, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	if n > st.recvWindow {
		c.mu.Unlock()
		c.streamError(f.StreamID, http2.ErrCodeFlowControl)
		return nil
	}
	st.recvWindow -= n
	if len(data) == 0 && !f.StreamEnded() {
		if c.calmLocked(&c.emptyData, maxEmptyDataPerSec) {
			c.mu.Unlock()
			return connErr{http2.ErrCodeEnhanceYourCalm, "too many empty DATA frames"}
		}
	}
	st.recvLen += int64(len(data))
	if st.declaredLen >= 0 && st.recvLen > st.declaredLen || f.StreamEnded() && st.declaredLen >= 0 && st.recvLen != st.declaredLen && !st.lenExempt {
		c.mu.Unlock()
		c.streamError(f.StreamID, http2.ErrCodeProtocol)
		return nil
	}
	st.appendLocked(data)
	// Padding is given back at once; the data when it is read.
	var supd, cupd uint32
	if pad > 0 {
		st.recvUnacked += pad
		c.recvUnacked += pad
		supd, cupd = st.takeCreditLocked(), c.takeConnCreditLocked()
	}
	if f.StreamEnded() {
		c.receivedEndLocked(st)
	}
	st.cond.Broadcast()
	c.mu.Unlock()
	if supd > 0 {
		c.sendWindowUpdate(f.StreamID, supd)
	}
	c.sendWindowUpdate(0, cupd)
	return nil
}

// calmLocked counts one event against a per-second budget and reports
// whether it is exhausted.
func (c *Conn) calmLocked(counter *int, limit int) bool {
	now := time.Now()
	if now.Sub(c.calmSince) > time.Second {
		c.calmSince = now
		c.emptyData = 0
	}
	*counter++
	return *counter > limit
}

// takeConnCreditLocked returns the connection window to give back now (0
// while less than half of it is consumed).
func (c *Conn) takeConnCreditLocked() uint32 {
	if c.recvUnacked < int32(c.cfg.ConnWindow/2) {
		return 0
	}
	n := c.recvUnacked
	c.recvUnacked = 0
	c.recvWindow += n
	return uint32(n)
}

func (c *Conn) sendWindowUpdate(id, n uint32) {
	if n == 0 {
		return
	}
	_ = c.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(id, n) })
}

// streamError resets one stream for a protocol or flow-control error.
func (c *Conn) streamError(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if c.server && id > c.lastPeerStream && id%2 == 1 {
		c.lastPeerStream = id // a malformed request still takes its id
	}
	if st := c.streams[id]; st != nil {
		st.abortLocked(ResetError{Code: code})
		c.closeStreamLocked(st)
	}
	c.mu.Unlock()
	c.resetStream(id, code)
}

// resetStream writes RST_STREAM.
func (c *Conn) resetStream(id uint32, code http2.ErrCode) {
	if id == 0 {
		return
	}
	_ = c.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, code) })
}

// receivedEndLocked records END_STREAM from the peer: the stream closes
// if our side has ended too.
func (c *Conn) receivedEndLocked(st *Stream) {
	st.recvDone = true
	if st.sendDone {
		c.closeStreamLocked(st)
	}
}

// closeStreamLocked forgets a stream whose both sides are done (or that
// was reset).
func (c *Conn) closeStreamLocked(st *Stream) {
	if st.closed {
		return
	}
	st.closed = true
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
		c.open--
	}
	st.finishLocked()
	c.afterStreamLocked()
}

// afterStreamLocked runs when a stream ended or a handler returned: the
// idle timer, the tracker's state, a drained connection's close.
func (c *Conn) afterStreamLocked() {
	if c.open > 0 || c.handlers > 0 || c.reserved > 0 || c.closed {
		return
	}
	c.setBusyLocked(false)
	if c.server && c.goAway == goAwayFinal || !c.server && c.peerGoAway {
		go c.shutdownNow()
		return
	}
	c.armIdleLocked()
}

func (c *Conn) armIdleLocked() {
	if c.cfg.IdleTimeout <= 0 || c.closed {
		return
	}
	if c.idleTimer == nil {
		c.idleTimer = time.AfterFunc(c.cfg.IdleTimeout, c.idleExpired)
		return
	}
	c.idleTimer.Reset(c.cfg.IdleTimeout)
}

func (c *Conn) markBusyLocked() {
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.setBusyLocked(true)
}

// setBusyLocked records whether the connection has streams, and has
// OnBusy told of a change (tellBusy).
func (c *Conn) setBusyLocked(busy bool) {
	if c.busy == busy {
		return
	}
	c.busy = busy
	if c.cfg.OnBusy == nil || c.busyTelling || c.busyTold == busy {
		return // nothing to tell, or tellBusy will see it
	}
	c.busyTelling = true
	go c.tellBusy()
}

// tellBusy calls OnBusy without the lock until the last state it told is
// the connection's: one goroutine at a time, so that a stream's end told
// after the next stream's start cannot leave the tracker with a state the
// connection left (each change with a goroutine of its own could run in
// either order).
func (c *Conn) tellBusy() {
	c.mu.Lock()
	for c.busyTold != c.busy {
		busy := c.busy
		c.busyTold = busy
		c.mu.Unlock()
		c.cfg.OnBusy(busy)
		c.mu.Lock()
	}
	c.busyTelling = false
	c.mu.Unlock()
}

// idleExpired closes a connection that had no stream for IdleTimeout.
func (c *Conn) idleExpired() {
	c.mu.Lock()
	if c.closed || c.open > 0 || c.handlers > 0 || c.reserved > 0 {
		c.mu.Unlock()
		return
	}
	c.goAway = goAwayFinal
	last := c.lastPeerStream
	c.mu.Unlock()
	_ = c.write(func(fr *http2.Framer) error { return fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
	c.shutdownNow()
}

// shutdownNow ends a connection that has nothing left in flight: our side
// is shut down (FIN after what was written), and what the peer still sends
// is read away until its FIN or lingerTimeout, so that it never sees a
// reset before our last frames.
func (c *Conn) shutdownNow() {
	c.mu.Lock()
	if c.closed || c.lingering {
		c.mu.Unlock()
		return
	}
	c.lingering = true
	c.mu.Unlock()
	// Flush and half-close under the write lock: a flush left to a writer
	// queued behind us would come after our FIN.
	cw, ok := c.nc.(interface{ CloseWrite() error })
	err := c.lockWrite()
	if err == nil {
		err = c.bw.Flush()
	}
	if err == nil && ok {
		err = cw.CloseWrite()
	}
	c.wmu.Unlock()
	c.writers.Add(-1)
	if err != nil || !ok {
		c.closeWith(ErrConnClosed)
		return
	}
	// The read loop goes on, reading away, until EOF or this deadline.
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
}

// Shutdown drains the connection gracefully. A server sends GOAWAY with
// the maximum stream id and a PING; once the PING comes back (or after
// PingTimeout) it sends the final GOAWAY, with the last stream it
// processes: every stream the client opened before it saw the first GOAWAY
// is served, none is refused, and the client opens its next streams
// elsewhere. The connection closes when its last stream ends. A client
// takes no new stream and closes when its last one ends.
func (c *Conn) Shutdown() {
	c.mu.Lock()
	if c.closed || c.goAway != goAwayNone {
		c.mu.Unlock()
		return
	}
	if !c.server {
		c.goAway = goAwayFinal
		c.peerGoAway = true // no new stream either way
		idle := c.open == 0 && c.reserved == 0
		c.mu.Unlock()
		if idle {
			c.shutdownNow()
		}
		return
	}
	if !c.opened {
		// A GOAWAY may not come before our SETTINGS: it follows them.
		c.shutdownAsked = true
		c.mu.Unlock()
		return
	}
	c.goAway = goAwayGraceful
	c.pingTimer = time.AfterFunc(c.cfg.PingTimeout, c.finalGoAway)
	c.mu.Unlock()
	_ = c.write(func(fr *http2.Framer) error {
		if err := fr.WriteGoAway(maxStreamID, http2.ErrCodeNo, nil); err != nil {
			return err
		}
		return fr.WritePing(false, drainPing)
	})
}

// finalGoAway sends the second GOAWAY of a graceful shutdown.
func (c *Conn) finalGoAway() {
	c.mu.Lock()
	if c.closed || c.goAway != goAwayGraceful {
		c.mu.Unlock()
		return
	}
	c.goAway = goAwayFinal
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	last := c.lastPeerStream
	idle := c.open == 0 && c.handlers == 0
	c.mu.Unlock()
	_ = c.write(func(fr *http2.Framer) error { return fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
	if idle {
		c.shutdownNow()
	}
}

// Draining reports whether Shutdown was called or the peer said GOAWAY.
func (c *Conn) Draining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goAway != goAwayNone || c.peerGoAway
}

// Streams returns how many streams are open.
func (c *Conn) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// contentLength reads a content-length field: -1 if absent; an error if
// malformed or given twice differently.
func contentLength(fields []hpack.HeaderField) (int64, error) {
	n := int64(-1)
	for _, f := range fields {
		if f.Name != "content-length" {
			continue
		}
		v, err := strconv.ParseUint(f.Value, 10, 63)
		if err != nil || (n >= 0 && int64(v) != n) {
			return 0, fmt.Errorf("bad content-length %q", truncate(f.Value, 32))
		}
		n = int64(v)
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// headerListSize is a header list's size as RFC 9113 §6.5.2 counts it.
func headerListSize(fs []hpack.HeaderField) uint32 {
	var n uint64
	for _, f := range fs {
		n += uint64(len(f.Name) + len(f.Value) + 32)
	}
	return uint32(min(n, maxWindow))
}

// overLimits reports a received header list over the configured limits.
func (c *Conn) overLimits(f *http2.MetaHeadersFrame) bool {
	return f.Truncated || headerListSize(f.Fields) > c.cfg.MaxHeaderListSize ||
		c.cfg.MaxHeaderCount > 0 && len(f.RegularFields()) > c.cfg.MaxHeaderCount
}

// Fresh reports a server connection on which the client has opened no
// stream yet.
func (c *Conn) Fresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastPeerStream == 0
}
