package proxy

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Where a pollable connection is, as the poller sees it (under HTTPRuntime.mu).
const (
	istActive uint8 = iota // a goroutine serves it
	istIdle                // between requests, with no goroutine: the poller waits for its next byte
)

// pollerLinger is how long a poller outlives its last connection before it
// stops (and closes its epoll descriptor).
const pollerLinger = 10 * time.Second

// idleHandoff is how long a keep-alive connection waits for its next
// request with its goroutine (parked in the Go runtime's netpoller, without
// a buffer) before it goes to the HTTPRuntime and the goroutine ends. A busy
// connection thus never pays for the handoff, and one that idles holds no
// goroutine after this.
const idleHandoff = 250 * time.Millisecond

// maxWaitingIdle bounds the connections that wait out their handoff with a
// goroutine: when thousands go idle at once, the rest go to the poller at
// once, and the goroutines (whose structures the runtime never frees) stay
// few.
const maxWaitingIdle = 256

// HTTPRuntime is what the HTTP proxies of a process share. It holds HTTP
// keep-alive connections between requests without a
// goroutine or a buffer each: one epoll instance watches them, starts a
// goroutine when a connection's next request arrives, and closes those idle
// past their proxy's idle timeout. An idle connection then costs its
// socket, its httpConn and a map entry — under a kilobyte — instead of a
// goroutine stack and buffers.
//
// One runtime serves every HTTP proxy of a process (WithHTTPRuntime): one
// descriptor and one goroutine however many listeners there are. The poller
// starts with its first connection and stops pollerLinger after its last.
// The runtime also gives memory back to the operating system after a wave
// of connections has gone (see memReclaimer).
//
// A connection comes here after idleHandoff without a request; until then
// its goroutine waits in the runtime's netpoller, which costs a busy
// connection nothing extra. Each stay is armed one-shot and level-triggered
// (EPOLLONESHOT): bytes that arrived before the arming still wake it, and
// an event never comes twice for one stay.
type HTTPRuntime struct {
	now     func() time.Time // injectable clock
	log     *logrus.Entry
	reclaim *memReclaimer
	// waiting is how many connections wait for their next request with
	// their goroutine, within the handoff; past maxWaiting, idle
	// connections go to the poller at once.
	waiting    atomic.Int64
	maxWaiting int64

	mu         sync.Mutex
	epfd       int
	running    bool
	conns      map[uint64]*httpConn // registered, by epoll data id
	nextID     uint64
	lists      map[time.Duration]*idleList // idle connections by idle timeout
	emptySince time.Time
}

// idleList is the idle connections that share an idle timeout, oldest
// first: the head is the next to time out.
type idleList struct {
	timeout time.Duration
	chain[httpConn, *httpConn]
}

// NewHTTPRuntime returns a poller, idle until its first connection.
func NewHTTPRuntime(log *logrus.Entry) *HTTPRuntime {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	return &HTTPRuntime{now: time.Now, log: log.WithField("component", "http_idle_poller"), epfd: -1,
		reclaim: newMemReclaimer(), maxWaiting: maxWaitingIdle,
		conns: map[uint64]*httpConn{}, lists: map[time.Duration]*idleList{}}
}

// waitHere counts a connection that waits with its goroutine, unless too
// many do already; then it reports false and counts nothing.
func (s *HTTPRuntime) waitHere() bool {
	if s.waiting.Add(1) > s.maxWaiting {
		s.waiting.Add(-1)
		return false
	}
	return true
}

// waited ends a wait counted by waitHere.
func (s *HTTPRuntime) waited() { s.waiting.Add(-1) }

// list returns the idle list of a timeout, made on first use.
func (s *HTTPRuntime) list(timeout time.Duration) *idleList {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.lists[timeout]
	if !ok {
		l = &idleList{timeout: timeout}
		s.lists[timeout] = l
	}
	return l
}

// arm registers c with the epoll instance, or re-arms its one-shot
// registration, starting the poller if need be. Under s.mu.
func (s *HTTPRuntime) armLocked(c *httpConn) error {
	if !s.running {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("epoll_create: %w", err)
		}
		s.epfd, s.running = fd, true
		go s.loop(fd)
	}
	op, id := unix.EPOLL_CTL_MOD, c.pollID
	if id == 0 {
		s.nextID++
		op, id = unix.EPOLL_CTL_ADD, s.nextID
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var cerr error
	epfd := s.epfd
	if err := c.raw.rc.Control(func(fd uintptr) { cerr = unix.EpollCtl(epfd, op, int(fd), &ev) }); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("epoll_ctl: %w", cerr)
	}
	if op == unix.EPOLL_CTL_ADD {
		c.pollID = id
		s.conns[id] = c
	}
	return nil
}

