package systemd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Well-known assignments of sd_notify(3).
const (
	// Ready: start-up (or a reload) is complete.
	Ready = "READY=1"
	// Reloading: a reload begins; it must end with Ready. Send it together
	// with MonotonicUsec, which Type=notify-reload requires.
	Reloading = "RELOADING=1"
	// Stopping: the service is shutting down. From systemd 259 on this is
	// final, so it is sent on a real stop only, never on an upgrade.
	Stopping = "STOPPING=1"
	// WatchdogPing resets the watchdog timer (WatchdogSec=).
	WatchdogPing = "WATCHDOG=1"

	barrier = "BARRIER=1"
)

// NotifySocketEnv names the variable holding the manager's socket.
const NotifySocketEnv = "NOTIFY_SOCKET"

// MaxMessage is the largest message sent: systemd reads notifications into a
// buffer of PIPE_BUF bytes and refuses longer ones.
const MaxMessage = 4096

// maxStatus bounds one STATUS= line: a person reads it in `systemctl status`.
const maxStatus = 1024

// DefaultSendTimeout bounds one send to a manager whose socket queue is full.
const DefaultSendTimeout = 2 * time.Second

// Status is a STATUS= assignment: one line a person can read. Line breaks and
// other control characters become spaces and it is cut to a bounded length,
// so that any text (an error message, say) can be passed.
func Status(s string) string {
	var b strings.Builder
	b.WriteString("STATUS=")
	for _, r := range s {
		if b.Len() >= len("STATUS=")+maxStatus {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		b.WriteRune(r)
	}
	return b.String()
}

// MainPID is a MAINPID= assignment: the service's main process is now pid.
func MainPID(pid int) string { return "MAINPID=" + strconv.Itoa(pid) }

// MonotonicUsec is a MONOTONIC_USEC= assignment for a CLOCK_MONOTONIC reading.
func MonotonicUsec(now time.Duration) string {
	return "MONOTONIC_USEC=" + strconv.FormatInt(now.Microseconds(), 10)
}

// Monotonic reads CLOCK_MONOTONIC, the clock MONOTONIC_USEC= is measured on.
func Monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0 // cannot fail on Linux with a valid clock id
	}
	return time.Duration(ts.Nano())
}

// Notifier sends state changes to the service manager. A nil *Notifier (no
// NOTIFY_SOCKET) is valid: every method does nothing and returns nil.
type Notifier struct {
	addr        string // NOTIFY_SOCKET as given: "/path" or "@abstract"
	sendTimeout time.Duration
}

// NewNotifier returns a Notifier for the socket as NOTIFY_SOCKET names it, or
// nil for "". A leading '@' names a socket in the abstract namespace. Other
// forms (systemd's "vsock:" addresses, relative paths) are refused.
func NewNotifier(socket string) (*Notifier, error) {
	switch {
	case socket == "":
		return nil, nil
	case strings.HasPrefix(socket, "vsock"):
		return nil, fmt.Errorf("systemd: %s=%q: AF_VSOCK notification sockets are not supported", NotifySocketEnv, socket)
	case socket[0] != '/' && socket[0] != '@':
		return nil, fmt.Errorf("systemd: %s=%q: want an absolute path or an @abstract name", NotifySocketEnv, socket)
	case socket == "@":
		return nil, fmt.Errorf("systemd: %s=%q: empty abstract socket name", NotifySocketEnv, socket)
	case len(socket) > len(unix.RawSockaddrUnix{}.Path)-1:
		return nil, fmt.Errorf("systemd: %s=%q: longer than the %d bytes a unix socket address holds", NotifySocketEnv, socket, len(unix.RawSockaddrUnix{}.Path)-1)
	}
	return &Notifier{addr: socket, sendTimeout: DefaultSendTimeout}, nil
}

// FromEnv is NewNotifier for NOTIFY_SOCKET as getenv reports it.
func FromEnv(getenv func(string) string) (*Notifier, error) {
	return NewNotifier(getenv(NotifySocketEnv))
}

