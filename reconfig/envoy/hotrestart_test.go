package envoy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/reconfig/wire"
	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// fakeProcess plays the server side of one epoch: a TCP listener and the hooks.
type fakeProcess struct {
	t     *testing.T
	start time.Time
	ln    *net.TCPListener

	mu    sync.Mutex
	stats []sample.Sample

	adminShut, drained, terminated chan struct{}
	succ                           *reconfig.Successor // the drain stream, under mu
	once                           [3]sync.Once
}

func newFakeProcess(t *testing.T) *fakeProcess {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return &fakeProcess{
		t: t, start: time.Unix(1700000000, 123), ln: ln,
		adminShut: make(chan struct{}), drained: make(chan struct{}), terminated: make(chan struct{}),
	}
}

func (p *fakeProcess) hooks() ParentHooks {
	return ParentHooks{
		ShutdownAdmin: func() time.Time { p.once[0].Do(func() { close(p.adminShut) }); return p.start },
		ExportListeners: func(send func([]ident.Spec, []int) error) error {
			fd, err := wire.RawFD(p.ln)
			if err != nil {
				return err
			}
			return send([]ident.Spec{{Name: "proxy", Kind: ident.KindServer, Network: "tcp", Address: p.ln.Addr().String()}}, []int{fd})
		},
		SessionTicketKeys: func() []reconfig.SessionTicketKey { return []reconfig.SessionTicketKey{testTicketKey(p.start)} },
		Stats: func() []sample.Sample {
			p.mu.Lock()
			defer p.mu.Unlock()
			return append([]sample.Sample(nil), p.stats...)
		},
		Drain: func(succ *reconfig.Successor) {
			p.mu.Lock()
			p.succ = succ
			p.mu.Unlock()
			p.once[1].Do(func() { close(p.drained) })
			_ = p.ln.Close()
		},
		Terminate: func() { p.once[2].Do(func() { close(p.terminated) }) },
	}
}

func testTicketKey(created time.Time) reconfig.SessionTicketKey {
	return reconfig.SessionTicketKey{Key: bytes.Repeat([]byte{9}, reconfig.SessionTicketKeySize), Created: created}
}

func (p *fakeProcess) setStats(s ...sample.Sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats = s
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// family runs the epochs of one base id in this test process; pids are fake
// (all epochs share the test's real pid) and all count as alive.
type family struct {
	t      *testing.T
	opts   Options
	shmDir string
}

func newFamily(t *testing.T, abstract bool) *family {
	o := DefaultOptions()
	if abstract {
		o.SocketPath = abstractPath()
	} else {
		o.SocketPath = filepath.Join(shortDir(t), "hr")
	}
	o.BaseID = 4
	return &family{t: t, opts: o, shmDir: t.TempDir()}
}

func (fam *family) config(epoch int) Config {
	o := fam.opts
	o.RestartEpoch = epoch
	return Config{
		Options: o, ShmDir: fam.shmDir,
		ConnectRetry: 5 * time.Millisecond, RequestTimeout: 3 * time.Second,
	}
}

func (fam *family) open(epoch int) (*HotRestart, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	h, err := Open(ctx, fam.config(epoch))
	if err == nil {
		fam.t.Cleanup(func() { _ = h.Close() })
	}
	return h, err
}

// served is a running Serve.
type served struct {
	done chan struct{}
	err  error
}

// wait waits for Serve to return and gives its error.
func (s *served) wait(t *testing.T, what string) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(5 * time.Second):
		t.Fatalf("Serve did not return after %s", what)
		return nil
	}
}

