package main

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

func envOf(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestStandbyReason(t *testing.T) {
	for _, tt := range []struct {
		v, alt string
		want   string // a fragment; "" for serving
	}{
		{"", "", ""},   // not a SidecarSet slot
		{"1", "0", ""}, // injected, first start
		{"0", "1", "holds the hot-upgrade empty image"},
		{"1234", "1", ""}, // the upgraded slot: takes over
		{"1", "1234", "older than the other slot's"}, // the old slot, restarted before its reset
		{"x", "1", ""}, // not Kruise's numbers: serve
	} {
		got := standbyReason(envOf(map[string]string{sidecarVersionEnv: tt.v, sidecarVersionAltEnv: tt.alt}))
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("version %q alt %q: %q, want %q", tt.v, tt.alt, got, tt.want)
		}
	}
}

func TestInstanceName(t *testing.T) {
	if got := instanceName(envOf(map[string]string{sidecarVersionEnv: "17"})); got != "sidecarset-version-17" {
		t.Errorf("slot: %q", got)
	}
	if got := instanceName(envOf(map[string]string{sidecarVersionEnv: "17", instanceEnv: "blue"})); got != "blue" {
		t.Errorf("explicit: %q", got)
	}
	if got := instanceName(envOf(nil)); got != "" {
		t.Errorf("none: %q", got)
	}
}

func TestPID1Refusal(t *testing.T) {
	if pid1Refusal(1, 0) != nil || pid1Refusal(4242, 17) != nil {
		t.Fatal("refused a successor that survives us")
	}
	if err := pid1Refusal(1, 17); err == nil || !strings.Contains(err.Error(), "PID 1 of its PID namespace") {
		t.Fatalf("PID 1 took a successor of its own namespace: %v", err)
	}
}

func TestChildEnv(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_PID=7", "LISTEN_FDS=1",
		"LISTEN_FDNAMES=web", "WATCHDOG_USEC=1000", "WATCHDOG_PID=7", "MOSNLITE_READY_FD=3", "SIDECARSET_VERSION=2"})
	want := "PATH=/bin NOTIFY_SOCKET=/run/systemd/notify SIDECARSET_VERSION=2"
	if strings.Join(got, " ") != want {
		t.Fatalf("childEnv = %q, want %q", got, want)
	}
}

// A test-owned notification socket: what the manager sends, message by message.
func notifySocket(t *testing.T) (string, func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, func() string {
		t.Helper()
		buf, oob := make([]byte, 4096), make([]byte, 256)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		if oobn > 0 { // a barrier's pipe: close it, as the manager does
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for i := range msgs {
				fds, _ := unix.ParseUnixRights(&msgs[i])
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		}
		return strings.TrimSpace(strings.ReplaceAll(string(buf[:n]), "\n", " "))
	}
}

// The adapter on its own: a failed upgrade ends the reload with READY=1
// and no MAINPID=; a successor's ack names it MAINPID=, once; a revert
// takes MAINPID= back; the exit after a handover waits on a barrier.
func TestManagerMessages(t *testing.T) {
	sock, next := notifySocket(t)
	l := logrus.New()
	l.SetOutput(io.Discard)
	m, err := newManager(logrus.NewEntry(l), envOf(map[string]string{"NOTIFY_SOCKET": sock}), 4000, pidFile{})
	if err != nil {
		t.Fatal(err)
	}
	m.mono = func() time.Duration { return 1234567 * time.Microsecond }
	m.reload("SIGHUP")
	if got := next(); got != "RELOADING=1 MONOTONIC_USEC=1234567 STATUS=upgrading: SIGHUP" {
		t.Fatalf("reload: %q", got)
	}
	m.reload("pid 17 asked on reconfig.sock") // the same upgrade: once
	m.failed(errors.New("bind: address in use"))
	if got := next(); got != "READY=1 STATUS=upgrade failed, still serving: bind: address in use" {
		t.Fatalf("failed: %q", got)
	}
	if err := m.upgradeRequested(17); err != nil {
		t.Fatal(err)
	}
	if got := next(); !strings.HasPrefix(got, "RELOADING=1 MONOTONIC_USEC=1234567 STATUS=upgrading: pid 17 asked") {
		t.Fatalf("request: %q", got)
	}
	m.tookOver(17)
	if got := next(); got != "MAINPID=17 STATUS=handed over to pid 17; draining" {
		t.Fatalf("took over: %q", got)
	}
	m.servingAgain(17)
	if got := next(); got != "MAINPID=4000 READY=1 STATUS=successor pid 17 died after taking over; serving again" {
		t.Fatalf("serving again: %q", got)
	}
	m.tookOver(18)
	next()
	done := make(chan struct{})
	go func() { m.exit(); close(done) }()
	if got := next(); got != "BARRIER=1" {
		t.Fatalf("exit: %q, want a barrier", got)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("exit still waits after the barrier was released")
	}
}
