package reconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeHandler holds offered sockets as net.Conns and records what Follow asks.
type fakeHandler struct {
	mu       sync.Mutex
	offers   map[uint64]ConnOffer
	conns    map[uint64][]net.Conn
	refuse   map[uint64]string
	started  []uint64
	released []uint64
	onHold   func(ConnOffer) // runs first in Hold
	startCh  chan []uint64
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{offers: map[uint64]ConnOffer{}, conns: map[uint64][]net.Conn{}, refuse: map[uint64]string{}, startCh: make(chan []uint64, 8)}
}

func (h *fakeHandler) Hold(o ConnOffer) error {
	if h.onHold != nil {
		h.onHold(o)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.refuse[o.ID]; r != "" {
		return errors.New(r)
	}
	var cs []net.Conn
	for _, f := range o.Files {
		c, err := net.FileConn(f)
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			return err
		}
		cs = append(cs, c)
	}
	h.offers[o.ID] = o
	h.conns[o.ID] = cs
	return nil
}

func (h *fakeHandler) Start(ids []uint64) {
	h.mu.Lock()
	h.started = append(h.started, ids...)
	h.mu.Unlock()
	h.startCh <- ids
}

func (h *fakeHandler) Release(ids []uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.released = append(h.released, ids...)
	for _, id := range ids {
		for _, c := range h.conns[id] {
			c.Close()
		}
		delete(h.conns, id)
	}
}

func (h *fakeHandler) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, cs := range h.conns {
		for _, c := range cs {
			c.Close()
		}
		delete(h.conns, id)
	}
}

func (h *fakeHandler) conn(id uint64, i int) net.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[id][i]
}

func (h *fakeHandler) record() (started, released []uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.started...), append([]uint64(nil), h.released...)
}

// migEnv is an acked handoff between two in-process sides, the new one
// following with a handler.
type migEnv struct {
	old      *oldProc
	up       *Upgrade
	h        *fakeHandler
	cancel   context.CancelFunc
	followed chan error
	// skew is added to the new side's migration clock (tests move it on).
	skew atomic.Int64
}

var testTargets = []MigrationTarget{{Listener: "web", Kind: ConnKindHTTP}, {Listener: "tcp", Kind: ConnKindTCP}}

