package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// errWouldBlock: a non-blocking read found nothing, or a write found the
// socket's buffer full.
var errWouldBlock = errors.New("operation would block")

// rawIO reads and writes a socket without waiting: one syscall on the
// descriptor, under SyscallConn().Control so that a concurrent Close cannot
// pull it away. It saves a deadline (a runtime timer) on every read that
// finds its bytes already there and on every write the socket takes whole,
// which is nearly all of them, and it lets an idle connection be checked
// for input without a goroutine waiting on it. Only plain TCP and unix
// sockets have one; a TLS connection does its I/O through net.Conn.
//
// Reads and writes each keep their own state: one goroutine may read (a
// request body pump) while another writes (the response).
type rawIO struct {
	rc          syscall.RawConn
	rbuf, wbuf  []byte
	rn, wn      int
	rerr, werr  error
	read, write func(fd uintptr)
	// waitRead's state: the reader it calls and its outcome.
	ready   func(fd int) (int, error)
	waitN   int
	waitErr error
	waitFn  func(fd uintptr) bool
	// sendThenRead's state.
	sendBuf, recvBuf []byte
	sent             bool
	sendFn           func(fd uintptr) bool
}

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
	r.read = func(fd uintptr) { r.rn, r.rerr = unix.Read(int(fd), r.rbuf) }
	r.write = func(fd uintptr) { r.wn, r.werr = unix.Write(int(fd), r.wbuf) }
	r.sendFn = r.sendStep
	r.waitFn = func(fd uintptr) bool {
		r.waitN, r.waitErr = r.ready(int(fd))
		return r.waitErr != errWouldBlock && r.waitErr != unix.EINTR
	}
	return r
}

// tryRead reads what has arrived into b: n > 0, or errWouldBlock, io.EOF,
// or the socket's error.
func (r *rawIO) tryRead(b []byte) (int, error) {
	r.rbuf = b
	err := r.rc.Control(r.read)
	r.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case r.rerr == unix.EINTR:
		return r.tryRead(b)
	case r.rerr == unix.EAGAIN:
		return 0, errWouldBlock
	case r.rerr != nil:
		return 0, r.rerr
	case r.rn == 0:
		return 0, io.EOF
	}
	return r.rn, nil
}

// tryWrite writes as much of b as the socket takes now; errWouldBlock when
// it took less than all.
func (r *rawIO) tryWrite(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		r.wbuf = b
		err := r.rc.Control(r.write)
		r.wbuf = nil
		switch {
		case err != nil:
			return written, err
		case r.werr == unix.EINTR:
			continue
		case r.werr == unix.EAGAIN:
			return written, errWouldBlock
		case r.werr != nil:
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
func (r *rawIO) waitRead(ready func(fd int) (int, error)) (int, error) {
	r.ready = ready
	err := r.rc.Read(r.waitFn)
	r.ready = nil
	if err != nil {
		return 0, err // the deadline, or the connection closed
	}
	return r.waitN, r.waitErr
}

// sendThenRead writes req and waits, within the read deadline, for the
// first bytes of the answer, which it reads into buf. The write happens
// inside the wait, after the runtime has reset the socket's readiness, so
// that the answer's arrival cannot be missed and no read is spent on the
// empty socket in between: one write, one read. When the socket takes less
// than all of req at once, it returns what went out (wrote < len(req)) and
// leaves the rest to ordinary writes and reads.
func (r *rawIO) sendThenRead(req, buf []byte) (wrote, n int, err error) {
	r.sendBuf, r.recvBuf, r.sent = req, buf, false
	r.wn, r.waitN, r.waitErr = 0, 0, nil
	err = r.rc.Read(r.sendFn)
	wrote, n = r.wn, r.waitN
	r.sendBuf, r.recvBuf = nil, nil
	if err != nil {
		return wrote, 0, err
	}
	return wrote, n, r.waitErr
}

func (r *rawIO) sendStep(fd uintptr) bool {
	if !r.sent {
		for r.wn < len(r.sendBuf) {
			m, err := unix.Write(int(fd), r.sendBuf[r.wn:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN || (err == nil && m <= 0):
				return true // the rest goes by ordinary, waiting writes
			case err != nil:
				r.waitErr = err
				return true
			}
			r.wn += m
		}
		r.sent = true
		return false // wait for the answer
	}
	m, err := unix.Read(int(fd), r.recvBuf)
	switch {
	case err == unix.EAGAIN, err == unix.EINTR:
		return false
	case err != nil:
		r.waitErr = err
	case m == 0:
		r.waitErr = io.EOF
	}
	r.waitN = m
	return true
}
