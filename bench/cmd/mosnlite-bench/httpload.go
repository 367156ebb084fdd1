package main

import (
	"bufio"
	"context"
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
}

// goHTTPLoad drives conns keep-alive connections against addr for d, each
// sending the next GET as soon as the previous answer is read (closed loop, as
// wrk does), and records every request's latency.
func goHTTPLoad(ctx context.Context, addr string, conns int, d time.Duration, wantBody int) httpResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type worker struct {
		lat  []time.Duration
		errs int64
	}
	workers := make([]worker, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			w.lat, w.errs = httpWorker(ctx, addr, wantBody)
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

const benchRequest = "GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: mosnlite-bench\r\n\r\n"

// httpWorker runs one connection's request loop until ctx ends. A broken
// connection counts an error and is redialled.
func httpWorker(ctx context.Context, addr string, wantBody int) (lat []time.Duration, errs int64) {
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	deadline, _ := ctx.Deadline()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				if ctx.Err() == nil {
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
		ok, reuse := roundTrip(conn, br, wantBody)
		if ok {
			lat = append(lat, time.Since(t0))
		} else if ctx.Err() == nil {
			errs++
		}
		if !reuse {
			conn.Close()
			conn = nil
		}
	}
	return lat, errs
}

// roundTrip sends one request and reads its answer: ok if 2xx/3xx with the
// expected body length; reuse if the connection may carry the next request.
func roundTrip(conn net.Conn, br *bufio.Reader, wantBody int) (ok, reuse bool) {
	if _, err := io.WriteString(conn, benchRequest); err != nil {
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