func newMigEnv(t *testing.T, timeout time.Duration, h *fakeHandler, targets []MigrationTarget) *migEnv {
	t.Helper()
	dir := shortDir(t)
	old := startOld(t, dir, testWait)
	old.srv.cfg.MigrateTimeout = timeout
	up, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		if err := up.AcceptConnections(targets, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := up.Ack(testCtx(t, testWait)); err != nil {
		t.Fatal(err)
	}
	<-old.acked
	if err := up.AcceptConnections(targets, newFakeHandler()); err == nil {
		t.Fatal("AcceptConnections after the ack succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &migEnv{old: old, up: up, h: h, cancel: cancel, followed: make(chan error, 1)}
	up.follower.now = func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }
	go func() { e.followed <- up.Follow(ctx, FollowHooks{}) }()
	t.Cleanup(func() {
		cancel()
		<-e.followed
		up.release()
		if h != nil {
			h.closeAll()
		}
	})
	return e
}

// tcpPair returns both ends of a fresh loopback connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln := tcpListener(t)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// roundTrip checks that bytes written on a reach b.
func roundTrip(t *testing.T, a, b net.Conn, msg string) {
	t.Helper()
	a.SetWriteDeadline(time.Now().Add(testWait))
	if _, err := a.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(testWait))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != msg {
		t.Fatalf("read %q, %v; want %q", got, err, msg)
	}
}

func TestMigrateRoundTrip(t *testing.T) {
	h := newFakeHandler()
	h.refuse[3] = "no room"
	targets := append(testTargets, MigrationTarget{Listener: "", Kind: "tcp"}, MigrationTarget{Listener: "x", Kind: "udp"})
	e := newMigEnv(t, testWait, h, targets)
	if got := e.old.succ.MigrationTargets(); len(got) != 2 || got[0] != testTargets[0] || got[1] != testTargets[1] {
		t.Fatalf("old side's targets = %v, want the 2 valid ones of %v", got, targets)
	}
	c1, s1 := tcpPair(t)
	c2, s2 := tcpPair(t)
	u2, us2 := tcpPair(t)
	c3, s3 := tcpPair(t)
	base := fdCount(t)
	started := time.Now().Add(-time.Hour).Round(0)
	files := []*os.File{dupFile(t, s1), dupFile(t, s2), dupFile(t, us2), dupFile(t, s3)}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	offers := []ConnOffer{
		{ID: 1, Listener: "web", Kind: ConnKindHTTP, StartedAt: started, Buffered: []byte("GET / HT"), Requests: 7, Files: files[:1]},
		{ID: 2, Listener: "tcp", Kind: ConnKindTCP, StartedAt: started, ToUpstream: []byte("up"), ToDownstream: []byte("down"), Files: files[1:3]},
		{ID: 3, Listener: "web", Kind: ConnKindHTTP, StartedAt: started, Files: files[3:]},
	}
	res, err := e.old.succ.Migrate(offers)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) != 2 || res.Accepted[0] != 1 || res.Accepted[1] != 2 || len(res.Refused) != 1 || res.Refused[3] != "no room" {
		t.Fatalf("result %+v, want 1 and 2 accepted, 3 refused for no room", res)
	}
	select {
	case ids := <-h.startCh:
		if len(ids) != 2 {
			t.Fatalf("Start(%v)", ids)
		}
	case <-time.After(testWait):
		t.Fatal("Start not called")
	}
	o1, o2 := h.offers[1], h.offers[2]
	if string(o1.Buffered) != "GET / HT" || o1.Requests != 7 || !o1.StartedAt.Equal(started) || o1.Listener != "web" {
		t.Fatalf("http offer arrived as %+v", o1)
	}
	if string(o2.ToUpstream) != "up" || string(o2.ToDownstream) != "down" || o2.Kind != ConnKindTCP {
		t.Fatalf("tcp offer arrived as %+v", o2)
	}
	// The old process lets go of the accepted ones: the sockets live on here.
	for _, f := range files {
		f.Close()
	}
	files = nil
	s1.Close()
	s2.Close()
	us2.Close()
	roundTrip(t, c1, h.conn(1, 0), "to the new process")
	roundTrip(t, h.conn(2, 0), c2, "downstream")
	roundTrip(t, u2, h.conn(2, 1), "upstream")
	// The refused one is still the old process's alone.
	roundTrip(t, c3, s3, "still here")

	// Offers the new process did not ask for are the caller's mistake.
	for _, bad := range []ConnOffer{
		{ID: 9, Listener: "other", Kind: ConnKindHTTP, StartedAt: started, Files: []*os.File{dupFile(t, s3)}},
		{ID: 0, Listener: "web", Kind: ConnKindHTTP, StartedAt: started, Files: []*os.File{dupFile(t, s3)}},
		{ID: 10, Listener: "tcp", Kind: ConnKindTCP, StartedAt: started, Files: []*os.File{dupFile(t, s3)}},
	} {
		if _, err := e.old.succ.Migrate([]ConnOffer{bad}); err == nil {
			t.Errorf("Migrate(%+v) succeeded", bad)
		}
		bad.Files[0].Close()
	}
	h.closeAll()
	waitFDs(t, base-3) // s1, s2, us2 closed
}

// fakeTimers stands in for StreamConfig.After: each call is recorded, and
// its channel fires when the test says.
type fakeTimers struct {
	calls chan chan time.Time
}

func newFakeTimers() *fakeTimers { return &fakeTimers{calls: make(chan chan time.Time, 16)} }

func (f *fakeTimers) after(time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	f.calls <- c
	return c
}

// fire waits for the next timer to be asked for and fires it.
func (f *fakeTimers) fire(t *testing.T) {
	t.Helper()
	select {
	case c := <-f.calls:
		c <- time.Now()
	case <-time.After(testWait):
		t.Fatal("no timer was asked for")
	}
}

// slowSuccessor is a migration whose new side holds its first offer until
// release is closed (entered closes when it does), the old side on fake
// timers, and f a socket to offer.
func slowSuccessor(t *testing.T) (e *migEnv, h *fakeHandler, timers *fakeTimers, entered, release chan struct{}, f *os.File) {
	h = newFakeHandler()
	entered, release = make(chan struct{}), make(chan struct{})
	h.onHold = func(ConnOffer) {
		close(entered)
		<-release
	}
	e = newMigEnv(t, 200*time.Millisecond, h, testTargets)
	timers = newFakeTimers()
	e.old.succ.cfg.After = timers.after
	_, s := tcpPair(t)
	return e, h, timers, entered, release, dupFile(t, s)
}