// serve starts h's parent side and checks, at cleanup, that Serve returned nil.
func serve(t *testing.T, h *HotRestart, hooks ParentHooks) *served {
	s := &served{done: make(chan struct{})}
	go func() { s.err = h.Serve(hooks); close(s.done) }()
	t.Cleanup(func() {
		_ = h.Close()
		select {
		case <-s.done:
			if s.err != nil {
				t.Errorf("Serve: %v", s.err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return s
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHotRestartTakeover(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(fmt.Sprintf("abstract=%v", abstract), func(t *testing.T) { testTakeover(t, abstract) })
	}
}

func testTakeover(t *testing.T, abstract bool) {
	ctx := ctx5(t)
	fam := newFamily(t, abstract)
	h0, p0 := fam.epoch0(t)
	served0 := serve(t, h0, p0.hooks())

	// Epoch 0 has no parent: the child calls are no-ops.
	if start, err := h0.ShutdownParentAdmin(ctx); err != nil || !start.IsZero() || h0.HasParent() {
		t.Fatalf("epoch 0 ShutdownParentAdmin: %v %v", start, err)
	}
	if socks, err := h0.PassListenSockets(ctx); err != nil || socks != nil {
		t.Fatalf("epoch 0 PassListenSockets: %v %v", socks, err)
	}
	if _, err := h0.DrainParentListeners(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if h0.SharedMemory().Initializing() {
		t.Fatal("epoch 0 still INITIALIZING after DrainParentListeners")
	}
	pname, cname := h0.SocketNames()
	if !abstract {
		for _, n := range []string{pname, cname} {
			fi, err := os.Stat(n)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("socket file %s: %v %v", n, fi, err)
			}
		}
	}

	h1, err := fam.open(1)
	if err != nil {
		t.Fatal(err)
	}
	if !h1.HasParent() || h1.ParentPID() != os.Getpid() {
		t.Fatalf("epoch 1: HasParent %v, parent pid %d", h1.HasParent(), h1.ParentPID())
	}
	if !h1.SharedMemory().Initializing() {
		t.Fatal("epoch 1 must hold INITIALIZING while it takes over")
	}

	start, err := h1.ShutdownParentAdmin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitClosed(t, p0.adminShut, "parent admin shutdown")
	if !start.Equal(p0.start) {
		t.Fatalf("original start time %v, want %v", start, p0.start)
	}

	socks, err := h1.PassListenSockets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 1 {
		t.Fatalf("got %d sockets", len(socks))
	}
	if k := h1.SessionTicketKeys(); len(k) != 1 || !bytes.Equal(k[0].Key, testTicketKey(p0.start).Key) || !k[0].Created.Equal(p0.start) {
		t.Fatalf("session ticket keys did not come with the sockets (%d)", len(k))
	}
	s := socks[0]
	if s.Spec.Name != "proxy" || s.Spec.Kind != "server" || s.Spec.Network != "tcp" || s.Spec.Address != p0.ln.Addr().String() {
		t.Fatalf("socket identity %+v", s.Spec)
	}
	ln, err := net.FileListener(s.File)
	_ = s.File.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	p0.setStats(
		sample.Sample{Name: "listener.downstream_cx_total", Kind: sample.KindCounter, Value: 5},
		sample.Sample{Name: "server.total_connections", Kind: sample.KindGauge, Value: 2},
	)
	got, err := h1.ParentStats(ctx)
	if err != nil || len(got.Samples) != 2 || got.Samples[0].Value != 5 || got.Samples[1].Value != 2 || len(got.Histograms) != 0 {
		t.Fatalf("ParentStats: %+v %v", got, err)
	}

	// The child serves; the parent is told to drain (its listener closes),
	// and gets the drain stream, on which it moves connections to the child.
	fl, err := h1.DrainParentListeners(ctx, []reconfig.MigrationTarget{{Listener: "proxy", Kind: reconfig.ConnKindTCP}}, nil)
	if err != nil || fl == nil {
		t.Fatalf("DrainParentListeners: %v %v", fl, err)
	}
	waitClosed(t, p0.drained, "parent drain")
	p0.mu.Lock()
	succ := p0.succ
	p0.mu.Unlock()
	if succ == nil || succ.PID() != os.Getpid() || len(succ.MigrationTargets()) != 1 {
		t.Fatalf("drain stream %+v", succ)
	}
	followed := make(chan error, 1)
	go func() { followed <- fl.Follow(ctx, reconfig.FollowHooks{}) }()
	if err := succ.Bye(); err != nil {
		t.Fatalf("bye on the drain stream: %v", err)
	}
	if err := <-followed; err != nil {
		t.Fatalf("follow the drain stream: %v", err)
	}
	succ.Close()
	if h1.SharedMemory().Initializing() {
		t.Fatal("INITIALIZING still set after the takeover")
	}
	// A new connection reaches the inherited socket in the child.
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = c.Write([]byte("child"))
			_ = c.Close()
		}
		accepted <- err
	}()
	c, err := net.DialTimeout("tcp", s.Spec.Address, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	_ = c.Close()
	if err != nil || string(b) != "child" {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}

	if err := h1.TerminateParent(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, p0.terminated, "parent terminate")
	if err := served0.wait(t, "Terminate"); err != nil {
		t.Fatalf("parent Serve: %v", err)
	}
	if h1.HasParent() {
		t.Fatal("HasParent after TerminateParent")
	}
	if !abstract {
		if _, err := os.Stat(pname); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("terminated parent left its socket file: %v", err)
		}
	}
	// After termination the child calls are no-ops again.
	if socks, err := h1.PassListenSockets(ctx); err != nil || socks != nil {
		t.Fatalf("after terminate: %v %v", socks, err)
	}
	if err := h1.TerminateParent(ctx); err != nil {
		t.Fatalf("second TerminateParent: %v", err)
	}
}

// Starting epoch 2 terminates epoch 0: epoch 1 does it when asked for its admin.
func TestThirdEpochTerminatesGrandparent(t *testing.T) {
	ctx := ctx5(t)
	fam := newFamily(t, true)
	h0, p0 := fam.epoch0(t)
	serve(t, h0, p0.hooks())
	if _, err := h0.DrainParentListeners(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	h1, err := fam.open(1)
	if err != nil {
		t.Fatal(err)
	}
	p1 := newFakeProcess(t)
	serve(t, h1, p1.hooks())
	if _, err := h1.ShutdownParentAdmin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.DrainParentListeners(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p0.terminated:
		t.Fatal("epoch 0 terminated before epoch 2 started")
	default:
	}

	h2, err := fam.open(2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h2.ShutdownParentAdmin(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, p1.adminShut, "epoch 1 admin shutdown")
	waitClosed(t, p0.terminated, "epoch 0 terminated by epoch 1")
	waitClosed(t, h1.ParentGone(), "epoch 1 forgetting its parent")
	if h1.HasParent() {
		t.Fatal("epoch 1 still has a parent")
	}
	select {
	case <-p1.terminated:
		t.Fatal("epoch 1 terminated too early")
	default:
	}
	// Epoch 3 reuses epoch 0's socket ids: free now.
	if _, err := h2.DrainParentListeners(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	h3, err := fam.open(3)
	if err != nil {
		t.Fatalf("epoch 3 could not take epoch 0's names: %v", err)
	}
	_ = h3
}

func TestChildRefusedWhileParentInitializes(t *testing.T) {
	ctx := ctx5(t)
	fam := newFamily(t, false)
	h0, p0 := fam.epoch0(t)
	serve(t, h0, p0.hooks())
	_, err := fam.open(1)
	if !errors.Is(err, ErrParentInitializing) || !strings.Contains(err.Error(), "previous process is still initializing") {
		t.Fatalf("got %v", err)
	}
	// Nothing disturbed: the parent still serves, and once it is up the same epoch starts.
	if _, err := h0.DrainParentListeners(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	h1, err := fam.open(1)
	if err != nil {
		t.Fatalf("retry after the parent initialized: %v", err)
	}
	if _, err := h1.ShutdownParentAdmin(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, p0.adminShut, "admin shutdown")
}

func TestBaseIDInUse(t *testing.T) {
	fam := newFamily(t, true)
	h0, err := fam.open(0)
	if err != nil {
		t.Fatal(err)
	}
	region := h0.SharedMemory().Path()
	before, err := os.Stat(region)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fam.open(0)
	if !errors.Is(err, ErrSocketInUse) || !strings.Contains(err.Error(), "--base-id") {
		t.Fatalf("got %v, want an in-use error suggesting --base-id", err)
	}
	after, err := os.Stat(region)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the refused process replaced the running one's shared memory: %v", err)
	}
}

func TestDynamicBaseIDPicksAFreeOne(t *testing.T) {
	fam := newFamily(t, true)
	fam.opts.BaseID = 21
	taken, err := fam.open(0)
	if err != nil {
		t.Fatal(err)
	}
	idPath := filepath.Join(t.TempDir(), "base_id")
	cfg := fam.config(0)
	cfg.Options.BaseID = 0
	cfg.Options.UseDynamicBaseID = true
	cfg.Options.BaseIDPath = idPath
	seq := []uint32{21, 21, 37}
	cfg.Rand = func() uint32 { v := seq[0]; seq = seq[1:]; return v }
	h, err := Open(ctx5(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.BaseID() != 37 {
		t.Fatalf("picked base id %d, want 37 (21 is taken)", h.BaseID())
	}
	b, err := os.ReadFile(idPath)
	if err != nil || string(b) != "37" {
		t.Fatalf("--base-id-path holds %q, %v", b, err)
	}
	if p, _ := h.SocketNames(); p != SocketName(fam.opts.SocketPath, RoleParent, 37, 0) {
		t.Fatalf("parent socket %s", p)
	}
	_ = taken

	// When every candidate is taken, it gives up with a clear error.
	cfg.Rand = func() uint32 { return 21 }
	if _, err := Open(ctx5(t), cfg); !errors.Is(err, ErrSocketInUse) || !strings.Contains(err.Error(), "dynamic base id") {
		t.Fatalf("got %v", err)
	}
}

func TestFixedBaseIDIsWrittenToo(t *testing.T) {
	fam := newFamily(t, true)
	fam.opts.BaseIDPath = filepath.Join(t.TempDir(), "id")
	if _, err := fam.open(0); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(fam.opts.BaseIDPath); err != nil || string(b) != "4" {
		t.Fatalf("base id file %q, %v", b, err)
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	cfg := Config{Options: DefaultOptions()}
	cfg.Options.UseDynamicBaseID, cfg.Options.RestartEpoch = true, 1
	if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--use-dynamic-base-id") {
		t.Fatalf("got %v", err)
	}
	cfg = Config{Options: DefaultOptions()}
	cfg.Options.DisableHotRestart = true
	if _, err := Open(context.Background(), cfg); err == nil {
		t.Fatal("Open with hot restart disabled succeeded")
	}
}

func TestChildWithoutParentGivesUp(t *testing.T) {
	fam := newFamily(t, false)
	h0, err := fam.open(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h0.DrainParentListeners(ctx5(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	// The region exists but nobody serves the parent socket.
	pname, _ := h0.SocketNames()
	h0.stopServing()
	cfg := fam.config(1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = Open(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), pname) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	// The failed child released INITIALIZING and its socket names.
	if h0.SharedMemory().Initializing() {
		t.Fatal("failed child left INITIALIZING set")
	}
	cname := SocketName(fam.opts.SocketPath, RoleChild, fam.opts.BaseID, 1)
	if _, err := os.Stat(cname); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed child left its socket file: %v", err)
	}
}

func TestParentRefusesAStranger(t *testing.T) {
	fam := newFamily(t, true)
	h0, p0 := fam.epoch0(t)
	serve(t, h0, p0.hooks())
	pname, _ := h0.SocketNames()
	c, err := net.Dial("unix", pname) // not bound to the epoch 1 child name
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The parent may drop us before or after our request is written.
	if err := writeFrame(c.(*net.UnixConn), msgShutdownAdmin, nil, nil); err != nil &&
		!errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := readFrame(c.(*net.UnixConn)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("stranger got %v, want the connection closed", err)
	}
	select {
	case <-p0.adminShut:
		t.Fatal("a stranger shut the admin down")
	default:
	}
}

// Strangers that keep knocking are refused, each one, but logged at most
// once per interval (the others counted): no peer grows the log without
// bound. (Before: one warning per refused peer.)
func TestRefusedPeersAreLoggedBounded(t *testing.T) {
	fam := newFamily(t, true)
	cfg := fam.config(0)
	l, hook := logtest.NewNullLogger()
	cfg.Log = logrus.NewEntry(l)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	h0, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h0.Close() })
	p0 := newFakeProcess(t)
	serve(t, h0, p0.hooks())
	pname, _ := h0.SocketNames()
	for i := 0; i < 20; i++ {
		c, err := net.Dial("unix", pname)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _ = c.Read(make([]byte, 1)) // closed by the parent once refused
		c.Close()
	}
	n := 0
	for _, e := range hook.AllEntries() {
		if e.Message == "refused a hot restart peer" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d warnings for 20 refused peers within the interval, want 1", n)
	}
}

// fakeParentSocket listens on epoch 0's parent name and answers each request with reply.
func fakeParentSocket(t *testing.T, fam *family, reply func(c *net.UnixConn)) {
	t.Helper()
	name := SocketName(fam.opts.SocketPath, RoleParent, fam.opts.BaseID, 0)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		if f, err := readFrame(c); err == nil {
			f.closeFiles()
			reply(c)
		}
		_, _ = io.Copy(io.Discard, c)
	}()
}

// A parent region without a process: made by an epoch 0 that is closed again.
func parentRegion(t *testing.T, fam *family) {
	t.Helper()
	s, err := OpenSharedMemory(ShmConfig{Dir: fam.shmDir, BaseID: fam.opts.BaseID})
	if err != nil {
		t.Fatal(err)
	}
	s.MarkInitialized()
	_ = s.Close()
}

func TestChildClosesDescriptorsOfAGarbledReply(t *testing.T) {
	fam := newFamily(t, true)
	parentRegion(t, fam)
	r, w := pipeProbe(t)
	fakeParentSocket(t, fam, func(c *net.UnixConn) {
		// Two entries announced, one descriptor sent.
		_ = writeFrame(c, msgPassSocketsReply, passSocketsReply{Sockets: []ident.Spec{{Name: "a"}, {Name: "b"}}}, []*os.File{w})
		_ = w.Close()
	})
	h1, err := fam.open(1)
	if err != nil {
		t.Fatal(err)
	}
	socks, err := h1.PassListenSockets(ctx5(t))
	if !errors.Is(err, ErrGarbled) || socks != nil {
		t.Fatalf("got %v, %v", socks, err)
	}
	assertAllWriteEndsClosed(t, r)
}

func TestChildTreatsAWrongReplyAsALostParent(t *testing.T) {
	fam := newFamily(t, true)
	parentRegion(t, fam)
	r, w := pipeProbe(t)
	fakeParentSocket(t, fam, func(c *net.UnixConn) {
		_ = writeFrame(c, msgPassSocketsReply, passSocketsReply{Sockets: []ident.Spec{{Name: "a"}}}, []*os.File{w})
		_ = w.Close()
	})
	h1, err := fam.open(1)
	if err != nil {
		t.Fatal(err)
	}
	merger := NewStatMerger(nil, nil)
	reg := stats.New()
	h1.AttachStats(merger, reg)
	if _, err := h1.ParentStats(ctx5(t)); !errors.Is(err, ErrGarbled) {
		t.Fatalf("got %v", err)
	}
	assertAllWriteEndsClosed(t, r)
	if h1.HasParent() {
		t.Fatal("parent still counted after a garbled reply")
	}
	if got, err := h1.ParentStats(ctx5(t)); err != nil || got.Samples != nil || got.Histograms != nil {
		t.Fatalf("after the loss: %v %v", got, err)
	}
}

func TestChildRequestHonoursItsDeadline(t *testing.T) {
	fam := newFamily(t, true)
	parentRegion(t, fam)
	fakeParentSocket(t, fam, func(c *net.UnixConn) {}) // never answers
	h1, err := fam.open(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = h1.ShutdownParentAdmin(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(t0))
	}
	// A parent that does not answer in time counts as lost.
	waitClosed(t, h1.ParentGone(), "the parent counted as gone")
	if h1.HasParent() {
		t.Fatal("HasParent after a timed-out request")
	}
}

func TestTerminateAMuteParentReportsTheTimeout(t *testing.T) {
	fam := newFamily(t, true)
	parentRegion(t, fam)
	fakeParentSocket(t, fam, func(c *net.UnixConn) {}) // takes the request, never answers
	h1, err := fam.open(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = h1.TerminateParent(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
	if h1.HasParent() || h1.ParentPID() != os.Getpid() {
		t.Fatalf("after the attempt: HasParent %v, ParentPID %d (want ours, for a harder measure)", h1.HasParent(), h1.ParentPID())
	}
}

func TestStatsAcrossEpochs(t *testing.T) {
	ctx := ctx5(t)
	fam := newFamily(t, true)
	h0, err := fam.open(0)
	if err != nil {
		t.Fatal(err)
	}
	reg0 := stats.New()
	reg0.Gauge("server.hot_restart_generation", "").Set(1)
	reg0.Gauge("server.live", "").Set(1)
	reg0.Counter("requests_total", "").Add(10)
	reg0.Gauge("connections", "").Set(3)
	m0 := NewStatMerger(nil, nil)
	h0.AttachStats(m0, reg0)
	p0 := newFakeProcess(t)
	hooks0 := p0.hooks()
	hooks0.Stats = func() []sample.Sample { return m0.Overlay(reg0.Snapshot()) }
	serve(t, h0, hooks0)
	if _, err := h0.DrainParentListeners(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}

	h1, err := fam.open(1)
	if err != nil {
		t.Fatal(err)
	}
	reg1 := stats.New()
	reg1.Gauge("server.hot_restart_generation", "").Set(1)
	reg1.Gauge("server.live", "").Set(1)
	reg1.Gauge("connections", "").Set(1)
	m1 := NewStatMerger(nil, nil)
	h1.AttachStats(m1, reg1)
	if err := h1.SyncParentStats(ctx); err != nil {
		t.Fatal(err)
	}
	view := func(m *StatMerger, reg *stats.Registry) map[string]float64 {
		out := map[string]float64{}
		for _, s := range m.Overlay(reg.Snapshot()) {
			out[s.Key()] = s.Value
		}
		return out
	}
	v := view(m1, reg1)
	if v["server.hot_restart_generation"] != 2 || v["server.live"] != 1 || v["requests_total"] != 10 || v["connections"] != 4 {
		t.Fatalf("epoch 1 view %v", v)
	}
	// Only growth is added on the next sync.
	reg0.Counter("requests_total", "").Add(5)
	if err := h1.SyncParentStats(ctx); err != nil {
		t.Fatal(err)
	}
	if got := reg1.Counter("requests_total", "").Value(); got != 15 {
		t.Fatalf("requests_total %v, want 15", got)
	}
	if _, err := h1.DrainParentListeners(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	// Counts made just before termination are kept by the final sync.
	reg0.Counter("requests_total", "").Add(1)
	if err := h1.TerminateParent(ctx); err != nil {
		t.Fatal(err)
	}
	v = view(m1, reg1)
	if v["requests_total"] != 16 || v["connections"] != 1 || v["server.hot_restart_generation"] != 2 {
		t.Fatalf("after the parent is gone %v", v)
	}

	// Epoch 2 sees generation 3.
	p1 := newFakeProcess(t)
	hooks1 := p1.hooks()
	hooks1.Stats = func() []sample.Sample { return m1.Overlay(reg1.Snapshot()) }
	serve(t, h1, hooks1)
	h2, err := fam.open(2)
	if err != nil {
		t.Fatal(err)
	}
	reg2 := stats.New()
	reg2.Gauge("server.hot_restart_generation", "").Set(1)
	m2 := NewStatMerger(nil, nil)
	h2.AttachStats(m2, reg2)
	if err := h2.SyncParentStats(ctx); err != nil {
		t.Fatal(err)
	}
	if v := view(m2, reg2); v["server.hot_restart_generation"] != 3 || v["requests_total"] != 16 {
		t.Fatalf("epoch 2 view %v", v)
	}
}

func TestRunStatsSyncStopsWhenParentGoes(t *testing.T) {
	fam := newFamily(t, true)
	h0, p0 := fam.epoch0(t)
	p0.setStats(sample.Sample{Name: "a_total", Kind: sample.KindCounter, Value: 1})
	serve(t, h0, p0.hooks())
	if _, err := h0.DrainParentListeners(ctx5(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg := fam.config(1)
	ticks := make(chan time.Time)
	cfg.After = func(time.Duration) <-chan time.Time { return ticks }
	h1, err := Open(ctx5(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	reg := stats.New()
	h1.AttachStats(NewStatMerger(nil, nil), reg)
	done := make(chan struct{})
	go func() { h1.RunStatsSync(context.Background(), time.Second); close(done) }()
	ticks <- time.Now()
	ticks <- time.Now() // the first sync has finished once the loop takes the second tick
	if got := reg.Counter("a_total", "").Value(); got != 1 {
		t.Fatalf("a_total %v after a sync", got)
	}
	if err := h1.TerminateParent(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunStatsSync did not stop when the parent went")
	}
}

func TestTerminateParentAfter(t *testing.T) {
	fam := newFamily(t, true)
	h0, p0 := fam.epoch0(t)
	serve(t, h0, p0.hooks())
	if _, err := h0.DrainParentListeners(ctx5(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg := fam.config(1)
	fire := make(chan time.Time)
	var asked time.Duration
	var mu sync.Mutex
	cfg.After = func(d time.Duration) <-chan time.Time { mu.Lock(); asked = d; mu.Unlock(); return fire }
	h1, err := Open(ctx5(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	errc := make(chan error, 1)
	go func() { errc <- h1.TerminateParentAfter(context.Background(), 900*time.Second) }()
	fire <- time.Now()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitClosed(t, p0.terminated, "terminate after the parent shutdown time")
	mu.Lock()
	waited := asked
	mu.Unlock()
	if waited != 900*time.Second {
		t.Fatalf("waited %v, want 900s", asked)
	}
	// A cancelled wait terminates nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h1.TerminateParentAfter(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// epoch0 opens the family's epoch 0 and a fake process to serve its child.
func (f *family) epoch0(t *testing.T) (*HotRestart, *fakeProcess) {
	t.Helper()
	h0, err := f.open(0)
	if err != nil {
		t.Fatal(err)
	}
	return h0, newFakeProcess(t)
}
