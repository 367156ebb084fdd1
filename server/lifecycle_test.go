package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/internal/freeport"
	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

const wait = 5 * time.Second

// --- fakes ---------------------------------------------------------------

// fakeTimers is an injected clock for timers: after(d) returns a channel
// that fires only when the test says so (fire(d)).
type fakeTimers struct {
	mu  sync.Mutex
	chs map[time.Duration][]chan time.Time
}

func newFakeTimers() *fakeTimers { return &fakeTimers{chs: map[time.Duration][]chan time.Time{}} }

func (f *fakeTimers) after(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	f.chs[d] = append(f.chs[d], c)
	return c
}

// fire fires every timer of duration d set so far, waiting for one to exist.
func (f *fakeTimers) fire(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		f.mu.Lock()
		cs := f.chs[d]
		f.chs[d] = nil
		f.mu.Unlock()
		if len(cs) > 0 {
			for _, c := range cs {
				c <- time.Now()
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no timer of %s was set", d)
		}
		time.Sleep(time.Millisecond)
	}
}

type fakeEndpoint struct {
	mu     sync.Mutex
	closed bool
	acked  bool
}

func (e *fakeEndpoint) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

func (e *fakeEndpoint) handedOff() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.acked
}

// fakeStyle is a handoff style whose predecessor and endpoint the test holds.
type fakeStyle struct {
	lin         lineage
	pred        *fakePred
	beginErr    error
	listenErr   error
	pol         handoverPolicy
	openedSpecs []ident.Spec

	mu       sync.Mutex
	hooks    successorHooks
	ep       *fakeEndpoint
	listened chan struct{}
	reclaims int
	// reclaimFails is how many reclaims fail before one succeeds.
	reclaimFails int
}

func newFakeStyle() *fakeStyle {
	return &fakeStyle{lin: lineage{generation: 1}, pol: handoverPolicy{pushCounters: true, exitWhenDrained: true}, listened: make(chan struct{}, 4)}
}

func (f *fakeStyle) begin(context.Context) (lineage, predecessor, error) {
	if f.beginErr != nil {
		return lineage{}, nil, f.beginErr
	}
	if f.pred == nil {
		return f.lin, nil, nil
	}
	return f.lin, f.pred, nil
}

func (f *fakeStyle) opened(specs []ident.Spec) error { f.openedSpecs = specs; return nil }

func (f *fakeStyle) listen(h successorHooks) (endpoint, error) {
	if f.listenErr != nil {
		return nil, f.listenErr
	}
	f.mu.Lock()
	f.hooks, f.ep = h, &fakeEndpoint{}
	ep := f.ep
	f.mu.Unlock()
	f.listened <- struct{}{}
	return ep, nil
}

func (f *fakeStyle) policy() handoverPolicy {
	p := f.pol
	if p.watch > 0 {
		p.reclaim = func(_ context.Context, h successorHooks) (endpoint, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.reclaims++
			if f.reclaims <= f.reclaimFails {
				return nil, errors.New("bind: address in use")
			}
			f.hooks = h
			return &fakeEndpoint{}, nil
		}
	}
	return p
}

func (f *fakeStyle) reclaimCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reclaims
}

func (f *fakeStyle) successorHooks() successorHooks {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hooks
}

// fakePred is a predecessor handing over real listening sockets.
type fakePred struct {
	p      int
	socks  []ident.Socket
	ackErr error
	isGone bool          // what its handoff connection says after a failed ack
	bye    chan struct{} // follow returns once closed
	// pushes are what follow hands over (nil: one counter), each after
	// beforePush (if set) returns; migration, if set, is said after them.
	pushes     []reconfig.Counts
	beforePush func()
	migration  *reconfig.MigrationDone
	mu         sync.Mutex
	acked      []reconfig.MigrationTarget
	failed     error
	orphans    int
	stops      int
}

func (f *fakePred) pid() int                { return f.p }
func (f *fakePred) pidLabel() any           { return f.p }
func (f *fakePred) gone() bool              { return f.isGone }
func (f *fakePred) sockets() []ident.Socket { return f.socks }
func (f *fakePred) ack(_ context.Context, targets []reconfig.MigrationTarget, _ reconfig.ConnHandler) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acked = targets
	f.close()
	return f.ackErr
}
func (f *fakePred) close() {
	for _, s := range f.socks {
		s.File.Close()
	}
}
func (f *fakePred) dropListeners([]ident.Spec) {}

