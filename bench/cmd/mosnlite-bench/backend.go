package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// backend is the upstream every target forwards to: an HTTP server answering a
// small fixed body, and a TCP sink that counts what it receives.
type backend struct {
	body     []byte
	httpLn   net.Listener
	httpSrv  *http.Server
	sinkLn   net.Listener
	received atomic.Int64 // bytes the sink has read, all connections
	active   atomic.Int64 // open sink connections
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startBackend(bodySize int) (*backend, error) {
	b := &backend{body: make([]byte, bodySize), conns: map[net.Conn]struct{}{}}
	for i := range b.body {
		b.body[i] = 'a' + byte(i%26)
	}
	var err error
	if b.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("backend: listen http: %w", err)
	}
	if b.sinkLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		b.httpLn.Close()
		return nil, fmt.Errorf("backend: listen tcp sink: %w", err)
	}
	size := strconv.Itoa(len(b.body))
	b.httpSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", size)
			_, _ = w.Write(b.body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		_ = b.httpSrv.Serve(b.httpLn) // returns when Close shuts it
	}()
	go func() {
		defer b.wg.Done()
		b.acceptSink()
	}()
	return b, nil
}

func (b *backend) httpAddr() string { return b.httpLn.Addr().String() }
func (b *backend) sinkAddr() string { return b.sinkLn.Addr().String() }

func (b *backend) acceptSink() {
	for {
		c, err := b.sinkLn.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				fmt.Printf("backend: sink accept: %v\n", err)
			}
			return
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.active.Add(1)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.active.Add(-1)
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				b.received.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
}

// waitSinkIdle waits, bounded, until no sink connection is open, so that one
// measurement's tail does not count in the next.
func (b *backend) waitSinkIdle(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for b.active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *backend) close() {
	b.httpSrv.Close()
	b.sinkLn.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
