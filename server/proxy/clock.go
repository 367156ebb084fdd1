package proxy

import "time"

// clock is where the HTTP/1 engine reads the time. Each time.Now is two
// clock reads (the wall clock and the monotonic one), each time.Since one;
// at tens of thousands of requests a second they are a visible part of a
// request's CPU, so the keep-alive path reads the clock four times a
// request and reuses those readings (exchange.reading, httpConn.endAt).
// Tests count the reads through it.
type clock interface {
	Now() time.Time
	Since(t time.Time) time.Duration
}

// sysClock is the clock of the time package.
type sysClock struct{}

func (sysClock) Now() time.Time                  { return time.Now() }
func (sysClock) Since(t time.Time) time.Duration { return time.Since(t) }
