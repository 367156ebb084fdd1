// Package conntrack tracks a listener's accepted connections so that a drain
// can see every one of them, ask each to finish, and close what remains.
package conntrack

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mosnlite/mosnlite/service/stats"
)

// State is a tracked connection's coarse state.
type State int

const (
	// Idle: between requests (HTTP keep-alive) or not yet started; safe to close or hand over.
	Idle State = iota
	// Active: a request or a session is in flight.
	Active
)

func (s State) String() string {
	switch s {
	case Idle:
		return "idle"
	case Active:
		return "active"
	default:
		return fmt.Sprintf("state(%d)", int(s))
	}
}

// Conn is what a tracker can ask of a connection.
type Conn interface {
	// Drain asks the connection to finish at its next safe point and close.
	// It must not block.
	Drain()
	// Close closes the connection now.
	Close() error
}

// StateReporter is a Conn that keeps its own state, readable at any time
// without a lock (an atomic): the tracker asks it instead of recording
// SetState calls, so that a connection that changes state twice a request
// does not take the tracker's lock and look itself up in its map each time.
type StateReporter interface {
	Conn
	TrackedState() State
}

// Migratable is a Conn that can move to a successor process. Migrate asks it
// to hand itself over at its next safe point (or to drain if it cannot move);
// it must not block.
type Migratable interface {
	Conn
	Migrate()
}

// entry is what the tracker knows of one connection.
type entry struct {
	state State
	since time.Time // when the connection was accepted, in whichever process
}

// Tracker holds the live connections of one listener. The zero value is not
// usable; call New.
type Tracker struct {
	listener string
	gauge    *stats.Gauge // may be nil
	now      func() time.Time

	mu        sync.Mutex
	conns     map[Conn]*entry
	draining  bool
	migrating bool
	closing   bool
	empty     chan struct{} // closed while conns is empty; replaced when it fills
}

// New returns an empty tracker for the named listener. gauge, if not nil,
// follows the number of tracked connections.
func New(listener string, gauge *stats.Gauge) *Tracker {
	empty := make(chan struct{})
	close(empty)
	return &Tracker{listener: listener, gauge: gauge, now: time.Now, conns: map[Conn]*entry{}, empty: empty}
}

// Add tracks c in state Active, started now, and returns a function that
// stops tracking it (safe to call more than once). If the tracker is
// draining, c is drained at once; if it is migrating, c is asked to migrate
// (drained if it cannot); if CloseAll was called, c is closed at once (and
// still tracked until removed, so that Wait sees it go).
func (t *Tracker) Add(c Conn) (remove func()) {
	return t.AddSince(c, time.Time{})
}

// AddSince is Add for a connection that started at since: one that moved
// here from a predecessor keeps its age. A zero since means now.
func (t *Tracker) AddSince(c Conn, since time.Time) (remove func()) {
	if since.IsZero() {
		since = t.now()
	}
	t.mu.Lock()
	if len(t.conns) == 0 {
		t.empty = make(chan struct{})
	}
	if _, dup := t.conns[c]; !dup && t.gauge != nil {
		t.gauge.Inc()
	}
	t.conns[c] = &entry{state: Active, since: since}
	draining, migrating, closing := t.draining, t.migrating, t.closing
	t.mu.Unlock()
	return t.catchUp(c, draining, migrating, closing)
}

// catchUp tells a connection just tracked what the tracker is doing
// (closing, draining or migrating all it holds) and returns the function
// that stops tracking it.
func (t *Tracker) catchUp(c Conn, draining, migrating, closing bool) (remove func()) {
	switch {
	case closing:
		_ = c.Close()
	case draining:
		c.Drain()
	case migrating:
		migrateOrDrain(c)
	}
	return func() { t.Remove(c) }
}

// Replace tracks c in place of old: one connection that changed form (a
// TLS handshake done: what serves it now is c), keeping its start and
// state, so that the count never drops in between. It returns the function
// that stops tracking c. As Add does, it drains, migrates or closes c at
// once if the tracker does. An old that is no longer tracked (removed
// meanwhile) makes Replace an Add.
func (t *Tracker) Replace(old, c Conn) (remove func()) {
	t.mu.Lock()
	e, ok := t.conns[old]
	if ok {
		delete(t.conns, old)
		t.conns[c] = e
	}
	draining, migrating, closing := t.draining, t.migrating, t.closing
	t.mu.Unlock()
	if !ok {
		return t.Add(c)
	}
	return t.catchUp(c, draining, migrating, closing)
}