// unregister forgets c. del removes it from the epoll set explicitly,
// which a connection whose socket lives on elsewhere (moved to a successor)
// needs: closing our descriptor does not end the registration while
// another process holds the socket. It must run before c's socket is
// closed.
func (s *HTTPRuntime) unregister(c *httpConn, del bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.pollID == 0 {
		return
	}
	if c.ist == istIdle {
		c.p.idleList.unlink(c)
	}
	if r := c.raw; del && s.running {
		if r == nil {
			r = newRawIO(c.nc)
		}
		if r != nil {
			epfd := s.epfd
			_ = r.rc.Control(func(fd uintptr) { _ = unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
		}
	}
	delete(s.conns, c.pollID)
	c.pollID, c.ist = 0, istActive
	if len(s.conns) == 0 {
		s.emptySince = s.now()
	}
}

// park hands the idle connection c, which holds no buffer, to the poller,
// and reports whether it did; if so its goroutine must let go of it. It
// refuses a connection that is closed, draining or moving, or that it
// cannot watch (no socket of its own, an epoll failure): those stay with
// their goroutine.
func (s *HTTPRuntime) park(c *httpConn) bool {
	if c.raw == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	refuse := c.closed || c.draining || c.wantsMoveLocked()
	c.mu.Unlock()
	if refuse {
		return false
	}
	if err := s.armLocked(c); err != nil {
		s.log.WithError(err).Debug("idle connection keeps its goroutine")
		return false
	}
	c.ist = istIdle
	c.raw = nil // made anew when it wakes
	c.p.idleList.push(c)
	s.reclaim.left() // its goroutine ends
	return true
}

// claim takes c out of the poller if it is idle there, and reports whether
// it did: the caller then owns the connection (serves or closes it).
func (s *HTTPRuntime) claim(c *httpConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.ist != istIdle {
		return false
	}
	c.p.idleList.unlink(c)
	c.ist = istActive
	return true
}

func (c *httpConn) chainLinks() *links[httpConn] { return &c.idleLinks }

// idleCount is how many connections the poller holds now.
func (s *HTTPRuntime) idleCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lists {
		for c := l.head; c != nil; c = c.idleLinks.next {
			n++
		}
	}
	return n
}

// waitLocked is how long the poller may sleep: until the oldest idle
// connection of a list times out. A connection parked later in the same
// list times out later still (give or take the jitter of its handoff), and
// one parked in an empty list no sooner than its timeout less the handoff
// from now, so nothing needs to wake the poller early.
func (s *HTTPRuntime) waitLocked(now time.Time) int {
	d := pollerLinger
	if len(s.conns) > 0 {
		d = time.Hour
	}
	for _, l := range s.lists {
		// A connection parks idleHandoff into its idle time at the earliest.
		next := l.timeout - idleHandoff
		if l.head != nil {
			next = l.head.idleSince.Add(l.timeout).Sub(now)
		}
		d = min(d, next)
	}
	if d <= 0 {
		return 0
	}
	return int(d/time.Millisecond) + 1
}

// loop is the poller: it wakes connections whose bytes arrived and expires
// those idle too long, until it has had no connection for pollerLinger.
func (s *HTTPRuntime) loop(epfd int) {
	events := make([]unix.EpollEvent, 256)
	var wake, expired []*httpConn
	for {
		s.mu.Lock()
		wait := s.waitLocked(s.now())
		s.mu.Unlock()
		n, err := unix.EpollWait(epfd, events, wait)
		if err != nil {
			n = 0
			if err != unix.EINTR {
				// Not expected with a valid descriptor; the idle timeouts
				// below still run, and the next wait tries again.
				s.log.WithError(err).Error("epoll_wait failed")
				time.Sleep(10 * time.Millisecond)
			}
		}
		now := s.now()
		s.mu.Lock()
		for i := range n {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			c := s.conns[id]
			if c == nil {
				continue
			}
			if c.ist == istIdle {
				c.p.idleList.unlink(c)
				c.ist = istActive
				wake = append(wake, c)
			}
		}
		for _, l := range s.lists {
			for c := l.head; c != nil && !now.Before(c.idleSince.Add(l.timeout)); c = l.head {
				l.unlink(c)
				c.ist = istActive
				expired = append(expired, c)
			}
		}
		if len(s.conns) == 0 && now.Sub(s.emptySince) >= pollerLinger {
			s.running, s.epfd = false, -1
			s.mu.Unlock()
			_ = unix.Close(epfd)
			return
		}
		s.mu.Unlock()
		for i, c := range wake {
			go c.serve(startReadable)
			wake[i] = nil
		}
		for i, c := range expired {
			c.expire()
			expired[i] = nil
		}
		wake, expired = wake[:0], expired[:0]
	}
}
