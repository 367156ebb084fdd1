package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// httpResult is one HTTP keep-alive measurement.
type httpResult struct {
	Loader    string        // "wrk" or "go"
	Requests  int64         // completed with a 2xx/3xx answer
	Errors    int64         // socket errors, bad statuses, short bodies
	Elapsed   time.Duration // measurement window
	ReqPerSec float64
	P50, P99  time.Duration
	// ProxyCPU is the CPU time the proxy's processes used over wrk's run,
	// for a proxy target; BackendCPU is what this process (where the
	// backend runs) used meanwhile. Both are 0 when not measured: the
	// built-in load generator runs in this process too.
	ProxyCPU, BackendCPU time.Duration
}

// perRequest spreads d over the answered requests; 0 if either is unknown.
func (r httpResult) perRequest(d time.Duration) time.Duration {
	if d <= 0 || r.Requests <= 0 {
		return 0
	}
	return d / time.Duration(r.Requests)
}

// loadSpec is one run of the built-in HTTP load generator.
type loadSpec struct {
	addr     string
	conns    int           // concurrent connections (workers)
	d        time.Duration // length of the run
	wantBody int           // expected body length; -1: any
	// rate is the total request rate to hold, spread evenly over the
	// workers; 0 runs closed-loop, each worker sending its next request as
	// soon as the previous answer is read (as wrk does).
	rate float64
	// closeEach sends every request with Connection: close over a new
	// connection.
	closeEach bool
	// tls, if set, makes every connection a TLS one, with this config.
	tls *tls.Config
}

// goHTTPLoad runs spec and records every request's latency.
func goHTTPLoad(ctx context.Context, spec loadSpec) httpResult {
	ctx, cancel := context.WithTimeout(ctx, spec.d)
	defer cancel()
	type worker struct {
		lat  []time.Duration
		errs int64
	}
	workers := make([]worker, spec.conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			var pace func(k int) time.Time
			if spec.rate > 0 {
				// Worker i sends its k-th request at start + (k·conns + i)/rate.
				interval := time.Duration(float64(spec.conns) / spec.rate * float64(time.Second))
				offset := time.Duration(i) * interval / time.Duration(spec.conns)
				pace = func(k int) time.Time { return start.Add(offset + time.Duration(k)*interval) }
			}
			w.lat, w.errs = httpWorker(ctx, spec, pace)
		}(&workers[i])
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	var errs int64
	for _, w := range workers {
		all = append(all, w.lat...)
		errs += w.errs
	}
	res := httpResult{Loader: "go", Requests: int64(len(all)), Errors: errs, Elapsed: elapsed}
	if elapsed > 0 {
		res.ReqPerSec = float64(len(all)) / elapsed.Seconds()
	}
	res.P50, res.P99 = percentile(all, 0.50), percentile(all, 0.99)
	return res
}

const (
	benchRequest      = "GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: mosnlite-bench\r\n\r\n"
	benchCloseRequest = "GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: mosnlite-bench\r\nConnection: close\r\n\r\n"
)

// httpWorker runs one connection's request loop until ctx ends. A broken
// connection counts an error and is redialled. pace, if set, says when the
// k-th request is due; a late one goes at once.
func httpWorker(ctx context.Context, spec loadSpec, pace func(k int) time.Time) (lat []time.Duration, errs int64) {
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	req := benchRequest
	if spec.closeEach {
		req = benchCloseRequest
	}
	deadline, _ := ctx.Deadline()
	for k := 0; ctx.Err() == nil; k++ {
		if pace != nil {
			if wait := time.Until(pace(k)); wait > 0 {
				select {
				case <-ctx.Done():
					return lat, errs
				case <-time.After(wait):
				}
			}
		}
		if conn == nil {
			c, err := dialLoad(ctx, spec)
			if err != nil {
				// A dial cut by the window's end is not an error: the
				// dialer honours the deadline before ctx reports it.
				if ctx.Err() == nil && time.Now().Before(deadline) {
					errs++
					time.Sleep(10 * time.Millisecond) // bounded by ctx: back off a refused dial
				}
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 16<<10)
			// A stalled peer cannot hold the worker past the window by much.
			_ = conn.SetDeadline(deadline.Add(2 * time.Second))
		}
		t0 := time.Now()
		ok, reuse := roundTrip(conn, br, req, spec.wantBody)
		if ok {
			lat = append(lat, time.Since(t0))
		} else if ctx.Err() == nil {
			errs++
		}
		if !reuse || spec.closeEach {
			conn.Close()
			conn = nil
		}
	}
	return lat, errs
}

// dialLoad opens one load connection: TCP, or TLS with its handshake done.
func dialLoad(ctx context.Context, spec loadSpec) (net.Conn, error) {
	if spec.tls != nil {
		return (&tls.Dialer{Config: spec.tls}).DialContext(ctx, "tcp", spec.addr)
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", spec.addr)
}

// roundTrip sends one request and reads its answer: ok if 2xx/3xx with the
// expected body length; reuse if the connection may carry the next request.
func roundTrip(conn net.Conn, br *bufio.Reader, req string, wantBody int) (ok, reuse bool) {
	if _, err := io.WriteString(conn, req); err != nil {
		return false, false
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, false
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil {
		return false, false
	}
	ok = res.StatusCode >= 200 && res.StatusCode < 400 && (wantBody < 0 || n == int64(wantBody))
	return ok, !res.Close
}

// percentile returns the q-quantile of ds (nearest rank), sorting ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(q*float64(len(ds))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(ds) {
		i = len(ds) - 1
	}
	return ds[i]
}

func (r httpResult) String() string {
	return fmt.Sprintf("%s: %.0f req/s, p50 %v, p99 %v, %d requests, %d errors in %v",
		r.Loader, r.ReqPerSec, r.P50, r.P99, r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond))
}
