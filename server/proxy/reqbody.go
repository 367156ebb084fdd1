package proxy

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

var errBodyDetached = errors.New("request body detached from upstream")

// reqBody is a downstream request body as the upstream transport sees it.
// The transport reads it from its own goroutine, possibly after RoundTrip has
// returned; detach takes the body (and so the connection's reader) back so
// that the connection goroutine may read the next request.
type reqBody struct {
	c        *httpConn
	r        io.Reader // the body as parsed by http.ReadRequest
	mu       sync.Mutex
	detached atomic.Bool
	eof      atomic.Bool
	read     atomic.Int64
}

func newReqBody(c *httpConn, r io.Reader) *reqBody { return &reqBody{c: c, r: r} }

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached.Load() {
		return 0, errBodyDetached
	}
	b.c.extendReadDeadline()
	// Checked again after moving the deadline: detach may have set its own
	// (expired) deadline in between, which ours just overwrote.
	if b.detached.Load() {
		return 0, errBodyDetached
	}
	n, err := b.r.Read(p)
	b.read.Add(int64(n))
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// Close does nothing: the connection goroutine finishes the body itself.
func (b *reqBody) Close() error { return nil }

// detach stops the transport's reads, waits for one in progress to return,
// and reports whether the whole body had been read.
func (b *reqBody) detach() (complete bool) {
	b.detached.Store(true)
	b.c.expireReadDeadline()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof.Load()
}
