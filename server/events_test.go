package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/listener/ident"
)

// eventLog records the lifecycle's events in order.
type eventLog struct {
	mu     sync.Mutex
	events []string
	refuse error
}

func (l *eventLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
}

func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func (l *eventLog) options(o *Options) {
	o.Events = Events{
		OnUpgradeRequested: func(pid int) error {
			l.add("requested %d", pid)
			return l.refuse
		},
		OnSuccessorTookOver: func(pid int) { l.add("took over %d", pid) },
		OnUpgradeFailed:     func(pid int, err error) { l.add("failed %d: %v", pid, err) },
		OnServingAgain:      func(pid int) { l.add("serving again after %d", pid) },
		OnPredecessorDone:   func() { l.add("predecessor done") },
	}
}

// The events come at their turn of the lifecycle, and the successor is told
// before it gets the counters it waits for ahead of serving its service
// ports (so that a process manager hears of the new main process first).
func TestEventsOfAHandoverAndARevert(t *testing.T) {
	e := newEnv(t, "", "")
	e.style.pol.watch = 5 * time.Second
	var l eventLog
	s := e.server(l.options)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-e.style.listened
	h := e.style.successorHooks()
	if err := h.onRequest(4242); err != nil {
		t.Fatal(err)
	}
	h.onFail(4242, errors.New("bad config"))
	succ := newFakeSucc(true)
	h.onAck(succ)
	succ.mu.Lock()
	pushed := len(succ.counters)
	succ.mu.Unlock()
	if got := l.get(); len(got) != 3 || got[2] != "took over 4242" || pushed == 0 {
		t.Fatalf("events %q, counters pushed %d", got, pushed)
	}
	close(succ.gone) // dies within the watch
	waitFor(t, "serving again", func() bool { return s.getState() == StateRunning && len(l.get()) == 4 })
	want := []string{"requested 4242", "failed 4242: bad config", "took over 4242", "serving again after 4242"}
	if got := l.get(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", got, want)
	}
	// A refusal from the hook is what the style tells the requester.
	l.refuse = errors.New("not now")
	if err := e.style.successorHooks().onRequest(7); err == nil || err.Error() != "not now" {
		t.Fatalf("onRequest = %v", err)
	}
}

func TestEventPredecessorDone(t *testing.T) {
	sock, _ := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
	e := newEnv(t, sock.Spec.Address, "")
	e.style.pred = &fakePred{p: 77, socks: []ident.Socket{sock}, bye: make(chan struct{})}
	e.style.lin = lineage{generation: 2, drainingPID: 77, env: map[string]string{"WATCHDOG_USEC": "20000000"}}
	var l eventLog
	s := e.server(l.options, func(o *Options) {
		o.Carry = func() map[string]string { return map[string]string{"WATCHDOG_USEC": "20000000"} }
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.Carried()["WATCHDOG_USEC"]; got != "20000000" {
		t.Fatalf("carried %q", got)
	}
	if len(l.get()) != 0 {
		t.Fatalf("events before the predecessor finished: %q", l.get())
	}
	close(e.style.pred.bye)
	waitFor(t, "predecessor done", func() bool { return len(l.get()) == 1 && s.ServerInfo().DrainingPID == 0 })
	// What the next successor is handed: Carry, read at the handoff.
	<-e.style.listened
	if lin := e.style.successorHooks().manifest(); lin.env["WATCHDOG_USEC"] != "20000000" {
		t.Fatalf("manifest env %v", lin.env)
	}
}

// Sockets a process manager bound are adopted on a fresh start by the
// listener of their name; one matching nothing fails the start, naming it.
func TestActivatedSockets(t *testing.T) {
	t.Run("adopted", func(t *testing.T) {
		sock, l := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
		e := newEnv(t, l.Addr().String(), "")
		s := e.server(func(o *Options) { o.Activated = []listener.Activated{{Name: "web", File: sock.File}} })
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		l.Close() // the manager's copy: the process serves on its own
		mustGet(t, e.web, "/", "v1")
		if got := s.Listeners(); len(got) != 2 {
			t.Fatalf("listeners %v", got)
		}
		if !e.logged("socket activation: adopting") {
			t.Fatal("not logged")
		}
	})
	t.Run("matching nothing", func(t *testing.T) {
		sock, l := inherited(t, "other", ident.KindServer, "127.0.0.1:0")
		e := newEnv(t, "", "")
		s := e.server(func(o *Options) { o.Activated = []listener.Activated{{Name: "other", File: sock.File}} })
		err := s.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), `socket "other"`) || !strings.Contains(err.Error(), l.Addr().String()) {
			t.Fatalf("Start = %v, want an error naming the socket and its address", err)
		}
		refused(t, e.web)
	})
	t.Run("closed when a predecessor hands over", func(t *testing.T) {
		sock, _ := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
		act, _ := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
		e := newEnv(t, sock.Spec.Address, "")
		e.style.pred = &fakePred{p: 77, socks: []ident.Socket{sock}, bye: make(chan struct{})}
		e.style.lin = lineage{generation: 2}
		s := e.server(func(o *Options) { o.Activated = []listener.Activated{{Name: "web", File: act.File}} })
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := act.File.Close(); err == nil {
			t.Fatal("the activated socket was left open")
		}
		close(e.style.pred.bye)
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