// A successor that answers a batch after its time limit (stopped, starved)
// is waited for, not taken for dead: the old side resumes nothing until the
// answer comes — here the new side's refusal of its late commit, after
// which the old side resumes the offer, and the new one serves nothing.
// (Before: Migrate gave up at the deadline and the caller resumed the batch
// the successor might serve.)
func TestMigrateWaitsForASlowSuccessor(t *testing.T) {
	e, h, timers, entered, release, f := slowSuccessor(t)
	type res struct {
		r   MigrationResult
		err error
	}
	done := make(chan res, 1)
	go func() {
		r, err := e.old.succ.Migrate([]ConnOffer{{ID: 1, Listener: "web", Kind: ConnKindHTTP, StartedAt: time.Now(), Files: []*os.File{f}}})
		done <- res{r, err}
	}()
	<-entered
	timers.fire(t) // the batch is past due on our clock
	select {
	case c := <-timers.calls: // Migrate waits on, with a second timer, unfired
		_ = c
	case r := <-done:
		t.Fatalf("Migrate returned at the batch's deadline: %+v, %v", r.r, r.err)
	case <-time.After(testWait):
		t.Fatal("Migrate neither returned nor waited on")
	}
	e.skew.Store(int64(time.Second)) // past the batch's limit on the new side's clock too
	close(release)
	r := <-done
	if r.err != nil {
		t.Fatalf("Migrate = %v, want the late answer", r.err)
	}
	if len(r.r.Accepted) != 0 || !strings.Contains(r.r.Refused[1], "after the batch deadline") {
		t.Fatalf("result %+v, want offer 1 refused as late", r.r)
	}
	f.Close()
	waitFor(t, "the late batch to be released", func() bool { _, rel := h.record(); return len(rel) == 1 })
	if st, _ := h.record(); len(st) != 0 {
		t.Fatalf("started %v after the deadline", st)
	}
	if err := e.old.succ.Bye(); err != nil {
		t.Fatal(err)
	}
	if err := <-e.followed; err != nil {
		t.Fatalf("Follow = %v, want the bye", err)
	}
	e.followed <- nil
}

// A successor that never answers within the settle bound leaves the batch
// unsettled: Migrate says so (ErrMigrationUnsettled: resume none, it may
// serve them) and shuts its write side, so that the successor, once it
// reads on, ends its follow; the stream is not taken for its death.
func TestMigrateUnsettledWhenTheSuccessorNeverAnswers(t *testing.T) {
	e, _, timers, entered, release, f := slowSuccessor(t)
	defer f.Close()
	done := make(chan error, 1)
	go func() {
		_, err := e.old.succ.Migrate([]ConnOffer{{ID: 1, Listener: "web", Kind: ConnKindHTTP, StartedAt: time.Now(), Files: []*os.File{f}}})
		done <- err
	}()
	<-entered
	timers.fire(t)
	timers.fire(t)
	e.skew.Store(int64(time.Second))
	err := <-done
	if !errors.Is(err, ErrMigrationUnsettled) {
		t.Fatalf("Migrate = %v, want ErrMigrationUnsettled", err)
	}
	select {
	case <-e.old.succ.Gone():
		t.Fatal("our own give-up closed Gone")
	default:
	}
	close(release)
	// The new side reads the end of the stream after the commit: its
	// follow ends and it releases us — no death.
	if err := <-e.followed; err == nil {
		t.Fatal("Follow ended without error after the stream was shut")
	}
	e.followed <- nil
	<-e.old.succ.Ended()
	select {
	case <-e.old.succ.Released():
	default:
		t.Fatalf("stream ended without a release: %v", e.old.succ.Err())
	}
}

// The new process goes away between the offers and the result: the old one
// learns at once (EOF), and what the new one held is released.
func TestMigrateNewDiesBeforeResult(t *testing.T) {
	h := newFakeHandler()
	var conn atomic.Pointer[net.UnixConn]
	h.onHold = func(ConnOffer) { conn.Load().Close() } // as if the process died
	e := newMigEnv(t, testWait, h, testTargets)
	conn.Store(e.up.conn)
	_, s := tcpPair(t)
	_, u := tcpPair(t)
	base := fdCount(t)
	files := []*os.File{dupFile(t, s), dupFile(t, u)}
	start := time.Now()
	_, err := e.old.succ.Migrate([]ConnOffer{{ID: 5, Listener: "tcp", Kind: ConnKindTCP, StartedAt: time.Now(), Files: files}})
	// Depending on timing the old side learns it writing the commit (EPIPE,
	// ECONNRESET) or reading the result (EOF); either way, at once.
	if err == nil || !(strings.Contains(err.Error(), "went away before answering") ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("Migrate = %v, want the peer's end noticed before the result", err)
	}
	if d := time.Since(start); d > testWait/2 {
		t.Fatalf("noticed the end after %s, want at once", d)
	}
	for _, f := range files {
		f.Close()
	}
	// The new side lets go of what it held once its Follow sees the end,
	// which may come after the old side noticed.
	waitFor(t, "the held connection to be released", func() bool { _, rel := h.record(); return len(rel) > 0 })
	if st, rel := h.record(); len(st) != 0 || len(rel) != 1 || rel[0] != 5 {
		t.Fatalf("started %v, released %v; want none, [5]", st, rel)
	}
	waitFDs(t, base)
}

