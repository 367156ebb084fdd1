package envoy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/reconfig"
)

// dynamicBaseIDAttempts bounds the search for a free base id.
const dynamicBaseIDAttempts = 100

// Defaults for Config's timing fields.
const (
	DefaultConnectRetry   = 100 * time.Millisecond
	DefaultRequestTimeout = 10 * time.Second
)

// ErrNoParent: the request needs a parent and this process has none (any more).
var ErrNoParent = errors.New("no hot restart parent")

// Config is what Open needs: the options and the side effects, injectable for tests.
type Config struct {
	Options Options
	Log     *logrus.Entry // discarded when nil

	ShmDir string           // DefaultShmDir when empty
	Rand   func() uint32    // candidate dynamic base ids; math/rand/v2 when nil
	Now    func() time.Time // time.Now when nil
	// After is the clock for TerminateParentAfter and RunStatsSync; time.After when nil.
	After func(time.Duration) <-chan time.Time

	// ConnectRetry is how often a child retries a parent socket nobody listens on yet.
	ConnectRetry time.Duration
	// RequestTimeout bounds a request or reply whose context has no deadline.
	RequestTimeout time.Duration
	// MaxStatsFrame is the largest part of a stats reply this process sends
	// as a parent (the frame type's limit when zero or above it; tests set less).
	MaxStatsFrame int
}

func (c Config) maxStatsFrame() int {
	if c.MaxStatsFrame <= 0 || c.MaxStatsFrame > maxStatsPayload {
		return maxStatsPayload
	}
	return c.MaxStatsFrame
}

func (c *Config) defaults() {
	if c.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		c.Log = logrus.NewEntry(l)
	}
	c.Log = c.Log.WithField("component", "hotrestart")
	if c.Rand == nil {
		c.Rand = rand.Uint32
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = time.After
	}
	if c.ConnectRetry <= 0 {
		c.ConnectRetry = DefaultConnectRetry
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
}

// HotRestart is one process's part in an Envoy-style hot restart: its shared
// memory mapping, its parent-role socket (serving its child, epoch+1) and its
// child-role socket (talking to its parent, epoch-1).
type HotRestart struct {
	cfg    Config
	opts   Options
	log    *logrus.Entry
	baseID int
	uid    uint32
	shm    *SharedMemory

	parentName, childName string
	ln                    *net.UnixListener // parent role

	// Child side: the connection to our parent.
	cmu              sync.Mutex
	childFD          int           // bound, unconnected child socket (epoch 0, or before connecting)
	conn             *net.UnixConn // nil when there is no parent or it is gone
	parentPID        int
	parentTerminated bool
	merger           *StatMerger   // see AttachStats
	counters         StatsAdder    // see AttachStats
	gone             chan struct{} // closed once the parent is terminated or lost
	goneOnce         sync.Once
	ticketKeys       []reconfig.SessionTicketKey // passed with the listeners

	// Parent side.
	pmu       sync.Mutex // one request at a time
	smu       sync.Mutex
	children  map[*net.UnixConn]struct{}
	stopped   bool // parent socket closed (Terminate or Close)
	closeOnce sync.Once
	closeErr  error
}

// Open takes this process's place at epoch Options.RestartEpoch: it binds the
// two epoch sockets (choosing a free base id first with UseDynamicBaseID),
// opens the shared memory region, writes the base id to BaseIDPath, and above
// epoch 0 connects to the parent's socket, retrying until ctx ends.
// The caller then runs Serve for its own child and uses the child-side methods
// to take over from its parent. Everything opened is closed on failure.
func Open(ctx context.Context, cfg Config) (*HotRestart, error) {
	cfg.defaults()
	o := cfg.Options
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.DisableHotRestart {
		return nil, errors.New("envoy: hot restart is disabled (--disable-hot-restart)")
	}
	h := &HotRestart{
		cfg:      cfg,
		opts:     o,
		log:      cfg.Log.WithField("epoch", o.RestartEpoch),
		uid:      uint32(os.Getuid()),
		childFD:  -1,
		children: map[*net.UnixConn]struct{}{},
		gone:     make(chan struct{}),
	}
	if err := h.chooseBaseID(); err != nil {
		return nil, err
	}
	h.log = h.log.WithField("base_id", h.baseID)
	shm, err := OpenSharedMemory(ShmConfig{
		Dir: cfg.ShmDir, BaseID: h.baseID, Epoch: o.RestartEpoch, Now: cfg.Now,
	})
	if err != nil {
		h.closeSockets()
		return nil, err
	}
	h.shm = shm
	if o.BaseIDPath != "" {
		if err := writeFileAtomic(o.BaseIDPath, []byte(strconv.Itoa(h.baseID))); err != nil {
			_ = h.Close()
			return nil, fmt.Errorf("envoy: write --base-id-path: %w", err)
		}
	}
	if o.RestartEpoch > 0 {
		if err := h.connectParent(ctx); err != nil {
			_ = h.Close()
			return nil, err
		}
	} else {
		h.goneOnce.Do(func() { close(h.gone) })
	}
	return h, nil
}

