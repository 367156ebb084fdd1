package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2Ports are the HTTP/2 listeners of a proxy: h2c (prior knowledge)
// proxied to the HTTP/1 backend, and gRPC proxied to the h2c gRPC
// backend; grpcBackend is that backend's address.
type h2Ports struct{ h2c, grpc, grpcBackend string }

// h2Backend answers gRPC unary calls over h2c: every message is echoed,
// with grpc-status 0 in the trailers, as a gRPC server does. It speaks the
// gRPC wire format (length-prefixed messages, trailers) on x/net's HTTP/2
// server, so that nginx's grpc_pass and mosnlite see a real gRPC upstream
// without a gRPC library in the command.
type h2Backend struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	body  []byte
}

func startH2Backend(bodySize int) (*h2Backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("h2 backend: listen: %w", err)
	}
	b := &h2Backend{ln: ln, conns: map[net.Conn]struct{}{}, body: make([]byte, bodySize)}
	srv := &http2.Server{MaxConcurrentStreams: 1000}
	h := http.HandlerFunc(b.serve)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[nc] = struct{}{}
			b.mu.Unlock()
			go func() {
				srv.ServeConn(nc, &http2.ServeConnOpts{Handler: h})
				b.mu.Lock()
				delete(b.conns, nc)
				b.mu.Unlock()
			}()
		}
	}()
	return b, nil
}

func (b *h2Backend) serve(w http.ResponseWriter, r *http.Request) {
	msg, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if r.Header.Get("Content-Type") != "application/grpc" {
		w.Header().Set("Content-Length", strconv.Itoa(len(b.body)))
		_, _ = w.Write(b.body)
		return
	}
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Trailer", "Grpc-Status")
	_, _ = w.Write(msg)
	w.Header().Set("Grpc-Status", "0")
}

func (b *h2Backend) addr() string { return b.ln.Addr().String() }

func (b *h2Backend) close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
}

// grpcFrame is one gRPC message: uncompressed, length-prefixed.
func grpcFrame(payload []byte) []byte {
	f := make([]byte, 5+len(payload))
	binary.BigEndian.PutUint32(f[1:5], uint32(len(payload)))
	copy(f[5:], payload)
	return f
}

// h2Load runs closed-loop HTTP/2 requests to addr for d: conns
// connections (x/net's client, prior knowledge), streams requests in
// flight on each. grpc sends unary gRPC calls (POST, application/grpc,
// te: trailers, one message) and counts a call as good when the answer
// echoes it with grpc-status 0; else GET / with a 2xx.
func h2Load(ctx context.Context, addr string, conns, streams int, d time.Duration, grpc bool, bodySize int) httpResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	msg := grpcFrame(make([]byte, bodySize))
	var mu sync.Mutex
	var all []time.Duration
	var errs int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		tr := &http2.Transport{AllowHTTP: true, StrictMaxConcurrentStreams: false,
			DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
				var dl net.Dialer
				return dl.DialContext(ctx, network, a)
			}}
		cc, err := tr.NewClientConn(mustDial(addr))
		if err != nil {
			mu.Lock()
			errs++
			mu.Unlock()
			continue
		}
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lat []time.Duration
				var bad int64
				for ctx.Err() == nil {
					t0 := time.Now()
					if err := h2Call(ctx, cc, addr, grpc, msg); err != nil {
						if ctx.Err() == nil {
							bad++
						}
						continue
					}
					lat = append(lat, time.Since(t0))
				}
				mu.Lock()
				all = append(all, lat...)
				errs += bad
				mu.Unlock()
			}()
		}
		defer cc.Close()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res := httpResult{Loader: "go h2", Requests: int64(len(all)), Errors: errs, Elapsed: elapsed}
	if elapsed > 0 {
		res.ReqPerSec = float64(len(all)) / elapsed.Seconds()
	}
	res.P50, res.P99 = percentile(all, 0.50), percentile(all, 0.99)
	return res
}

func mustDial(addr string) net.Conn {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return errConn{err}
	}
	return nc
}

// errConn is a connection that failed to open: every use fails.
type errConn struct{ error }

func (e errConn) Read([]byte) (int, error)         { return 0, e.error }
func (e errConn) Write([]byte) (int, error)        { return 0, e.error }
func (e errConn) Close() error                     { return nil }
func (e errConn) LocalAddr() net.Addr              { return nil }
func (e errConn) RemoteAddr() net.Addr             { return nil }
func (e errConn) SetDeadline(time.Time) error      { return nil }
func (e errConn) SetReadDeadline(time.Time) error  { return nil }
func (e errConn) SetWriteDeadline(time.Time) error { return nil }

var errGRPC = errors.New("bad gRPC answer")

func h2Call(ctx context.Context, cc *http2.ClientConn, addr string, grpc bool, msg []byte) error {
	var req *http.Request
	if grpc {
		req, _ = http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/bench.Echo/Unary", bytes.NewReader(msg))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.ContentLength = int64(len(msg))
	} else {
		req, _ = http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d: %v", resp.StatusCode, err)
	}
	if grpc && (len(body) != len(msg) || resp.Trailer.Get("Grpc-Status") != "0") {
		return errGRPC
	}
	return nil
}
