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