// Garbled offers are refused with the reason, their fds closed; the batch
// still gets its answer.
func TestMigrateGarbledOffers(t *testing.T) {
	h := newFakeHandler()
	h.refuse[5] = "no listener nope here"
	e := newMigEnv(t, testWait, h, testTargets)
	base := fdCount(t)
	deadline := time.Now().Add(testWait)
	offer := func(o ConnOffer) []byte {
		o.Deadline = deadline
		p, _ := json.Marshal(o)
		return p
	}
	now := time.Now()
	frames := []struct {
		payload []byte
		fds     int
	}{
		{[]byte(`{"id":1,`), 1}, // not JSON: its id is lost
		{offer(ConnOffer{ID: 2, Listener: "tcp", Kind: ConnKindTCP, StartedAt: now}), 1},    // one socket short
		{offer(ConnOffer{ID: 3, Listener: "web", Kind: "udp", StartedAt: now}), 1},          // unknown kind
		{offer(ConnOffer{ID: 4, Listener: "web", Kind: ConnKindHTTP}), 1},                   // no age
		{offer(ConnOffer{ID: 5, Listener: "nope", Kind: ConnKindHTTP, StartedAt: now}), 1},  // no such listener (the handler says)
		{offer(ConnOffer{ID: 6, Listener: "web", Kind: ConnKindTunnel, StartedAt: now}), 1}, // a tunnel has two sockets
		{offer(ConnOffer{ID: 7, Listener: "web", Kind: ConnKindTunnel, StartedAt: now, Buffered: []byte("GET")}), 2},
	}
	e.old.succ.wmu.Lock()
	peer := e.old.succ.conn
	for _, f := range frames {
		fds := devNullFDs(t, f.fds)
		if err := writeFrame(peer, typeConnOffer, flagOptional, f.payload, fds); err != nil {
			t.Fatal(err)
		}
		closeFDs(fds)
	}
	commit, _ := json.Marshal(commitMsg{Batch: 99, IDs: []uint64{1, 2, 3, 4, 5, 6, 7}, Deadline: deadline})
	if err := writeFrame(peer, typeConnCommit, flagOptional, commit, nil); err != nil {
		t.Fatal(err)
	}
	e.old.succ.wmu.Unlock()
	r, err := e.old.succ.awaitResult(99, time.Until(deadline))
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]string{}
	for _, x := range r.Refused {
		got[x.ID] = x.Reason
	}
	want := map[uint64]string{1: "offer not received", 2: "2 sockets, 1 arrived", 3: `unknown kind "udp"`, 4: "no started_at", 5: "no listener nope here",
		6: "http_tunnel connection comes with 2 sockets, 1 arrived", 7: "an http tunnel with unparsed request bytes"}
	if len(r.Accepted) != 0 || len(got) != len(want) {
		t.Fatalf("result %+v", r)
	}
	for id, w := range want {
		if !strings.Contains(got[id], w) {
			t.Errorf("offer %d refused for %q, want %q", id, got[id], w)
		}
	}
	waitFDs(t, base)
}

// A new process that takes no connections (an older version, or every
// listener with migration off) sends no list: the old one offers nothing.
func TestMigrateToProcessThatTakesNone(t *testing.T) {
	e := newMigEnv(t, testWait, nil, nil)
	if ts := e.old.succ.MigrationTargets(); ts != nil {
		t.Fatalf("targets = %v", ts)
	}
	_, s := tcpPair(t)
	f := dupFile(t, s)
	defer f.Close()
	if _, err := e.old.succ.Migrate([]ConnOffer{{ID: 1, Listener: "web", Kind: ConnKindHTTP, StartedAt: time.Now(), Files: []*os.File{f}}}); err == nil || !strings.Contains(err.Error(), "takes no connections") {
		t.Fatalf("Migrate = %v", err)
	}
}