func migrateOrDrain(c Conn) {
	if m, ok := c.(Migratable); ok {
		m.Migrate()
		return
	}
	c.Drain()
}

// Remove stops tracking c. Removing an untracked conn does nothing.
func (t *Tracker) Remove(c Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[c]; !ok {
		return
	}
	delete(t.conns, c)
	if t.gauge != nil {
		t.gauge.Dec()
	}
	if len(t.conns) == 0 {
		close(t.empty)
	}
}

// stateOf is c's state: its own for a StateReporter, else the recorded one.
func stateOf(c Conn, e *entry) State {
	if r, ok := c.(StateReporter); ok {
		return r.TrackedState()
	}
	return e.state
}

// SetState records c's state. Untracked conns are ignored, and so is a
// StateReporter (which reports its own).
func (t *Tracker) SetState(c Conn, s State) {
	t.mu.Lock()
	if e, ok := t.conns[c]; ok {
		e.state = s
	}
	t.mu.Unlock()
}

// State returns c's recorded state and whether c is tracked.
func (t *Tracker) State(c Conn) (State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.conns[c]; ok {
		return stateOf(c, e), true
	}
	return Idle, false
}

// Since returns when c started (its age carries across processes) and
// whether c is tracked.
func (t *Tracker) Since(c Conn) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.conns[c]; ok {
		return e.since, true
	}
	return time.Time{}, false
}

// Len returns the number of tracked connections.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Count returns the number of tracked connections in state s.
func (t *Tracker) Count(s State) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for c, e := range t.conns {
		if stateOf(c, e) == s {
			n++
		}
	}
	return n
}

// Range calls fn for each tracked connection (a snapshot) until fn returns false.
func (t *Tracker) Range(fn func(c Conn, s State) bool) {
	type item struct {
		c Conn
		s State
	}
	t.mu.Lock()
	snap := make([]item, 0, len(t.conns))
	for c, e := range t.conns {
		snap = append(snap, item{c, stateOf(c, e)})
	}
	t.mu.Unlock()
	for _, e := range snap {
		if !fn(e.c, e.s) {
			return
		}
	}
}

// Draining reports whether Drain has been called.
func (t *Tracker) Draining() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.draining
}

// Migrating reports whether Migrate has been called.
func (t *Tracker) Migrating() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.migrating
}

// Migrate asks every tracked connection to move to a successor at its next
// safe point (connections that are not Migratable are drained), and does the
// same for connections added later. A later Drain overrides it.
func (t *Tracker) Migrate() {
	t.mu.Lock()
	t.migrating = true
	draining := t.draining
	snap := t.snapshotLocked()
	t.mu.Unlock()
	if draining {
		return
	}
	for _, c := range snap {
		migrateOrDrain(c)
	}
}

// Drain asks every tracked connection to finish, and makes connections added
// later drain at once.
func (t *Tracker) Drain() {
	t.mu.Lock()
	t.draining = true
	snap := t.snapshotLocked()
	t.mu.Unlock()
	for _, c := range snap {
		c.Drain()
	}
}

// CloseAll closes every tracked connection now, and makes connections added
// later close at once. Connections stay tracked until their owners remove them.
func (t *Tracker) CloseAll() {
	t.mu.Lock()
	t.draining = true
	t.closing = true
	snap := t.snapshotLocked()
	t.mu.Unlock()
	for _, c := range snap {
		_ = c.Close()
	}
}

func (t *Tracker) snapshotLocked() []Conn {
	out := make([]Conn, 0, len(t.conns))
	for c := range t.conns {
		out = append(out, c)
	}
	return out
}

// Wait returns nil once no connection is tracked, or ctx's error if ctx ends first.
func (t *Tracker) Wait(ctx context.Context) error {
	t.mu.Lock()
	empty := t.empty
	t.mu.Unlock()
	select {
	case <-empty:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("conntrack: listener %s: wait for %d connections: %w", t.listener, t.Len(), ctx.Err())
	}
}
