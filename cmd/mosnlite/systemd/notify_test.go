package systemd

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const wait = 5 * time.Second

func notifierFor(t *testing.T, m *managerSocket) *Notifier {
	t.Helper()
	n, err := FromEnv(func(k string) string {
		if k == NotifySocketEnv {
			return m.addr
		}
		return ""
	})
	if err != nil || n == nil {
		t.Fatalf("FromEnv: %v, %v", n, err)
	}
	return n
}

func TestNotifyPathAndAbstractSockets(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		m := newManagerSocket(t, abstract)
		n := notifierFor(t, m)
		if abstract != strings.HasPrefix(n.Socket(), "@") {
			t.Fatalf("socket %q", n.Socket())
		}
		if err := n.Notify(MainPID(os.Getpid()), Ready, Status("serving 3 listeners, generation 1")); err != nil {
			t.Fatal(err)
		}
		got := m.next(wait)
		want := []string{"MAINPID=" + itoa(os.Getpid()), "READY=1", "STATUS=serving 3 listeners, generation 1"}
		if !reflect.DeepEqual(got.fields, want) {
			t.Errorf("abstract=%v: fields %q, want %q", abstract, got.fields, want)
		}
		// The manager learns who sent it from the kernel, as systemd does.
		if got.pid != int32(os.Getpid()) {
			t.Errorf("abstract=%v: sender pid %d, want %d", abstract, got.pid, os.Getpid())
		}
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	m := newManagerSocket(t, false)
	n := notifierFor(t, m)
	before := Monotonic()
	if err := n.Notify(Reloading, MonotonicUsec(Monotonic()), Status("upgrading")); err != nil {
		t.Fatal(err)
	}
	after := Monotonic()
	got := m.next(wait)
	if len(got.fields) != 3 || got.fields[0] != "RELOADING=1" || got.fields[2] != "STATUS=upgrading" {
		t.Fatalf("fields %q", got.fields)
	}
	us, ok := strings.CutPrefix(got.fields[1], "MONOTONIC_USEC=")
	if !ok {
		t.Fatalf("second field %q", got.fields[1])
	}
	v := time.Duration(atoi(t, us)) * time.Microsecond
	// CLOCK_MONOTONIC, the clock systemd compares it with: between our two readings.
	if v < before.Truncate(time.Microsecond) || v > after {
		t.Errorf("MONOTONIC_USEC %v not within [%v, %v]", v, before, after)
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	if boot := time.Duration(ts.Nano()); v > boot {
		t.Errorf("MONOTONIC_USEC %v is past CLOCK_BOOTTIME %v: wrong clock", v, boot)
	}
}

func TestNotifyRefusesMalformedAssignments(t *testing.T) {
	m := newManagerSocket(t, false)
	n := notifierFor(t, m)
	for _, bad := range [][]string{
		nil,
		{"READY"},
		{"=1"},
		{"STATUS=two\nlines"},
		{"X=nul\x00byte"},
		{"BARRIER=1"},
		{"STATUS=" + strings.Repeat("x", MaxMessage)},
	} {
		if err := n.Notify(bad...); err == nil {
			t.Errorf("Notify(%q) = nil, want an error", bad)
		}
	}
	m.none(50 * time.Millisecond)
}

func TestStatusIsOneBoundedLine(t *testing.T) {
	s := Status("upgrade failed:\nnew process 42: bind 127.0.0.1:80: permission denied\r\t" + strings.Repeat("x", 5000))
	if strings.ContainsAny(s, "\n\r\t") {
		t.Errorf("status keeps control characters: %q", s[:80])
	}
	if !strings.HasPrefix(s, "STATUS=upgrade failed: new process 42: bind") {
		t.Errorf("status %q", s[:60])
	}
	if len(s) > len("STATUS=")+maxStatus+len("…") {
		t.Errorf("status of %d bytes is not bounded", len(s))
	}
	if _, err := message([]string{s, Ready}); err != nil {
		t.Errorf("a Status does not fit in a message: %v", err)
	}
}

func TestNilNotifierDoesNothing(t *testing.T) {
	n, err := FromEnv(func(string) string { return "" })
	if err != nil || n != nil {
		t.Fatalf("FromEnv without NOTIFY_SOCKET: %v, %v", n, err)
	}
	if n.Enabled() || n.Notify(Ready) != nil || n.Barrier(context.Background()) != nil || n.Socket() != "" {
		t.Error("a nil Notifier should be a no-op")
	}
}

func TestNotifySocketForms(t *testing.T) {
	for _, bad := range []string{"relative/notify", "vsock:2:1234", "@", "/" + strings.Repeat("a", 200)} {
		if n, err := NewNotifier(bad); err == nil {
			t.Errorf("NewNotifier(%q) = %v, want an error", bad, n)
		} else if !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
			t.Errorf("NewNotifier(%q): error %q does not name NOTIFY_SOCKET", bad, err)
		}
	}
}

func TestNotifyToAbsentManagerFails(t *testing.T) {
	n, err := NewNotifier(t.TempDir() + "/nobody.sock")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil || !errors.Is(err, unix.ENOENT) {
		t.Errorf("Notify to a missing socket: %v, want ENOENT", err)
	}
}

func TestNotifyToManagerThatDoesNotReadIsBounded(t *testing.T) {
	m := newManagerSocket(t, false)
	n := notifierFor(t, m)
	n.sendTimeout = 100 * time.Millisecond
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = n.Notify(Status(strings.Repeat("q", 1000)))
	}
	if err == nil || !strings.Contains(err.Error(), "stayed full") {
		t.Fatalf("filling the manager's queue: %v, want a bounded send that says so", err)
	}
}

func TestBarrierWaitsForTheManager(t *testing.T) {
	m := newManagerSocket(t, true)
	n := notifierFor(t, m)
	if err := n.Notify(MainPID(4242)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done <- n.Barrier(ctx)
	}()
	// The manager processes in order: first the MAINPID, then the barrier.
	if got := m.next(wait); !reflect.DeepEqual(got.fields, []string{"MAINPID=4242"}) {
		t.Fatalf("first message %q", got.fields)
	}
	b := m.next(wait)
	if !reflect.DeepEqual(b.fields, []string{"BARRIER=1"}) || len(b.fds) != 1 {
		t.Fatalf("barrier message %q with %d fds, want BARRIER=1 with one", b.fields, len(b.fds))
	}
	select {
	case err := <-done:
		t.Fatalf("Barrier returned %v before the manager closed the descriptor", err)
	case <-time.After(50 * time.Millisecond):
	}
	unix.Close(b.fds[0])
	if err := <-done; err != nil {
		t.Fatalf("Barrier: %v", err)
	}
}

func TestBarrierGivesUpWithItsContext(t *testing.T) {
	m := newManagerSocket(t, false)
	n := notifierFor(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := n.Barrier(ctx) // nobody reads: the descriptor stays queued
	if err == nil || !strings.Contains(err.Error(), "did not process") {
		t.Fatalf("Barrier with a silent manager: %v", err)
	}
	b := m.next(wait) // drain it, closing what we received
	for _, fd := range b.fds {
		unix.Close(fd)
	}
}
