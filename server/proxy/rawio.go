package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errWouldBlock: a non-blocking read found nothing, or a write found the
// socket's buffer full.
var errWouldBlock = errors.New("operation would block")

// rawIO reads and writes a socket with the syscalls themselves, on the
// descriptor under SyscallConn (so that a concurrent Close cannot pull it
// away). A read that finds its bytes there and a write the socket takes
// whole — nearly all of them — then need no deadline (a runtime timer), and
// a wait for readable bytes can hold no buffer until they are there. Only
// plain TCP and unix sockets have one; a TLS connection does its I/O
// through net.Conn.
//
// The read side and the write side keep their own state: one goroutine may
// read (a request body pump) while another writes (the response). It is
// made once per socket, with its callbacks, and small: every idle
// connection has one.
type rawIO struct {
	rc syscall.RawConn
	// Read side: a non-blocking read (rbuf), or a wait whose reads ready
	// makes, or sendThenRead (which writes through the write side's state).
	rbuf  []byte
	rn    int
	rerr  error
	ready readyReader
	mode  uint8 // what onReadable does
	sent  bool
	// Write side.
	wbuf []byte
	wn   int
	werr syscall.Errno

	readFn, writeFn func(fd uintptr)      // for Control
	onReadable      func(fd uintptr) bool // for RawConn.Read

	// watch is a downstream connection's client watch, made at its first
	// watched request (clientwatch.go).
	watch *clientWatch
	// handoffArmed is the read deadline of a downstream connection's idle
	// wait for its handoff to the idle poller, as armIdle last set it on
	// the socket; zero once something else may have set a later one (a
	// head or body read: httpConn.read, readBody) or none. A deadline set
	// since that is earlier (aLongTimeAgo) only wakes the wait early,
	// which arms it again exactly. Written by the serving goroutine, and by
	// a body pump's readBody (forgetHandoff) while the serving goroutine
	// waits for the pump (pump.Wait orders the two).
	handoffArmed time.Time
}

// readyReader makes the reads of a wait: a non-blocking read of what has
// arrived, into a buffer of its choosing; errWouldBlock when nothing has.
type readyReader interface {
	readReady(fd int) (int, error)
}

// Modes of onReadable.
const (
	modeWait     = iota // call ready until it finds something
	modeSendRead        // write wbuf, then read into rbuf
)

func newRawIO(nc net.Conn) *rawIO {
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawIO{rc: rc}
	r.readFn = func(fd uintptr) { r.rn, r.rerr = sysRead(int(fd), r.rbuf) }
	r.writeFn = func(fd uintptr) {
		var err error
		r.wn, err = sysWrite(int(fd), r.wbuf)
		r.werr, _ = err.(syscall.Errno) // sysWrite returns nil or an Errno
	}
	r.onReadable = r.readable
	return r
}

// tryRead reads what has arrived into b: n > 0, or errWouldBlock, io.EOF,
// or the socket's error.
func (r *rawIO) tryRead(b []byte) (int, error) {
	for {
		r.rbuf = b
		err := r.rc.Control(r.readFn)
		r.rbuf = nil
		switch {
		case err != nil:
			return 0, err
		case r.rerr == unix.EINTR:
			continue
		case r.rerr == unix.EAGAIN:
			return 0, errWouldBlock
		case r.rerr != nil:
			return 0, r.rerr
		case r.rn == 0:
			return 0, io.EOF
		}
		return r.rn, nil
	}
}

// tryWrite writes as much of b as the socket takes now; errWouldBlock when
// it took less than all.
func (r *rawIO) tryWrite(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		r.wbuf = b
		err := r.rc.Control(r.writeFn)
		r.wbuf = nil
		switch {
		case err != nil:
			return written, err
		case r.werr == unix.EINTR:
			continue
		case r.werr == unix.EAGAIN:
			return written, errWouldBlock
		case r.werr != 0:
			return written, r.werr
		case r.wn <= 0:
			return written, errWouldBlock
		}
		written += r.wn
		b = b[r.wn:]
	}
	return written, nil
}

// waitRead waits, in the runtime's netpoller and within the read deadline,
// until ready — a non-blocking read — finds bytes, the end, or an error.
// ready decides where the bytes go, so that nothing is held while waiting.
func (r *rawIO) waitRead(ready readyReader) (int, error) {
	r.ready, r.mode, r.rn, r.rerr = ready, modeWait, 0, nil
	err := r.rc.Read(r.onReadable)
	r.ready = nil
	if err != nil {
		return 0, err // the deadline, or the connection closed
	}
	return r.rn, r.rerr
}

// sendThenRead writes req and waits, within the read deadline, for the
// first bytes of the answer, which it reads into buf. The write happens
// inside the wait, after the runtime has reset the socket's readiness, so
// that the answer's arrival cannot be missed and no read is spent on the
// empty socket in between: one write, one read. When the socket takes less
// than all of req at once, it returns what went out (wrote < len(req)) and
// leaves the rest to ordinary writes and reads.
func (r *rawIO) sendThenRead(req, buf []byte) (wrote, n int, err error) {
	r.wbuf, r.rbuf, r.mode, r.sent = req, buf, modeSendRead, false
	r.wn, r.rn, r.rerr = 0, 0, nil
	err = r.rc.Read(r.onReadable)
	wrote, n = r.wn, r.rn
	r.wbuf, r.rbuf = nil, nil
	if err != nil {
		return wrote, 0, err
	}
	return wrote, n, r.rerr
}

// readable is the RawConn.Read callback: true ends the wait.
func (r *rawIO) readable(fd uintptr) bool {
	if r.mode == modeWait {
		r.rn, r.rerr = r.ready.readReady(int(fd))
		return r.rerr != errWouldBlock && r.rerr != unix.EINTR
	}
	if !r.sent {
		for r.wn < len(r.wbuf) {
			m, err := sysWrite(int(fd), r.wbuf[r.wn:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN || (err == nil && m <= 0):
				return true // the rest goes by ordinary, waiting writes
			case err != nil:
				r.rerr = err
				return true
			}
			r.wn += m
		}
		r.sent = true
		return false // wait for the answer
	}
	m, err := sysRead(int(fd), r.rbuf)
	switch {
	case err == unix.EAGAIN, err == unix.EINTR:
		return false
	case err != nil:
		r.rerr = err
	case m == 0:
		r.rerr = io.EOF
	}
	r.rn = m
	return true
}