func (f *fakePred) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = err
	f.close()
}
func (f *fakePred) orphan() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orphans++
}
func (f *fakePred) follow(ctx context.Context, h followHooks) error {
	pushes := f.pushes
	if pushes == nil {
		pushes = []reconfig.Counts{{Counters: []sample.Sample{{Name: "listener.downstream_cx_total", Labels: []string{"listener", "web"}, Kind: sample.KindCounter, Value: 3}}}}
	}
	for _, c := range pushes {
		if f.beforePush != nil {
			f.beforePush()
		}
		h.counts(c)
	}
	if f.migration != nil {
		h.migrated(*f.migration)
	}
	select {
	case <-f.bye:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.gone()
	return nil
}
func (f *fakePred) stop(context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops++
}

// fakeSucc is a successor's drain stream.
type fakeSucc struct {
	watch    bool
	released chan struct{}
	gone     chan struct{}
	mu       sync.Mutex
	counters []reconfig.Counts
	done     []reconfig.MigrationDone
	byes     int
	closed   bool
	// onFirstSend, when set, runs inside the first SendCounters, before
	// it returns: a test observes there what must go in a later push,
	// whatever the handover's goroutine has pushed by then.
	onFirstSend func()
	// byeBlock, when set, holds Bye until it is closed (a successor that
	// does not confirm).
	byeBlock chan struct{}
	dropped  []ident.Spec // what it says it does not serve
}

func newFakeSucc(watch bool) *fakeSucc {
	return &fakeSucc{watch: watch, released: make(chan struct{}), gone: make(chan struct{})}
}

func (f *fakeSucc) PID() int                                     { return 4242 }
func (f *fakeSucc) ReportedPID() int                             { return 4242 }
func (f *fakeSucc) MigrationTargets() []reconfig.MigrationTarget { return nil }
func (f *fakeSucc) Dropped() []ident.Spec                        { return f.dropped }
func (f *fakeSucc) Migrate([]reconfig.ConnOffer) (reconfig.MigrationResult, error) {
	return reconfig.MigrationResult{}, errors.New("no")
}
func (f *fakeSucc) SendCounters(c reconfig.Counts) error {
	f.mu.Lock()
	f.counters = append(f.counters, c)
	first := len(f.counters) == 1
	f.mu.Unlock()
	if first && f.onFirstSend != nil {
		f.onFirstSend()
	}
	return nil
}
func (f *fakeSucc) MigrationDone(m reconfig.MigrationDone) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = append(f.done, m)
	return nil
}
func (f *fakeSucc) Bye() error {
	f.mu.Lock()
	f.byes++
	block := f.byeBlock
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	return nil
}
func (f *fakeSucc) Watchable() bool           { return f.watch }
func (f *fakeSucc) Released() <-chan struct{} { return f.released }
func (f *fakeSucc) Gone() <-chan struct{}     { return f.gone }
func (f *fakeSucc) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// --- helpers -------------------------------------------------------------

type env struct {
	t      *testing.T
	dir    string
	web    string // the proxy listener's address
	admin  string
	cfg    *config.Config
	hook   *test.Hook
	timers *fakeTimers
	style  *fakeStyle
	alive  bool
}

// newEnv writes a config: admin and one HTTP listener answering "v1" on /.
func newEnv(t *testing.T, web, admin string) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "srv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if web == "" {
		web = freeAddr(t)
	}
	for admin == "" || admin == web {
		// Two binds to port 0 in a row may get the same port: never one
		// address for two listeners.
		admin = freeAddr(t)
	}
	js := fmt.Sprintf(`{"uds_dir": %q, "servers": [{"server_name": "main", "graceful_timeout": "2s",
	  "listeners": [{"name": "web", "address": %q, "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "r"}}]}]}],
	  "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
	    {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "v1"}}]}]}]}],
	  "admin": {"address": %q}}`, dir+"/uds", web, admin)
	cfg, err := config.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, web: web, admin: admin, cfg: cfg, timers: newFakeTimers(), style: newFakeStyle(), alive: true}
}

// freeAddr is a 127.0.0.1 address that was free a moment ago, outside the
// kernel's ephemeral range (see internal/freeport).
func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

