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

type movableConn struct {
	fakeConn
	migrates atomic.Int32
}

func (m *movableConn) Migrate() { m.migrates.Add(1) }

func TestMigrateCurrentAndLaterThenDrainOverrides(t *testing.T) {
	tr := New("l", nil)
	m, plain := &movableConn{}, &fakeConn{}
	tr.Add(m)
	tr.Add(plain)
	tr.Migrate()
	if !tr.Migrating() || m.migrates.Load() != 1 || m.drains.Load() != 0 {
		t.Fatalf("movable: migrates=%d drains=%d, want 1, 0", m.migrates.Load(), m.drains.Load())
	}
	if plain.drains.Load() != 1 {
		t.Fatalf("a conn that cannot move drained %d times, want 1", plain.drains.Load())
	}
	late := &movableConn{}
	tr.Add(late)
	if late.migrates.Load() != 1 {
		t.Fatal("a conn added while migrating was not asked to move")
	}
	tr.Drain()
	if m.drains.Load() != 1 || late.drains.Load() != 1 {
		t.Fatal("Drain after Migrate did not reach every conn")
	}
	after := &movableConn{}
	tr.Add(after)
	if after.migrates.Load() != 0 || after.drains.Load() != 1 {
		t.Fatalf("added after Drain: migrates=%d drains=%d, want 0, 1", after.migrates.Load(), after.drains.Load())
	}
	tr.Migrate() // a drain is not undone
	if after.migrates.Load() != 0 {
		t.Fatal("Migrate after Drain asked a conn to move")
	}
}

func TestAgeCarriesOver(t *testing.T) {
	reg := stats.New()
	g := reg.Gauge("g", "")
	tr := New("l", g)
	then := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	a, b := &fakeConn{}, &fakeConn{}
	tr.AddSince(a, then)
	before := time.Now()
	tr.Add(b)
	if s, ok := tr.Since(a); !ok || !s.Equal(then) {
		t.Fatalf("Since(a) = %v %v, want %v", s, ok, then)
	}
	if s, ok := tr.Since(b); !ok || s.Before(before) || time.Since(s) > time.Minute {
		t.Fatalf("Since(b) = %v %v, want about now", s, ok)
	}
	if g.Value() != 2 {
		t.Fatalf("gauge %v, want 2: moved connections count like any other", g.Value())
	}
	tr.Remove(a)
	if _, ok := tr.Since(a); ok {
		t.Fatal("removed conn still has an age")
	}
}

// Replace keeps one connection counted through a change of form, with its
// age, and tells the new form what the tracker is doing.
func TestReplace(t *testing.T) {
	g := stats.New().Gauge("g", "")
	tr := New("l", g)
	start := time.Unix(1000, 0)
	tr.now = func() time.Time { return start }
	hs := &fakeConn{}
	tr.Add(hs)
	tr.now = func() time.Time { return start.Add(time.Hour) }
	served := &fakeConn{}
	remove := tr.Replace(hs, served)
	if tr.Len() != 1 || g.Value() != 1 {
		t.Fatalf("after Replace: %d tracked, gauge %v; want 1", tr.Len(), g.Value())
	}
	if since, ok := tr.Since(served); !ok || !since.Equal(start) {
		t.Errorf("replacement starts at %v (%v), want the original's %v", since, ok, start)
	}
	if _, ok := tr.State(hs); ok {
		t.Error("the old form is still tracked")
	}
	tr.Drain()
	if !(served.drains.Load() > 0) {
		t.Error("Drain did not reach the replacement")
	}
	late := &fakeConn{}
	tr.Replace(&fakeConn{}, late) // its old form was never (or no longer) tracked
	if !(late.drains.Load() > 0) || tr.Len() != 2 {
		t.Errorf("a replacement of an untracked conn: drained %v, %d tracked", (late.drains.Load() > 0), tr.Len())
	}
	tr.CloseAll()
	closing := &fakeConn{}
	tr.Add(hs)
	tr.Replace(hs, closing)
	if !(closing.closes.Load() > 0) {
		t.Error("a replacement after CloseAll was not closed")
	}
	remove()
	if _, ok := tr.State(served); ok {
		t.Error("remove did not untrack the replacement")
	}
}

// reportingConn keeps its own state (StateReporter).
type reportingConn struct {
	fakeConn
	active atomic.Bool
}

func (r *reportingConn) TrackedState() State {
	if r.active.Load() {
		return Active
	}
	return Idle
}

// A StateReporter's own state is what Count, Range and State give, and
// SetState does not override it.
func TestStateReporterIsAsked(t *testing.T) {
	tr := New("l", nil)
	r := &reportingConn{}
	r.active.Store(true)
	plain := &fakeConn{}
	defer tr.Add(r)()
	defer tr.Add(plain)()
	tr.SetState(plain, Idle)
	tr.SetState(r, Idle) // ignored: r reports its own
	if n := tr.Count(Active); n != 1 {
		t.Fatalf("active %d, want 1 (the reporter)", n)
	}
	r.active.Store(false)
	if s, ok := tr.State(r); !ok || s != Idle {
		t.Fatalf("State(r) = %v, %v; want idle, true", s, ok)
	}
	if n := tr.Count(Idle); n != 2 {
		t.Fatalf("idle %d, want 2", n)
	}
	r.active.Store(true)
	seen := map[Conn]State{}
	tr.Range(func(c Conn, s State) bool { seen[c] = s; return true })
	if seen[r] != Active || seen[plain] != Idle || len(seen) != 2 {
		t.Fatalf("Range saw %v", seen)
	}
}
