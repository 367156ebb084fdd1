package hotrestarter

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeProc is a child whose signals the test sees and whose exit the test decides.
type fakeProc struct {
	pid   int
	sigs  chan os.Signal
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	exit  ExitStatus
	onSig func(p *fakeProc, sig os.Signal)
}

func (p *fakeProc) Pid() int { return p.pid }

func (p *fakeProc) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	p.sigs <- sig
	if p.onSig != nil {
		p.onSig(p, sig)
	}
	return nil
}

func (p *fakeProc) Done() <-chan struct{} { return p.done }

func (p *fakeProc) Exit() ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

func (p *fakeProc) end(st ExitStatus) {
	p.once.Do(func() {
		p.mu.Lock()
		p.exit = st
		p.mu.Unlock()
		close(p.done)
	})
}

// dieOn makes a child exit as a real one would on TERM and KILL.
func dieOn(p *fakeProc, sig os.Signal) {
	switch sig {
	case syscall.SIGTERM:
		p.end(ExitStatus{Code: 0})
	case syscall.SIGKILL:
		p.end(ExitStatus{Code: -1, Signal: syscall.SIGKILL})
	}
}

// killOnly ignores SIGTERM.
func killOnly(p *fakeProc, sig os.Signal) {
	if sig == syscall.SIGKILL {
		p.end(ExitStatus{Code: -1, Signal: syscall.SIGKILL})
	}
}

type fakeSpawner struct {
	mu      sync.Mutex
	procs   []*fakeProc
	started chan *fakeProc
	failAt  int // epoch whose start fails; -1 for none
	onSig   func(p *fakeProc, sig os.Signal)
}

func newFakeSpawner(onSig func(*fakeProc, os.Signal)) *fakeSpawner {
	return &fakeSpawner{started: make(chan *fakeProc, 16), failAt: -1, onSig: onSig}
}

func (s *fakeSpawner) Start(epoch int) (Process, error) {
	if epoch == s.failAt {
		return nil, errors.New("exec format error")
	}
	p := &fakeProc{pid: 1000 + epoch, sigs: make(chan os.Signal, 16), done: make(chan struct{}), onSig: s.onSig}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	s.started <- p
	return p, nil
}

// harness runs a Restarter on fakes with a fake clock.
type harness struct {
	t     *testing.T
	sp    *fakeSpawner
	sigs  chan os.Signal
	timer chan time.Time
	waits chan time.Duration
	code  chan int
}

func startHarness(t *testing.T, sp *fakeSpawner, ctx context.Context) *harness {
	t.Helper()
	h := &harness{t: t, sp: sp, sigs: make(chan os.Signal), timer: make(chan time.Time), waits: make(chan time.Duration, 4), code: make(chan int, 1)}
	r := &Restarter{Spawner: sp, After: func(d time.Duration) <-chan time.Time { h.waits <- d; return h.timer }}
	go func() { h.code <- r.Run(ctx, h.sigs) }()
	return h
}

func (h *harness) started(epoch int) *fakeProc {
	h.t.Helper()
	select {
	case p := <-h.sp.started:
		if p.pid != 1000+epoch {
			h.t.Fatalf("started pid %d, want epoch %d", p.pid, epoch)
		}
		return p
	case <-time.After(5 * time.Second):
		h.t.Fatalf("epoch %d never started", epoch)
		return nil
	}
}

func (h *harness) send(sig os.Signal) {
	h.t.Helper()
	select {
	case h.sigs <- sig:
	case <-time.After(5 * time.Second):
		h.t.Fatalf("restarter did not take %v", sig)
	}
}

func (h *harness) exitCode() int {
	h.t.Helper()
	select {
	case c := <-h.code:
		return c
	case <-time.After(5 * time.Second):
		h.t.Fatal("restarter did not exit")
		return -1
	}
}

