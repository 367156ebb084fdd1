package proxy

import (
	"errors"
	"net"
	"time"

	"github.com/mosnlite/mosnlite/service/stats"
)

var errHeaderTooLarge = errors.New("request header too large")

// connReader reads the downstream socket for the HTTP connection's
// bufio.Reader: it counts received bytes and, while a request head is being
// read, caps how much may be read. A connection that moved here from a
// predecessor first reads prefix: what the predecessor had read from the
// socket but not parsed (counted there, not here).
type connReader struct {
	nc        net.Conn
	rx        *stats.Counter
	prefix    []byte
	limited   bool
	remaining int64
	hitLimit  bool
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.limited {
		if r.remaining <= 0 {
			r.hitLimit = true
			return 0, errHeaderTooLarge
		}
		if int64(len(p)) > r.remaining {
			p = p[:r.remaining]
		}
	}
	if len(r.prefix) > 0 {
		n := copy(p, r.prefix)
		r.prefix = r.prefix[n:]
		r.remaining -= int64(n)
		return n, nil
	}
	n, err := r.nc.Read(p)
	if n > 0 {
		r.remaining -= int64(n)
		r.rx.Add(float64(n))
	}
	return n, err
}

func (r *connReader) limit(n int64) { r.limited, r.remaining, r.hitLimit = true, n, false }
func (r *connReader) unlimit()      { r.limited = false }

// connWriter writes the downstream socket for the HTTP connection's
// bufio.Writer: it counts sent bytes and bounds each write by a deadline so
// that a client that stops reading cannot hold the connection forever.
type connWriter struct {
	nc      net.Conn
	tx      *stats.Counter
	timeout time.Duration
}

func (w *connWriter) Write(p []byte) (int, error) {
	if w.timeout > 0 {
		_ = w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	n, err := w.nc.Write(p)
	if n > 0 {
		w.tx.Add(float64(n))
	}
	return n, err
}