// Enabled reports whether there is a manager to notify.
func (n *Notifier) Enabled() bool { return n != nil }

// Socket returns NOTIFY_SOCKET as given ("" for a nil Notifier).
func (n *Notifier) Socket() string {
	if n == nil {
		return ""
	}
	return n.addr
}

// Notify sends the assignments in one datagram, in the order given (systemd
// applies MAINPID= before READY= within one message whatever the order).
// Each must be KEY=VALUE on one line; Status makes any text fit.
func (n *Notifier) Notify(assignments ...string) error {
	if n == nil {
		return nil
	}
	msg, err := message(assignments)
	if err != nil {
		return err
	}
	if err := n.send(msg, nil); err != nil {
		return fmt.Errorf("systemd: notify %s: %w", n.addr, err)
	}
	return nil
}

// message joins assignments into one datagram, refusing malformed ones.
func message(assignments []string) ([]byte, error) {
	if len(assignments) == 0 {
		return nil, errors.New("systemd: notify: no assignment")
	}
	var b strings.Builder
	for _, a := range assignments {
		k, _, ok := strings.Cut(a, "=")
		switch {
		case !ok || k == "":
			return nil, fmt.Errorf("systemd: notify: %q is not a KEY=VALUE assignment", a)
		case strings.ContainsAny(a, "\n\x00"):
			return nil, fmt.Errorf("systemd: notify: assignment %s= spans lines", k)
		case k == "BARRIER":
			return nil, errors.New("systemd: notify: BARRIER= goes alone, with a descriptor: use Barrier")
		}
		b.WriteString(a)
		b.WriteByte('\n')
	}
	if b.Len() > MaxMessage {
		return nil, fmt.Errorf("systemd: notify: message of %d bytes exceeds the %d the manager reads", b.Len(), MaxMessage)
	}
	return []byte(b.String()), nil
}

// send writes one datagram from a fresh unbound socket, as sd_notify does:
// nothing is kept open between messages, and a socket the manager re-creates
// (after a daemon-reexec) is found again. The kernel attaches our
// credentials (SCM_CREDENTIALS) for the manager, which sets SO_PASSCRED.
func (n *Notifier) send(msg, oob []byte) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(n.sendTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("set send timeout: %w", err)
	}
	// x/sys/unix maps a leading '@' to the abstract namespace's NUL byte.
	if err := unix.Sendmsg(fd, msg, oob, &unix.SockaddrUnix{Name: n.addr}, unix.MSG_NOSIGNAL); err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return fmt.Errorf("the manager's socket queue stayed full for %s", n.sendTimeout)
		}
		return err
	}
	return nil
}

// Barrier waits until the manager has processed every message this process
// sent before it (BARRIER=1, systemd 246 and later): it passes the write end
// of a pipe, which the manager closes once it gets there. Use it before
// exiting after a message that must not be lost, such as a MAINPID= change.
// It gives up when ctx ends.
func (n *Notifier) Barrier(ctx context.Context) error {
	if n == nil {
		return nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("systemd: barrier: %w", err)
	}
	defer r.Close()
	var serr error
	rc, err := w.SyscallConn()
	if err == nil {
		// Control, not Fd: Fd would switch the pipe to blocking mode.
		err = rc.Control(func(fd uintptr) { serr = n.send([]byte(barrier+"\n"), unix.UnixRights(int(fd))) })
	}
	w.Close() // the manager holds the only write end left
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("systemd: barrier via %s: %w", n.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { r.SetReadDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		r.SetReadDeadline(dl)
	}
	var buf [64]byte
	for {
		_, err := r.Read(buf[:])
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("systemd: barrier via %s: the manager did not process our messages in time: %w", n.addr, context.Cause(ctx))
		case err != nil:
			return fmt.Errorf("systemd: barrier via %s: %w", n.addr, err)
		}
	}
}