func gotSignal(t *testing.T, p *fakeProc, want os.Signal) {
	t.Helper()
	select {
	case sig := <-p.sigs:
		if sig != want {
			t.Fatalf("pid %d got %v, want %v", p.pid, sig, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("pid %d never got %v", p.pid, want)
	}
}

func noSignal(t *testing.T, p *fakeProc) {
	t.Helper()
	select {
	case sig := <-p.sigs:
		t.Fatalf("pid %d got unexpected %v", p.pid, sig)
	default:
	}
}

func TestHUPStartsNextEpochAndUSR1IsForwarded(t *testing.T) {
	h := startHarness(t, newFakeSpawner(dieOn), context.Background())
	p0 := h.started(0)
	h.send(syscall.SIGHUP)
	p1 := h.started(1)
	h.send(syscall.SIGHUP)
	p2 := h.started(2)
	h.send(syscall.SIGUSR1)
	for _, p := range []*fakeProc{p0, p1, p2} {
		gotSignal(t, p, syscall.SIGUSR1)
	}
	h.send(syscall.SIGTERM)
	for _, p := range []*fakeProc{p0, p1, p2} {
		gotSignal(t, p, syscall.SIGTERM)
	}
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if d := <-h.waits; d != DefaultTermWait {
		t.Fatalf("waited %v for children, want %v", d, DefaultTermWait)
	}
}

func TestTermKillsStragglersAndExits1(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			h := startHarness(t, newFakeSpawner(nil), context.Background())
			p0 := h.started(0)
			p0.onSig = dieOn
			h.send(syscall.SIGHUP)
			p1 := h.started(1)
			p1.onSig = killOnly
			h.send(sig)
			gotSignal(t, p0, syscall.SIGTERM)
			gotSignal(t, p1, syscall.SIGTERM)
			<-h.waits
			h.timer <- time.Now() // the 30s are up
			gotSignal(t, p1, syscall.SIGKILL)
			noSignal(t, p0)
			if code := h.exitCode(); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
		})
	}
}

func TestTermWithChildrenExitingInTimeIsClean(t *testing.T) {
	// Envoy's rule: every child ended within the wait, whatever its status.
	sp := newFakeSpawner(func(p *fakeProc, sig os.Signal) {
		if sig == syscall.SIGTERM {
			p.end(ExitStatus{Code: -1, Signal: syscall.SIGTERM})
		}
	})
	h := startHarness(t, sp, context.Background())
	h.started(0)
	h.send(syscall.SIGTERM)
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

func TestAbnormalExitTakesAllDown(t *testing.T) {
	cases := []struct {
		name string
		exit ExitStatus
	}{
		{"non-zero", ExitStatus{Code: 3}},
		{"signal", ExitStatus{Code: -1, Signal: syscall.SIGSEGV}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, newFakeSpawner(dieOn), context.Background())
			p0 := h.started(0)
			h.send(syscall.SIGHUP)
			p1 := h.started(1)
			h.send(syscall.SIGHUP)
			p2 := h.started(2)
			p1.end(tc.exit)
			gotSignal(t, p0, syscall.SIGKILL)
			gotSignal(t, p2, syscall.SIGKILL)
			if code := h.exitCode(); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
		})
	}
}

func TestCleanExitIsNormal(t *testing.T) {
	h := startHarness(t, newFakeSpawner(dieOn), context.Background())
	p0 := h.started(0)
	h.send(syscall.SIGHUP)
	p1 := h.started(1)
	p0.end(ExitStatus{Code: 0}) // the old epoch leaves after its drain
	h.send(syscall.SIGUSR1)     // the wrapper carries on
	gotSignal(t, p1, syscall.SIGUSR1)
	h.send(syscall.SIGHUP)
	p2 := h.started(2)
	noSignal(t, p1)
	p1.end(ExitStatus{Code: 0})
	p2.end(ExitStatus{Code: 0})
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d after the last child exited cleanly, want 0", code)
	}
}

func TestStartFailure(t *testing.T) {
	t.Run("first", func(t *testing.T) {
		sp := newFakeSpawner(dieOn)
		sp.failAt = 0
		h := startHarness(t, sp, context.Background())
		if code := h.exitCode(); code != 1 {
			t.Fatalf("exit code %d", code)
		}
	})
	t.Run("on SIGHUP", func(t *testing.T) {
		sp := newFakeSpawner(dieOn)
		sp.failAt = 1
		h := startHarness(t, sp, context.Background())
		p0 := h.started(0)
		h.send(syscall.SIGHUP)
		gotSignal(t, p0, syscall.SIGKILL)
		if code := h.exitCode(); code != 1 {
			t.Fatalf("exit code %d", code)
		}
	})
}

func TestContextCancelShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	h := startHarness(t, newFakeSpawner(dieOn), ctx)
	p0 := h.started(0)
	cancel()
	gotSignal(t, p0, syscall.SIGTERM)
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestExitStatus(t *testing.T) {
	if !(ExitStatus{}).Clean() || (ExitStatus{Code: 1}).Clean() || (ExitStatus{Code: -1, Signal: syscall.SIGTERM}).Clean() {
		t.Fatal("Clean is wrong")
	}
	if s := (ExitStatus{Code: -1, Signal: syscall.SIGKILL}).String(); s != "killed by signal killed" {
		t.Fatalf("String() = %q", s)
	}
}