func (e *env) server(opts ...func(*Options)) *Server {
	e.t.Helper()
	l, hook := test.NewNullLogger()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.DebugLevel)
	e.hook = hook
	o := Options{Config: e.cfg, Log: logrus.NewEntry(l), PID: os.Getpid()}
	for _, f := range opts {
		f(&o)
	}
	fx := effects{now: time.Now, after: e.timers.after, alive: func(int) bool { return e.alive }, rand: func() uint64 { return 0 },
		style: func(*Server) handoffStyle { return e.style }}
	s, err := newServer(o, fx)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		select {
		case <-s.Done():
		default:
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			s.Shutdown(ctx)
		}
	})
	return s
}

func (e *env) logged(msg string) bool {
	for _, en := range e.hook.AllEntries() {
		if strings.Contains(en.Message, msg) {
			return true
		}
	}
	return false
}

// get answers a request to addr, or an error.
func get(addr, path string) (string, error) {
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func mustGet(t *testing.T, addr, path, want string) {
	t.Helper()
	got, err := get(addr, path)
	if err != nil || !strings.Contains(got, want) {
		t.Fatalf("GET %s%s = %q, %v; want %q", addr, path, got, err, want)
	}
}

func refused(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts", addr)
	}
}

// waitRunning waits for s to be running (again).
func waitRunning(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for s.getState() != StateRunning {
		if time.Now().After(deadline) {
			t.Fatal("not serving again")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitDone(t *testing.T, s *Server) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(wait):
		t.Fatal("the process did not stop")
	}
}

func notDone(t *testing.T, s *Server) {
	t.Helper()
	select {
	case <-s.Done():
		t.Fatal("the process stopped")
	default:
	}
}

// inherited returns a listening socket on addr as a predecessor hands it over.
func inherited(t *testing.T, name string, kind ident.Kind, addr string) (ident.Socket, net.Listener) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f, err := listener.Dup(l.(*net.TCPListener), name)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := ident.New(name, kind, "tcp", l.Addr().String())
	return ident.Socket{Spec: spec, File: f}, l
}

// --- tests ----------------------------------------------------------------

func TestFreshStartServesAndShutsDown(t *testing.T) {
	e := newEnv(t, "", "")
	s := e.server()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-e.style.listened
	mustGet(t, e.web, "/", "v1")
	mustGet(t, e.admin, "/server_info", `"state": "running"`)
	if !s.Ready() || s.ServerInfo().Generation != 1 || len(s.Listeners()) != 2 || len(e.style.openedSpecs) != 2 {
		t.Fatalf("ready %v info %+v listeners %v opened %v", s.Ready(), s.ServerInfo(), s.Listeners(), e.style.openedSpecs)
	}
	if b, err := s.ConfigDump(); err != nil || !strings.Contains(string(b), `"web"`) {
		t.Fatalf("config dump %s %v", b, err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s)
	refused(t, e.web)
	refused(t, e.admin)
	if !e.style.ep.closed || s.getState() != StateStopped || s.Err() != nil {
		t.Fatalf("endpoint closed %v state %s err %v", e.style.ep.closed, s.getState(), s.Err())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal("a second Shutdown:", err)
	}
}

func TestStartTakesOverFromPredecessor(t *testing.T) {
	sock, _ := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
	e := newEnv(t, sock.Spec.Address, "")
	e.style.pred = &fakePred{p: 77, socks: []ident.Socket{sock}, bye: make(chan struct{})}
	e.style.lin = lineage{generation: 4, firstStart: time.Unix(1000, 0), drainingPID: 77,
		counters: []sample.Sample{{Name: "server.upgrades_total", Kind: sample.KindCounter, Value: 2}}}
	s := e.server()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustGet(t, e.web, "/", "v1")
	mustGet(t, e.admin, "/server_info", `"generation": 4`)
	info := s.ServerInfo()
	if info.DrainingPID != 77 || !info.FirstStartTime.Equal(time.Unix(1000, 0)) || s.m.upgrades.Value() != 3 || s.m.listenersInherited.Value() != 1 {
		t.Fatalf("info %+v upgrades %v inherited %v", info, s.m.upgrades.Value(), s.m.listenersInherited.Value())
	}
	if len(e.style.pred.acked) != 2 || e.style.pred.acked[0] != (reconfig.MigrationTarget{Listener: "web", Kind: "http"}) ||
		e.style.pred.acked[1] != (reconfig.MigrationTarget{Listener: "web", Kind: "http_tunnel"}) {
		t.Fatalf("acked with targets %v", e.style.pred.acked)
	}
	close(e.style.pred.bye)
	deadline := time.Now().Add(wait)
	for s.ServerInfo().DrainingPID != 0 {
		if time.Now().After(deadline) {
			t.Fatal("draining pid not cleared after the predecessor's bye")
		}
		time.Sleep(time.Millisecond)
	}
	// Shutting down tells the predecessor (it must not serve again).
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.style.pred.stops != 1 {
		t.Fatalf("predecessor told %d times", e.style.pred.stops)
	}
}

// A listener that cannot be opened rolls everything back; the predecessor is
// told why and carries on.
func TestStartRollsBack(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	e := newEnv(t, busy.Addr().String(), "")
	e.style.pred = &fakePred{p: 77, bye: make(chan struct{})}
	s := e.server()
	err = s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "open") {
		t.Fatalf("Start = %v", err)
	}
	if e.style.pred.failed == nil || e.style.pred.failed.Error() != err.Error() {
		t.Fatalf("predecessor told %v", e.style.pred.failed)
	}
	refused(t, e.admin)
	if e.logged(err.Error()) {
		t.Fatal("the error was logged as well as returned")
	}
}

