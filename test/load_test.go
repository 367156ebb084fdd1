package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// tally counts what a load generator saw; it keeps the first few failures.
type tally struct {
	ok, failed atomic.Int64
	// mark (Unix ns; 0: unset) and lateFailed: the failures of connections
	// dialed after the mark, counted apart, for a test that must see every
	// connection opened after some event served, whatever failed on the
	// ones opened before it, however late their failure is recorded.
	mark, lateFailed atomic.Int64
	mu               sync.Mutex
	errs             []string
}

// failConn records a failure on a connection dialed at dialed.
func (t *tally) failConn(dialed time.Time, format string, args ...interface{}) {
	if m := t.mark.Load(); m != 0 && dialed.UnixNano() > m {
		t.lateFailed.Add(1)
	}
	t.fail(format, args...)
}

func (t *tally) fail(format string, args ...interface{}) {
	t.failed.Add(1)
	t.mu.Lock()
	if len(t.errs) < 10 {
		t.errs = append(t.errs, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	}
	t.mu.Unlock()
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("ok=%d failed=%d first errors=%q", t.ok.Load(), t.failed.Load(), t.errs)
}

// load runs generators until stop is closed.
type load struct {
	stop   chan struct{}
	once   sync.Once // closes stop
	wg     sync.WaitGroup
	byName map[string]*tally
	order  []string
}

func newLoad() *load { return &load{stop: make(chan struct{}), byName: map[string]*tally{}} }

func (l *load) run(name string, workers int, fn func(stop <-chan struct{}, t *tally, worker int)) {
	t := &tally{}
	l.byName[name] = t
	l.order = append(l.order, name)
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func(i int) {
			defer l.wg.Done()
			fn(l.stop, t, i)
		}(i)
	}
}

// finish stops the generators and waits for them; calling it again is a no-op,
// so a test may defer it and also call it early.
func (l *load) finish() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *load) report() string {
	var b bytes.Buffer
	for _, n := range l.order {
		fmt.Fprintf(&b, "%s: %s\n", n, l.byName[n])
	}
	return b.String()
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// dialer opens a client connection to target (plain TCP, or TLS done).
type dialer func(target string) (net.Conn, error)

func dialPlain(target string) (net.Conn, error) { return net.DialTimeout("tcp", target, 2*time.Second) }

// keepAliveHTTP sends requests over one raw keep-alive connection at a time,
// reconnecting only when the server said Connection: close. Any error on a
// request counts as a failure: nothing is retried.
func keepAliveHTTP(target, path string) func(<-chan struct{}, *tally, int) {
	return keepAliveHTTPWith(dialPlain, target, path)
}

// keepAliveHTTPWith is keepAliveHTTP over connections dial opens.
func keepAliveHTTPWith(dial dialer, target, path string) func(<-chan struct{}, *tally, int) {
	return func(stop <-chan struct{}, t *tally, worker int) {
		var c net.Conn
		var br *bufio.Reader
		var dialed time.Time
		defer func() {
			if c != nil {
				c.Close()
			}
		}()
		for n := 0; !stopped(stop); n++ {
			if c == nil {
				var err error
				dialed = time.Now()
				if c, err = dial(target); err != nil {
					t.failConn(dialed, "keepalive dial: %v", err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				br = bufio.NewReader(c)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(c, "GET %s?w=%d&n=%d HTTP/1.1\r\nHost: test\r\n\r\n", path, worker, n); err != nil {
				t.failConn(dialed, "keepalive write (request %d on conn): %v", n, err)
				c.Close()
				c = nil
				continue
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.failConn(dialed, "keepalive read: %v", err)
				c.Close()
				c = nil
				continue
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.failConn(dialed, "keepalive: status %d err %v", resp.StatusCode, err)
			} else {
				t.ok.Add(1)
			}
			if resp.Close {
				c.Close()
				c = nil
			}
		}
	}
}

// connPerRequestHTTP dials a new connection for every request.
func connPerRequestHTTP(target, path string) func(<-chan struct{}, *tally, int) {
	return connPerRequestHTTPWith(dialPlain, target, path)
}

// connPerRequestHTTPWith is connPerRequestHTTP over connections dial opens.
func connPerRequestHTTPWith(dial dialer, target, path string) func(<-chan struct{}, *tally, int) {
	return func(stop <-chan struct{}, t *tally, worker int) {
		for n := 0; !stopped(stop); n++ {
			dialed := time.Now()
			c, err := dial(target)
			if err != nil {
				t.failConn(dialed, "conn-per-request dial: %v", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", path)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.failConn(dialed, "conn-per-request read: %v", err)
				c.Close()
				continue
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			c.Close()
			if err != nil || resp.StatusCode != 200 {
				t.failConn(dialed, "conn-per-request: status %d err %v", resp.StatusCode, err)
				continue
			}
			t.ok.Add(1)
		}
	}
}

// tcpStreams opens echo streams through target; each stream does rounds
// round trips of random bytes, checking every byte, then half-closes and
// expects a clean EOF. rounds <= 0 means one stream until stop.
func tcpStreams(target string, rounds int, pause time.Duration) func(<-chan struct{}, *tally, int) {
	return func(stop <-chan struct{}, t *tally, worker int) {
		rng := rand.New(rand.NewSource(int64(worker)))
		buf := make([]byte, 4096)
		back := make([]byte, 4096)
		for !stopped(stop) {
			c, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err != nil {
				t.fail("tcp dial: %v", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			broken := false
			for i := 0; (rounds <= 0 || i < rounds) && !stopped(stop); i++ {
				rng.Read(buf)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(buf); err != nil {
					t.fail("tcp stream write (round %d): %v", i, err)
					broken = true
					break
				}
				if _, err := io.ReadFull(c, back); err != nil {
					t.fail("tcp stream read (round %d): %v", i, err)
					broken = true
					break
				}
				if !bytes.Equal(buf, back) {
					t.fail("tcp stream: byte mismatch in round %d", i)
					broken = true
					break
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
			if !broken {
				c.(*net.TCPConn).CloseWrite()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if n, err := c.Read(back); err != io.EOF {
					t.fail("tcp stream end: want EOF, got n=%d err=%v", n, err)
				} else {
					t.ok.Add(1)
				}
			}
			c.Close()
		}
	}
}

var metricLine = regexp.MustCompile(`(?m)^(mosnlite_\w+_total(?:\{[^}]*\})?) ([0-9.e+]+)$`)

// parseCounters reads every mosnlite counter from a /metrics page.
func parseCounters(page string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range metricLine.FindAllStringSubmatch(page, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			out[m[1]] = v
		}
	}
	return out
}

// serviceProbe polls admin, pprof and metrics; every counter must never go
// backwards between two scrapes.
func serviceProbe(p ports) func(<-chan struct{}, *tally, int) {
	return func(stop <-chan struct{}, t *tally, worker int) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: worker%2 == 0}}
		last := map[string]float64{}
		for !stopped(stop) {
			for _, u := range []string{p.adminURL("/server_info"), p.pprofURL("/debug/pprof/cmdline"), p.metricsURL()} {
				resp, err := c.Get(u)
				if err != nil {
					t.fail("service %s: %v", u, err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					t.fail("service %s: %d %v", u, resp.StatusCode, err)
					continue
				}
				t.ok.Add(1)
				if u == p.metricsURL() {
					now := parseCounters(string(body))
					for k, v := range now {
						if v < last[k] {
							t.fail("counter %s went backwards: %v -> %v", k, last[k], v)
						}
						last[k] = v
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
