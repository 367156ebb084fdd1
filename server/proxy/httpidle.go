package proxy

import (
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Where a pollable connection is, as the poller sees it (under IdlePoller.mu).
const (
	istActive      uint8 = iota // a goroutine serves it
	istActiveEvent              // a goroutine serves it, and bytes arrived meanwhile
	istIdle                     // between requests, with no goroutine: the poller waits for its next byte
)

// pollerLinger is how long a poller outlives its last connection before it
// stops (and closes its epoll descriptor).
const pollerLinger = 10 * time.Second

// IdlePoller holds HTTP keep-alive connections between requests without a
// goroutine or a buffer each: one epoll instance watches them, starts a
// goroutine when a connection's next request arrives, and closes those idle
// past their proxy's idle timeout. An idle connection then costs its
// socket, its httpConn and a map entry — under a kilobyte — instead of a
// goroutine stack and buffers.
//
// One poller serves every HTTP proxy of a process (WithIdlePoller): one
// descriptor and one goroutine however many listeners there are. It starts
// with its first connection and stops pollerLinger after its last.
//
// Every pollable connection (a plain TCP or unix socket) is registered once,
// edge-triggered, when it starts. An event on a connection that a goroutine
// serves only marks it (istActiveEvent), so that the goroutine, before it
// lets the connection go idle, reads again instead of losing the wakeup for
// bytes that came in meanwhile.
type IdlePoller struct {
	now func() time.Time // injectable clock
	log *logrus.Entry

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
	timeout    time.Duration
	head, tail *httpConn
}

// NewIdlePoller returns a poller, idle until its first connection.
func NewIdlePoller(log *logrus.Entry) *IdlePoller {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	return &IdlePoller{now: time.Now, log: log.WithField("component", "http_idle_poller"), epfd: -1,
		conns: map[uint64]*httpConn{}, lists: map[time.Duration]*idleList{}}
}

// list returns the idle list of a timeout, made on first use.
func (s *IdlePoller) list(timeout time.Duration) *idleList {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.lists[timeout]
	if !ok {
		l = &idleList{timeout: timeout}
		s.lists[timeout] = l
	}
	return l
}

// register watches c from now on, starting the poller if need be. False
// means c cannot be watched: its goroutine waits for it between requests.
func (s *IdlePoller) register(c *httpConn) bool {
	if c.raw == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			s.log.WithError(err).Warn("epoll_create failed: idle connections keep their goroutines")
			return false
		}
		s.epfd, s.running = fd, true
		go s.loop(fd)
	}
	s.nextID++
	id := s.nextID
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var cerr error
	epfd := s.epfd
	if err := c.raw.rc.Control(func(fd uintptr) { cerr = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) }); err != nil || cerr != nil {
		return false
	}
	c.pollID, c.ist = id, istActive
	s.conns[id] = c
	return true
}

// unregister stops watching c. del removes it from the epoll set
// explicitly, which a connection whose socket lives on elsewhere (moved to
// a successor) needs: closing our descriptor does not end the registration
// while another process holds the socket. It must run before c's socket is
// closed.
func (s *IdlePoller) unregister(c *httpConn, del bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.pollID == 0 {
		return
	}
	if c.ist == istIdle {
		c.p.idleList.unlink(c)
	}
	if del && s.running {
		epfd := s.epfd
		_ = c.raw.rc.Control(func(fd uintptr) { _ = unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	}
	delete(s.conns, c.pollID)
	c.pollID, c.ist = 0, istActive
	if len(s.conns) == 0 {
		s.emptySince = s.now()
	}
}

// Outcomes of park.
const (
	parked      = iota // the poller holds the connection now: its goroutine must let go of it
	parkRefused        // it stays with its goroutine (closed, draining, moving, not watched)
	parkRecheck        // bytes arrived since its last read: read again, then park again
)

// park hands the idle connection c, which holds no buffer, to the poller.
func (s *IdlePoller) park(c *httpConn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.pollID == 0 {
		return parkRefused
	}
	if c.ist == istActiveEvent {
		c.ist = istActive
		return parkRecheck
	}
	c.mu.Lock()
	refuse := c.closed || c.draining || c.wantsMoveLocked()
	if !refuse {
		c.idleSince = s.now()
	}
	c.mu.Unlock()
	if refuse {
		return parkRefused
	}
	c.ist = istIdle
	c.p.idleList.push(c)
	return parked
}

// claim takes c out of the poller if it is idle there, and reports whether
// it did: the caller then owns the connection (serves or closes it).
func (s *IdlePoller) claim(c *httpConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.ist != istIdle {
		return false
	}
	c.p.idleList.unlink(c)
	c.ist = istActive
	return true
}

func (l *idleList) push(c *httpConn) {
	c.idlePrev, c.idleNext = l.tail, nil
	if l.tail != nil {
		l.tail.idleNext = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *idleList) unlink(c *httpConn) {
	if c.idlePrev != nil {
		c.idlePrev.idleNext = c.idleNext
	} else {
		l.head = c.idleNext
	}
	if c.idleNext != nil {
		c.idleNext.idlePrev = c.idlePrev
	} else {
		l.tail = c.idlePrev
	}
	c.idlePrev, c.idleNext = nil, nil
}

// idleCount is how many connections the poller holds now.
func (s *IdlePoller) idleCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lists {
		for c := l.head; c != nil; c = c.idleNext {
			n++
		}
	}
	return n
}

// waitLocked is how long the poller may sleep: until the oldest idle
// connection of a list times out. A connection parked later in the same
// list times out later still, and one in an empty list no sooner than the
// list's timeout from now, so nothing needs to wake the poller early.
func (s *IdlePoller) waitLocked(now time.Time) int {
	d := pollerLinger
	if len(s.conns) > 0 {
		d = time.Hour
	}
	for _, l := range s.lists {
		next := l.timeout
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
func (s *IdlePoller) loop(epfd int) {
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
			switch c.ist {
			case istIdle:
				c.p.idleList.unlink(c)
				c.ist = istActive
				wake = append(wake, c)
			case istActive:
				c.ist = istActiveEvent
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
