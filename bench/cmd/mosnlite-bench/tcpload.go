package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// tcpResult is one TCP throughput measurement: bytes that reached the sink.
type tcpResult struct {
	Bytes   int64
	Elapsed time.Duration
	MBps    float64 // 10^6 bytes per second
	Errors  int64
}

// tcpLoad opens streams connections to addr and writes as fast as it can for
// d. Throughput is what the backend sink counted during the window, so bytes
// buffered in a proxy but not delivered do not count.
func tcpLoad(ctx context.Context, b *backend, addr string, streams int, d time.Duration) (tcpResult, error) {
	b.waitSinkIdle(5 * time.Second)
	conns := make([]net.Conn, 0, streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return tcpResult{}, fmt.Errorf("tcp load: dial %s: %w", addr, err)
		}
		conns = append(conns, c)
	}
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte(i)
	}

	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var mu sync.Mutex
	var errs int64
	var wg sync.WaitGroup
	base := b.received.Load()
	start := time.Now()
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			// The write deadline ends the loop even if the proxy stops reading.
			_ = c.SetWriteDeadline(deadline)
			for ctx.Err() == nil {
				if _, err := c.Write(chunk); err != nil {
					if ctx.Err() == nil && time.Now().Before(deadline) {
						mu.Lock()
						errs++
						mu.Unlock()
					}
					return
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	got := b.received.Load() - base
	res := tcpResult{Bytes: got, Elapsed: elapsed, Errors: errs}
	if elapsed > 0 {
		res.MBps = float64(got) / 1e6 / elapsed.Seconds()
	}
	return res, nil
}

func (r tcpResult) String() string {
	return fmt.Sprintf("%.1f MB/s, %d bytes in %v, %d errors", r.MBps, r.Bytes, r.Elapsed.Round(time.Millisecond), r.Errors)
}