// chooseBaseID binds the epoch sockets for the configured base id, or for the
// first free random one with UseDynamicBaseID.
func (h *HotRestart) chooseBaseID() error {
	if !h.opts.UseDynamicBaseID {
		h.baseID = h.opts.BaseID
		return h.bindSockets()
	}
	for i := 0; i < dynamicBaseIDAttempts; i++ {
		// Envoy's range: leaves room for the ×10 scaling within 32 bits.
		h.baseID = int(h.cfg.Rand() & 0x0FFFFFFF)
		err := h.bindSockets()
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrSocketInUse) {
			return err
		}
		h.log.WithError(err).Debug("dynamic base id taken, trying another")
	}
	return fmt.Errorf("envoy: unable to select a dynamic base id after %d attempts: %w", dynamicBaseIDAttempts, ErrSocketInUse)
}

// bindSockets binds the parent-role then the child-role socket of h.baseID.
func (h *HotRestart) bindSockets() error {
	o := h.opts
	pname := SocketName(o.SocketPath, RoleParent, h.baseID, o.RestartEpoch)
	cname := SocketName(o.SocketPath, RoleChild, h.baseID, o.RestartEpoch)
	ln, err := listenEpochSocket(pname, o.SocketMode, h.baseID)
	if err != nil {
		return err
	}
	fd, err := bindChildSocket(cname, o.SocketMode, h.baseID)
	if err != nil {
		_ = ln.Close()
		return err
	}
	h.ln, h.childFD, h.parentName, h.childName = ln, fd, pname, cname
	return nil
}

// connectParent connects the child-role socket to the parent of epoch-1 and checks who answers.
func (h *HotRestart) connectParent(ctx context.Context) error {
	parent := SocketName(h.opts.SocketPath, RoleParent, h.baseID, h.opts.RestartEpoch-1)
	ctx, cancel := h.withTimeout(ctx)
	defer cancel()
	h.cmu.Lock()
	defer h.cmu.Unlock()
	conn, err := connectChildSocket(ctx, h.childFD, parent, h.cfg.ConnectRetry)
	if err != nil {
		return err
	}
	h.childFD = -1 // now owned by conn
	pid, err := checkPeer(conn, h.uid)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("envoy: parent %s: %w", parent, err)
	}
	h.conn, h.parentPID = conn, pid
	h.log.WithFields(logrus.Fields{"parent": parent, "parent_pid": h.parentPID}).Info("connected to hot restart parent")
	return nil
}

// BaseID is the base id in use (the chosen one with UseDynamicBaseID), unscaled.
func (h *HotRestart) BaseID() int { return h.baseID }

// Epoch is this process's restart epoch.
func (h *HotRestart) Epoch() int { return h.opts.RestartEpoch }

// SharedMemory is this process's mapping of the region.
func (h *HotRestart) SharedMemory() *SharedMemory { return h.shm }

// SocketNames are this process's parent-role and child-role socket names.
func (h *HotRestart) SocketNames() (parent, child string) { return h.parentName, h.childName }

// HasParent reports whether a parent is connected and not terminated.
func (h *HotRestart) HasParent() bool {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	return h.conn != nil && !h.parentTerminated
}

// ParentGone is closed once the parent has been terminated or lost (at once
// for epoch 0). The caller's stats view should stop including it then.
func (h *HotRestart) ParentGone() <-chan struct{} { return h.gone }

// ParentPID is the parent's pid as its socket reported it (0 without a parent).
func (h *HotRestart) ParentPID() int {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	return h.parentPID
}

// Close releases everything: the parent-role socket and any child connections,
// the connection to the parent, and the shared memory mapping (clearing
// INITIALIZING if this process still holds it). It does not signal anyone.
func (h *HotRestart) Close() error {
	h.closeOnce.Do(func() {
		h.stopServing()
		h.smu.Lock()
		for c := range h.children {
			_ = c.Close()
		}
		h.smu.Unlock()
		h.closeParentConn()
		if h.shm != nil {
			h.closeErr = h.shm.Close()
		}
	})
	return h.closeErr
}

// closeSockets undoes bindSockets (Open's failure path before shm exists).
func (h *HotRestart) closeSockets() {
	h.stopServing()
	h.closeParentConn()
}

// stopServing closes the parent-role socket: no child can connect any more.
func (h *HotRestart) stopServing() {
	h.smu.Lock()
	defer h.smu.Unlock()
	if h.stopped {
		return
	}
	h.stopped = true
	if h.ln != nil {
		_ = h.ln.Close() // unlinks a file socket
	}
}

// closeParentConn closes the child-role socket and removes its file.
func (h *HotRestart) closeParentConn() {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	if h.childName != "" && !isAbstract(h.childName) && (h.childFD >= 0 || h.conn != nil) {
		_ = os.Remove(h.childName)
	}
	if h.childFD >= 0 {
		_ = unix.Close(h.childFD)
		h.childFD = -1
	}
	if h.conn != nil {
		_ = h.conn.Close()
		h.conn = nil
	}
}

// withTimeout gives ctx the default request deadline if it has none.
func (h *HotRestart) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, h.cfg.RequestTimeout)
}

// writeFileAtomic writes data to path through a temporary file and a rename,
// so that a reader never sees a partial file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(name)
		return err
	}
	if err := os.Chmod(name, 0o644); err != nil {
		_ = os.Remove(name)
		return err
	}
	if err := os.Rename(name, path); err != nil {
		_ = os.Remove(name)
		return err
	}
	return nil
}
