package proxy

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Memory reclaim: when many connections have gone — closed, or parked in
// the idle poller so that their goroutines ended — the memory they used
// (goroutine stacks, buffers in the pools) is free inside the process, but
// the Go runtime gives it back to the operating system only at its own
// slow pace. Once such a wave is over, the reclaimer runs a collection and
// returns the free memory at once, so that the resident size follows the
// connection count down.
const (
	reclaimBatch    = 512                    // connections gone before a reclaim is worth it
	reclaimQuiet    = 500 * time.Millisecond // no connection gone for this long: the wave is over
	reclaimInterval = 5 * time.Second        // at most one reclaim per interval
)

type memReclaimer struct {
	reclaim func() // debug.FreeOSMemory, or a fake
	now     func() time.Time
	after   func(time.Duration, func()) // time.AfterFunc without the timer

	gone     atomic.Int64 // connections gone since the last reclaim
	lastGone atomic.Int64 // UnixNano of the latest
	mu       sync.Mutex
	pending  bool // a check is scheduled
	last     time.Time
}

func newMemReclaimer() *memReclaimer {
	return &memReclaimer{reclaim: debug.FreeOSMemory, now: time.Now,
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// left counts one connection gone.
func (m *memReclaimer) left() {
	m.lastGone.Store(m.now().UnixNano())
	if m.gone.Add(1) < reclaimBatch {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.pending {
		m.pending = true
		m.after(reclaimQuiet, m.check)
	}
}

// check reclaims if the wave is over, else looks again later.
func (m *memReclaimer) check() {
	now := m.now()
	m.mu.Lock()
	wait := reclaimQuiet - now.Sub(time.Unix(0, m.lastGone.Load()))
	if w := reclaimInterval - now.Sub(m.last); w > wait {
		wait = w
	}
	if wait > 0 {
		m.after(wait, m.check)
		m.mu.Unlock()
		return
	}
	m.pending = false
	m.last = now
	m.gone.Store(0)
	m.mu.Unlock()
	m.reclaim()
}