// The ack fails and the predecessor lives: it gave up on us; undo.
func TestAckRaceAbandons(t *testing.T) {
	sock, _ := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
	e := newEnv(t, sock.Spec.Address, "")
	e.style.pred = &fakePred{p: 77, socks: []ident.Socket{sock}, ackErr: errors.New("stopped waiting"), bye: make(chan struct{})}
	s := e.server()
	err := s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "stopped waiting") {
		t.Fatalf("Start = %v", err)
	}
	if e.style.pred.failed == nil {
		t.Fatal("predecessor not told")
	}
	refused(t, e.admin)
	if len(e.style.listened) != 0 {
		t.Fatal("an abandoned start became reachable for successors")
	}
	if e.logged("stopped waiting") {
		t.Fatal("the error was logged as well as returned")
	}
}

// Across PID namespaces the predecessor's pid reads 0, which no pid
// liveness test finds alive: the ack fails, the predecessor serves on (its
// handoff connection says so), and this process must undo, not carry on
// beside it.
func TestAckRaceAbandonsAcrossPIDNamespaces(t *testing.T) {
	sock, _ := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
	e := newEnv(t, sock.Spec.Address, "")
	e.alive = false // pid 0: no such process here
	e.style.pred = &fakePred{p: 0, socks: []ident.Socket{sock}, ackErr: errors.New("stopped waiting"), bye: make(chan struct{})}
	s := e.server()
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "stopped waiting") {
		t.Fatalf("Start = %v, want the start undone", err)
	}
	if e.style.pred.failed == nil || e.style.pred.orphans != 0 {
		t.Fatalf("failed %v orphaned %d: want the predecessor told, not orphaned", e.style.pred.failed, e.style.pred.orphans)
	}
	refused(t, e.admin)
}

// The ack fails because the predecessor died (its handoff connection says
// so): carry on as an ordinary process, reachable for the next upgrade at
// once.
func TestAckRaceOrphaned(t *testing.T) {
	sock, _ := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
	e := newEnv(t, sock.Spec.Address, "")
	e.alive = true // a pid says nothing: the connection does
	e.style.pred = &fakePred{p: 77, socks: []ident.Socket{sock}, ackErr: errors.New("broken pipe"), bye: make(chan struct{}), isGone: true}
	e.style.lin = lineage{generation: 2, drainingPID: 77}
	s := e.server()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-e.style.listened
	if e.style.pred.orphans != 1 || s.ServerInfo().DrainingPID != 0 || s.getState() != StateRunning {
		t.Fatalf("orphaned %d draining %d state %s", e.style.pred.orphans, s.ServerInfo().DrainingPID, s.getState())
	}
	mustGet(t, e.admin, "/server_info", `"draining_pid": 0`)
}

