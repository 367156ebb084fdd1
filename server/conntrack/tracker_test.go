package conntrack

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/service/stats"
)

type fakeConn struct {
	drains atomic.Int32
	closes atomic.Int32
}

func (f *fakeConn) Drain()       { f.drains.Add(1) }
func (f *fakeConn) Close() error { f.closes.Add(1); return nil }

func TestAddRemoveGaugeAndState(t *testing.T) {
	reg := stats.New()
	g := reg.Gauge("listener.downstream_cx_active", "", "listener", "l1")
	tr := New("l1", g)
	a, b := &fakeConn{}, &fakeConn{}
	removeA := tr.Add(a)
	tr.Add(b)
	if tr.Len() != 2 || g.Value() != 2 {
		t.Fatalf("len=%d gauge=%v, want 2, 2", tr.Len(), g.Value())
	}
	tr.SetState(a, Idle)
	if s, ok := tr.State(a); !ok || s != Idle {
		t.Fatalf("state a = %v %v, want idle", s, ok)
	}
	if tr.Count(Idle) != 1 || tr.Count(Active) != 1 {
		t.Fatalf("counts idle=%d active=%d", tr.Count(Idle), tr.Count(Active))
	}
	removeA()
	removeA() // idempotent
	tr.Remove(b)
	if tr.Len() != 0 || g.Value() != 0 {
		t.Fatalf("len=%d gauge=%v, want 0, 0", tr.Len(), g.Value())
	}
	tr.SetState(a, Active) // untracked: ignored
	if _, ok := tr.State(a); ok {
		t.Fatal("removed conn still tracked")
	}
}

func TestDrainCurrentAndLater(t *testing.T) {
	tr := New("l", nil)
	a := &fakeConn{}
	tr.Add(a)
	tr.Drain()
	if a.drains.Load() != 1 {
		t.Fatalf("a drained %d times, want 1", a.drains.Load())
	}
	b := &fakeConn{}
	tr.Add(b)
	if b.drains.Load() != 1 || b.closes.Load() != 0 {
		t.Fatalf("late conn: drains=%d closes=%d, want 1, 0", b.drains.Load(), b.closes.Load())
	}
	if !tr.Draining() {
		t.Fatal("Draining() false after Drain")
	}
}

func TestCloseAllCurrentAndLater(t *testing.T) {
	tr := New("l", nil)
	a := &fakeConn{}
	tr.Add(a)
	tr.CloseAll()
	if a.closes.Load() != 1 {
		t.Fatalf("a closed %d times, want 1", a.closes.Load())
	}
	b := &fakeConn{}
	tr.Add(b)
	if b.closes.Load() != 1 {
		t.Fatalf("late conn closed %d times, want 1", b.closes.Load())
	}
}

func TestWait(t *testing.T) {
	tr := New("l", nil)
	if err := tr.Wait(context.Background()); err != nil {
		t.Fatalf("empty tracker Wait: %v", err)
	}
	a := &fakeConn{}
	remove := tr.Add(a)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := tr.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a live conn = %v, want deadline exceeded", err)
	}

	done := make(chan error, 1)
	go func() { done <- tr.Wait(context.Background()) }()
	remove()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the last conn was removed")
	}

	// Refilled tracker blocks again.
	tr.Add(a)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if err := tr.Wait(ctx2); err == nil {
		t.Fatal("Wait returned nil with a tracked conn")
	}
}
