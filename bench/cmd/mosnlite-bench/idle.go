package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// idleResult is the memory a proxy spends on idle keep-alive connections.
type idleResult struct {
	Conns   int
	Start   int64   // RSS before the connections, bytes
	Idle    int64   // RSS with all of them open and idle
	After   int64   // RSS once they are closed and the proxy settled
	PerConn float64 // (Idle - Start) / Conns
}

func (r idleResult) String() string {
	return fmt.Sprintf("%d idle conns: RSS %.1f MB → %.1f MB (%.0f bytes each) → %.1f MB after close",
		r.Conns, mb(r.Start), mb(r.Idle), r.PerConn, mb(r.After))
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// idleRSS opens n keep-alive connections to addr, sends one request on each
// and reads its answer, so that each has been through a whole request cycle
// and now waits for the next. It measures pid's RSS (its process tree's)
// before, while they idle, and after they are closed.
func idleRSS(ctx context.Context, pid int, addr string, n, wantBody int) (idleResult, error) {
	res := idleResult{Conns: n}
	var err error
	if res.Start, err = settledRSS(ctx, pid, 0, 5*time.Second); err != nil {
		return res, err
	}
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var next, failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := openIdle(ctx, addr, wantBody)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if f := failed.Load(); f > 0 {
		return res, fmt.Errorf("idle connections: %d of %d failed, first: %w", f, n, firstErr)
	}
	// A proxy may take its time to settle idle connections (mosnlite hands
	// them from their goroutines to its poller after a second, and then
	// returns the memory): measured from 5 s on.
	if res.Idle, err = settledRSS(ctx, pid, 5*time.Second, 10*time.Second); err != nil {
		return res, err
	}
	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}
	if res.After, err = settledRSS(ctx, pid, 5*time.Second, 15*time.Second); err != nil {
		return res, err
	}
	res.PerConn = float64(res.Idle-res.Start) / float64(n)
	return res, nil
}

// openIdle dials addr and completes one request on the new connection.
func openIdle(ctx context.Context, addr string, wantBody int) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	ok, reuse := roundTrip(c, bufio.NewReaderSize(c, 4<<10), benchRequest, wantBody)
	if !ok || !reuse {
		c.Close()
		return nil, errors.New("no keep-alive answer")
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// settledRSS samples pid's RSS every 250 ms from minWait on, until it moved
// by less than 0.5% over a second, or limit passes, and returns the last
// sample.
func settledRSS(ctx context.Context, pid int, minWait, limit time.Duration) (int64, error) {
	deadline := time.Now().Add(limit)
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(minWait):
	}
	var samples []int64
	for {
		u, err := usage(pid)
		if err != nil {
			return 0, err
		}
		samples = append(samples, u.RSS)
		if k := len(samples); k >= 5 {
			lo, hi := samples[k-5], samples[k-5]
			for _, s := range samples[k-5:] {
				lo, hi = min(lo, s), max(hi, s)
			}
			if float64(hi-lo) < 0.005*float64(hi) {
				return u.RSS, nil
			}
		}
		if time.Now().After(deadline) {
			return u.RSS, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// cpuResult is a proxy's CPU time per request at a fixed request rate.
type cpuResult struct {
	Rate       float64       // requests/s asked for
	Achieved   float64       // requests/s answered
	Requests   int64         // answered in the window
	CPU        time.Duration // proxy CPU time (user + system) in the window
	PerRequest time.Duration
	P50, P99   time.Duration // latency at that rate
}

func (r cpuResult) String() string {
	return fmt.Sprintf("%.0f req/s asked, %.0f answered, %v CPU for %d requests: %v per request; p50 %v, p99 %v",
		r.Rate, r.Achieved, r.CPU.Round(time.Millisecond), r.Requests, r.PerRequest, r.P50, r.P99)
}

// cpuPerRequest holds rate requests/s against addr over conns keep-alive
// connections for d and divides the CPU time pid's process tree used
// meanwhile by the requests answered.
func cpuPerRequest(ctx context.Context, pid int, addr string, conns int, rate float64, d time.Duration, wantBody int) (cpuResult, error) {
	before, err := usage(pid)
	if err != nil {
		return cpuResult{}, err
	}
	r := goHTTPLoad(ctx, loadSpec{addr: addr, conns: conns, d: d, wantBody: wantBody, rate: rate})
	after, err := usage(pid)
	if err != nil {
		return cpuResult{}, err
	}
	if r.Requests == 0 {
		return cpuResult{}, fmt.Errorf("no request answered at %.0f req/s (%d errors)", rate, r.Errors)
	}
	res := cpuResult{Rate: rate, Achieved: r.ReqPerSec, Requests: r.Requests, CPU: after.CPU - before.CPU, P50: r.P50, P99: r.P99}
	res.PerRequest = res.CPU / time.Duration(r.Requests)
	return res, nil
}