func TestFreshStartNotReachableIsAbandoned(t *testing.T) {
	e := newEnv(t, "", "")
	e.style.listenErr = errors.New("bind reconfig.sock: no room")
	s := e.server()
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "no room") {
		t.Fatalf("Start = %v", err)
	}
	refused(t, e.web)
}

func TestBeginFails(t *testing.T) {
	e := newEnv(t, "", "")
	e.style.beginErr = reconfig.ErrUpgradeInProgress
	s := e.server()
	if err := s.Start(context.Background()); !errors.Is(err, reconfig.ErrUpgradeInProgress) {
		t.Fatalf("Start = %v", err)
	}
}

func startFresh(t *testing.T, e *env) *Server {
	t.Helper()
	s := e.server()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-e.style.listened
	return s
}

// ackedInWatch starts a process with a watch period of watch and acks a
// fake successor to it: the handover is under way and the successor is
// watched.
func ackedInWatch(t *testing.T, e *env, watch time.Duration) (*Server, *fakeSucc) {
	t.Helper()
	e.style.pol.watch = watch
	s := startFresh(t, e)
	succ := newFakeSucc(true)
	e.style.successorHooks().onAck(succ)
	return s, succ
}

// keepAlive opens a keep-alive connection and sends one request on it.
func keepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, br
}

// A handover with no watch: stop accepting, counters to the successor, drain,
// bye, exit; the sockets are the successor's.
func TestHandoverDrainsAndExits(t *testing.T) {
	e := newEnv(t, "", "")
	s := startFresh(t, e)
	c, br := keepAlive(t, e.web)
	h := e.style.successorHooks()
	lin := h.manifest()
	if lin.generation != 1 || lin.drainBound != 2*time.Second {
		t.Fatalf("manifest %+v", lin)
	}
	var n int
	if err := h.export(func(specs []ident.Spec, fds []int) error { n = len(fds); return nil }); err != nil || n != 2 {
		t.Fatalf("export %d %v", n, err)
	}
	succ := newFakeSucc(false)
	h.onAck(succ)
	if s.getState() != StateDraining || s.Ready() {
		t.Fatalf("state %s after the ack", s.getState())
	}
	// The idle keep-alive connection is closed at its request boundary.
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("idle connection not closed by the drain")
	}
	waitDone(t, s)
	if succ.byes != 1 || len(succ.counters) == 0 || !succ.closed {
		t.Fatalf("byes %d counters %v closed %v", succ.byes, succ.counters, succ.closed)
	}
	h.onFail(1, errors.New("x"))
	if s.m.upgradesFailed.Value() != 1 {
		t.Fatal("failed upgrade not counted")
	}
}

// The successor dies within the watch period without having released us:
// serve again on the same sockets, take the endpoint back, count it.
func TestWatchRevertsWhenTheSuccessorDies(t *testing.T) {
	e := newEnv(t, "", "")
	s, succ := ackedInWatch(t, e, 5*time.Second)
	close(succ.gone)
	waitRunning(t, s)
	mustGet(t, e.web, "/", "v1")
	mustGet(t, e.admin, "/server_info", `"state": "running"`)
	// Its service ports show its live counters again, not those frozen at the ack.
	s.m.upgradesFailed.Inc()
	mustGet(t, e.admin, "/stats", "server.upgrades_failed_total: 1")
	// It serves again before it takes reconfig.sock back: wait for that.
	waitFor(t, "the log line that reconfig.sock was taken back", func() bool { return e.logged("took reconfig.sock back: upgradable again") })
	if n := e.style.reclaimCount(); s.m.upgradesReverted.Value() != 1 || n != 1 || !e.logged("successor died after the ack; serving again") {
		t.Fatalf("reverted %v reclaims %d", s.m.upgradesReverted.Value(), n)
	}
	notDone(t, s)
	// Upgradable again: a second handover, released this time, ends the process.
	succ2 := newFakeSucc(true)
	e.style.successorHooks().onAck(succ2)
	close(succ2.released)
	waitDone(t, s)
	if s.m.upgradesReverted.Value() != 1 {
		t.Fatal("reverted twice")
	}
}