func TestParseResultRejectsContradictions(t *testing.T) {
	for _, p := range []string{
		`{"batch":1,"accepted":[2],"refused":[{"id":2,"reason":"x"}]}`,
		`{"batch":1,"accepted":[2,2]}`,
		`{"batch":1,"accepted":[0]}`,
		`{"batch":0}`,
		`{"batch":1,"refused":[{"id":3,"reason":"` + strings.Repeat("x", maxReasonLen+1) + `"}]}`,
	} {
		if _, err := parseResult([]byte(p)); err == nil {
			t.Errorf("parseResult(%.60s) accepted it", p)
		}
	}
	if r := collate(resultMsg{Batch: 1, Accepted: []uint64{1, 42}}, []uint64{1, 2}); len(r.Accepted) != 1 || r.Refused[2] != "not answered" {
		t.Fatalf("collate = %+v", r)
	}
}

// FuzzMigrationDecoder feeds arbitrary bytes through the frame decoder and
// the migration parsers: no panic, and whatever parses satisfies every
// limit.
func FuzzMigrationDecoder(f *testing.F) {
	dl := time.Now().Add(time.Minute)
	offer, _ := json.Marshal(ConnOffer{ID: 1, Listener: "web", Kind: ConnKindHTTP, StartedAt: dl, Deadline: dl, Buffered: []byte("GET")})
	tcp, _ := json.Marshal(ConnOffer{ID: 2, Listener: "tcp", Kind: ConnKindTCP, StartedAt: dl, Deadline: dl, ToUpstream: []byte{0, 1}})
	commit, _ := json.Marshal(commitMsg{Batch: 1, IDs: []uint64{1, 2}, Deadline: dl})
	result, _ := json.Marshal(resultMsg{Batch: 1, Accepted: []uint64{1}, Refused: []Refusal{{ID: 2, Reason: "no"}}})
	f.Add(rawFrame(frameMagic, typeConnOffer, flagOptional, uint32(len(offer)), offer), uint8(1), uint8(3))
	f.Add(rawFrame(frameMagic, typeConnOffer, flagOptional, uint32(len(tcp)), tcp), uint8(2), uint8(5))
	f.Add(append(rawFrame(frameMagic, typeConnCommit, flagOptional, uint32(len(commit)), commit),
		rawFrame(frameMagic, typeConnResult, flagOptional, uint32(len(result)), result)...), uint8(0), uint8(16))
	f.Add(rawFrame(frameMagic, typeConnOffer, 0, 9, []byte(`{"id":-1}`)), uint8(1), uint8(4))
	f.Add([]byte(`{"id":3,"listener":"w","kind":"http","started_at":"2020-01-01T00:00:00Z","deadline":"2020-01-01T00:00:00Z","buffered":"!!"}`), uint8(1), uint8(9))
	f.Fuzz(func(t *testing.T, data []byte, nfds uint8, step uint8) {
		// The payload on its own, as each parser sees it.
		checkOffer(t, data, int(nfds%4))
		_, _ = parseCommit(data)
		_, _ = parseResult(data)
		// And as frames off a stream.
		d := newDecoder(&bytesReader{b: bytes.Clone(data), step: int(step%16) + 1})
		for i := 0; i < 16; i++ {
			fr, err := d.Next()
			if err != nil {
				return
			}
			switch fr.Type {
			case typeConnOffer:
				checkOffer(t, fr.Payload, int(nfds%4))
			case typeConnCommit:
				if c, err := parseCommit(fr.Payload); err == nil && (c.Batch == 0 || len(c.IDs) > maxBatchOffers || uniqueIDs(c.IDs, nil) != nil) {
					t.Fatalf("bad commit accepted: %+v", c)
				}
			case typeConnResult:
				if r, err := parseResult(fr.Payload); err == nil && r.Batch == 0 {
					t.Fatalf("bad result accepted: %+v", r)
				}
			}
		}
	})
}

func checkOffer(t *testing.T, p []byte, nfds int) {
	o, err := parseOffer(p, nfds)
	if err != nil {
		if !strings.Contains(err.Error(), "connection offer") {
			t.Fatalf("error does not say what it is about: %v", err)
		}
		return
	}
	if o.ID == 0 || o.Listener == "" || connFDs(o.Kind) != nfds || o.StartedAt.IsZero() || (o.Deadline.IsZero() && o.Timeout <= 0) ||
		len(o.ToUpstream) > maxPendingBytes || len(o.Buffered) > maxPendingBytes || o.Files != nil {
		t.Fatalf("bad offer accepted: %+v", o)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
