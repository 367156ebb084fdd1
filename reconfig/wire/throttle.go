package wire

import "time"

// Throttle lets a repeated log line through at most once per Every,
// counting the ones it held back in between, so that a peer that keeps
// failing (refused, garbled, out of descriptors) cannot grow a log without
// bound. Not safe for concurrent use.
type Throttle struct {
	Every time.Duration
	Now   func() time.Time // time.Now when nil

	last time.Time
	held int
}

// Allow reports whether to log now and, if so, how many were held back
// since the last one logged.
func (t *Throttle) Allow() (ok bool, suppressed int) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	n := now()
	if !t.last.IsZero() && n.Sub(t.last) < t.Every {
		t.held++
		return false, 0
	}
	suppressed, t.last, t.held = t.held, n, 0
	return true, suppressed
}