// A reclaim that fails is retried, bounded, with a growing pause: a
// transient failure does not leave the process that serves again
// unupgradable. (Before: one attempt.)
func TestRevertRetriesTheReclaim(t *testing.T) {
	e := newEnv(t, "", "")
	e.style.reclaimFails = 2
	s, succ := ackedInWatch(t, e, 5*time.Second)
	close(succ.gone)
	e.timers.fire(t, reclaimBackoff)
	e.timers.fire(t, 2*reclaimBackoff)
	waitFor(t, "the log line that reconfig.sock was taken back", func() bool { return e.logged("took reconfig.sock back: upgradable again") })
	if n := e.style.reclaimCount(); n != 3 {
		t.Fatalf("%d reclaim attempts, want 3", n)
	}
	mustGet(t, e.web, "/", "v1")
	notDone(t, s)
}

// A listener the successor's config dropped is closed at the ack: its
// clients are refused at once, not queued unanswered until this process
// exits; if the successor then dies, a revert binds it afresh and serves it.
// (Before: it stayed open, paused, for the whole drain and watch.)
func TestAckClosesListenersTheSuccessorDropped(t *testing.T) {
	e := newEnv(t, "", "")
	e.style.pol.watch = 5 * time.Second
	s := startFresh(t, e)
	var web ident.Spec
	for _, p := range s.parts() {
		if p.spec.Name == "web" {
			web = p.ln.Spec
		}
	}
	succ := newFakeSucc(true)
	succ.dropped = []ident.Spec{web}
	e.style.successorHooks().onAck(succ)
	refused(t, e.web)
	close(succ.gone)
	waitRunning(t, s)
	mustGet(t, e.web, "/", "v1")
}

// Released, or the watch period over: exit after the drain.
func TestWatchEnds(t *testing.T) {
	for _, how := range []string{"released", "timer", "released then gone", "shutdown"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, "", "")
			s, succ := ackedInWatch(t, e, 7*time.Second)
			switch how {
			case "released":
				close(succ.released)
			case "timer":
				e.timers.fire(t, 7*time.Second)
			case "released then gone":
				close(succ.released)
				close(succ.gone)
			case "shutdown":
				if err := s.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				close(succ.gone)
			}
			waitDone(t, s)
			if s.m.upgradesReverted.Value() != 0 {
				t.Fatal("reverted")
			}
		})
	}
}

// An Envoy parent drains gradually what does not move and lives until its
// child terminates it; then what is left closes at request boundaries.
func TestEnvoyParentDrainsUntilTerminated(t *testing.T) {
	e := newEnv(t, "", "")
	e.style.pol = handoverPolicy{drainTime: time.Minute, gradual: true}
	s := startFresh(t, e)
	c, br := keepAlive(t, e.web)
	h := e.style.successorHooks()
	if first := h.pauseAdmin(); !first.Equal(s.firstStart) {
		t.Fatalf("pauseAdmin = %v", first)
	}
	if len(h.stats()) == 0 {
		t.Fatal("no stats for the child")
	}
	h.onAck(noSuccessor{pid: 9})
	// rand 0: the gradual drain asks the idle connection to close at once.
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("idle connection not drained")
	}
	notDone(t, s)
	h.terminate()
	waitDone(t, s)
}

func TestTerminateWithoutHandover(t *testing.T) {
	e := newEnv(t, "", "")
	s := startFresh(t, e)
	e.style.successorHooks().terminate()
	waitDone(t, s)
	refused(t, e.web)
}

// SIGTERM (Shutdown) just as the watch serves again after the successor
// died: Shutdown waits for the revert, then stops what it serves, within
// its context. (Before: it stopped the reverted handover and waited for a
// done that handover never closes: it hung, and the process served on.)
func TestShutdownDuringRevertStopsTheProcess(t *testing.T) {
	for i := 0; i < 5; i++ {
		e := newEnv(t, "", "")
		s, succ := ackedInWatch(t, e, 5*time.Second)
		res := make(chan error, 1)
		s.log.Logger.AddHook(&onMessage{msg: "successor died after the ack; serving again", f: func() {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				res <- s.Shutdown(ctx)
			}()
		}})
		close(succ.gone)
		select {
		case err := <-res:
			if err != nil {
				t.Fatalf("iteration %d: Shutdown = %v", i, err)
			}
		case <-time.After(2 * wait):
			t.Fatalf("iteration %d: Shutdown did not return; state %s", i, s.getState())
		}
		waitDone(t, s)
		refused(t, e.web)
	}
}

// A Shutdown that comes after the revert has ended the handover but before
// the process is Running again (the revert's "serving" lines fall there)
// waits for the revert, then stops what it serves. (Before: it took the Draining state for
// a handover's drain and waited for an end that never came.)
func TestShutdownBetweenARevertsHandoverEndAndServing(t *testing.T) {
	e := newEnv(t, "", "")
	s, succ := ackedInWatch(t, e, 5*time.Second)
	res := make(chan error, 1)
	var once sync.Once
	s.log.Logger.AddHook(&onMessage{msg: "serving", f: func() {
		once.Do(func() {
			if st := s.getState(); st != StateDraining {
				res <- fmt.Errorf("state %s in the revert's window, want draining", st)
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				res <- s.Shutdown(ctx)
			}()
			// Hold the window open for the Shutdown to look at the state
			// in it; the test's subject, not a wait for readiness.
			time.Sleep(200 * time.Millisecond)
		})
	}})
	close(succ.gone)
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(2 * wait):
		t.Fatalf("Shutdown did not return; state %s", s.getState())
	}
	waitDone(t, s)
	refused(t, e.web)
}

// onMessage runs f when a log entry with message msg is written.
type onMessage struct {
	msg string
	f   func()
}

func (h *onMessage) Levels() []logrus.Level { return logrus.AllLevels }
func (h *onMessage) Fire(e *logrus.Entry) error {
	if e.Message == h.msg {
		h.f()
	}
	return nil
}

// Shutdown during a handover honours its context: when it ends, Shutdown
// returns its error, and what the handover still drains is cut. (Before:
// it waited for the handover whatever its context said.)
func TestShutdownHonoursItsContextDuringAHandover(t *testing.T) {
	e := newEnv(t, "", "")
	s := startFresh(t, e)
	succ := newFakeSucc(false)
	succ.byeBlock = make(chan struct{}) // the handover cannot end
	t.Cleanup(func() { close(succ.byeBlock) })
	e.style.successorHooks().onAck(succ)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- s.Shutdown(ctx) }()
	select {
	case err := <-res:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want its context's error", err)
		}
	case <-time.After(wait):
		t.Fatal("Shutdown did not return when its context ended")
	}
}

// SIGTERM while a successor's handoff completes: the handover finishes.
func TestShutdownAfterAck(t *testing.T) {
	e := newEnv(t, "", "")
	s := startFresh(t, e)
	e.style.ep.acked = true
	e.style.successorHooks().onAck(newFakeSucc(false))
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s)
}

func TestDrainListenersKeepsServices(t *testing.T) {
	e := newEnv(t, "", "")
	s := startFresh(t, e)
	s.DrainListeners()
	refused(t, e.web)
	mustGet(t, e.admin, "/server_info", "running")
}

func TestEnvoyStateNames(t *testing.T) {
	for st, want := range map[State]string{StateStarting: "INITIALIZING", StateRunning: "LIVE", StateDraining: "DRAINING", StateStopped: "DRAINING"} {
		if got := envoyStateName(st); got != want {
			t.Errorf("%s: %s", st, got)
		}
	}
}

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// The successor gets our counters at once after the ack, without waiting for
// the requests our service ports are still answering; those show the
// counters frozen at what was sent, so no scrape sees one go backwards.
func TestCountersPushedWithoutWaitingForServiceRequests(t *testing.T) {
	e := newEnv(t, "", "")
	s := startFresh(t, e)
	mustGet(t, e.admin, "/stats", "server.live")
	// A request half sent: the admin port holds it open.
	c, err := net.Dial("tcp", e.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /stats HTTP/1.1\r\nHost: x\r\n"))
	succ := newFakeSucc(false)
	e.style.successorHooks().onAck(succ)
	succ.mu.Lock()
	pushed := len(succ.counters)
	succ.mu.Unlock()
	if pushed != 1 {
		t.Fatalf("%d counter pushes when the ack was handled, want 1 at once", pushed)
	}
	s.m.upgrades.Inc() // counted after the push
	c.Write([]byte("\r\n"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "server.upgrades_total: 0") {
		t.Fatalf("the old process's admin shows counters past what it sent:\n%s", body)
	}
	waitDone(t, s)
}
