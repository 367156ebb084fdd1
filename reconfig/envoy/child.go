package envoy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"

	"github.com/mosnlite/mosnlite/reconfig/wire"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// Child-side requests: this process (epoch N) asking its parent (epoch N-1).
// Without a parent (epoch 0, or after TerminateParent) each returns its zero
// result and no error, as Envoy's do. If the connection breaks, the parent
// counts as gone: the call fails and later ones return ErrNoParent.

// ShutdownParentAdmin asks the parent to stop serving its admin listener (so
// that this process can take admin over) and returns the start time of the
// first epoch, for uptime across epochs. The parent in turn terminates its own
// parent, so that at most three processes live. Zero time without a parent.
func (h *HotRestart) ShutdownParentAdmin(ctx context.Context) (time.Time, error) {
	var reply shutdownAdminReply
	f, err := h.roundTrip(ctx, msgShutdownAdmin, nil, msgShutdownAdminReply)
	if err != nil || f == nil {
		return time.Time{}, noParentOK(err)
	}
	defer f.closeFiles()
	if err := f.decode(&reply); err != nil {
		return time.Time{}, err
	}
	if reply.OriginalStartUnixNano == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, reply.OriginalStartUnixNano), nil
}

// PassListenSockets asks the parent for all its listening sockets. The caller
// owns the returned files (adopt them with net.FileListener, then close them).
// Every entry is checked (ident.Spec.Valid).
func (h *HotRestart) PassListenSockets(ctx context.Context) ([]ident.Socket, error) {
	f, err := h.roundTrip(ctx, msgPassSockets, nil, msgPassSocketsReply)
	if err != nil || f == nil {
		return nil, noParentOK(err)
	}
	var reply passSocketsReply
	if err := f.decode(&reply); err != nil {
		f.closeFiles()
		return nil, err
	}
	if err := reconfig.CheckSessionTicketKeys(reply.SessionTicketKeys); err != nil {
		f.closeFiles()
		return nil, fmt.Errorf("envoy: pass listen sockets: %v: %w", err, ErrGarbled)
	}
	h.cmu.Lock()
	h.ticketKeys = reply.SessionTicketKeys
	h.cmu.Unlock()
	if len(reply.Sockets) != len(f.files) {
		n := len(f.files)
		f.closeFiles()
		return nil, fmt.Errorf("envoy: pass listen sockets: %d entries for %d descriptors: %w", len(reply.Sockets), n, ErrGarbled)
	}
	out := make([]ident.Socket, len(reply.Sockets))
	for i, e := range reply.Sockets {
		if err := e.Valid(); err != nil {
			f.closeFiles()
			return nil, fmt.Errorf("envoy: pass listen sockets: entry %d: %v: %w", i, err, ErrGarbled)
		}
		out[i] = ident.Socket{Spec: e, File: f.files[i]}
	}
	return out, nil
}

// SessionTicketKeys are the TLS session ticket keys the parent passed with
// its listening sockets (none before PassListenSockets, or from an older
// parent).
func (h *HotRestart) SessionTicketKeys() []reconfig.SessionTicketKey {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	return h.ticketKeys
}

// Stats are a parent's series, as a child pulls them.
type Stats struct {
	Samples    []sample.Sample        // counters and gauges
	Histograms []histsample.Histogram // states, whole (not validated here)
}

// ParentStats asks the parent for its counters, gauges and histograms (see
// StatMerger), in as many reply parts as it sends. Zero without a parent.
func (h *HotRestart) ParentStats(ctx context.Context) (Stats, error) {
	var st Stats
	err := h.exchange(ctx, msgStats, statsRequest{Histograms: true}, nil, msgStatsReply, func(f *frame) (bool, error) {
		var part statsReply
		if err := f.decode(&part); err != nil {
			return false, err
		}
		st.Samples = append(st.Samples, part.Samples...)
		st.Histograms = append(st.Histograms, part.Histograms...)
		return part.More, nil
	})
	if err != nil {
		return Stats{}, noParentOK(err)
	}
	return st, nil
}

// DrainParentListeners tells the parent to stop accepting and drain; call it
// once this process serves on every listener. With the request goes one end
// of a new socket pair, the drain stream: on it the parent moves the
// connections of the listeners named in targets to this process, exactly as
// the MOSN-style handoff does after its ack; the returned Follower (nil
// without a parent) reads them and hands them to handler. It then clears
// INITIALIZING in shared memory (also at epoch 0, which has no parent): from
// now on the next epoch may start. The flag is cleared even if the parent
// could not be told.
func (h *HotRestart) DrainParentListeners(ctx context.Context, targets []reconfig.MigrationTarget, handler reconfig.ConnHandler) (*reconfig.Follower, error) {
	defer h.shm.MarkInitialized()
	if !h.HasParent() {
		return nil, nil
	}
	ours, theirs, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("envoy: drain stream: %w", err)
	}
	defer theirs.Close()
	f, err := h.roundTripFiles(ctx, msgDrain, drainRequest{Migration: targets}, []*os.File{theirs}, msgDrainReply)
	if f != nil {
		f.closeFiles()
	}
	if err != nil || f == nil {
		ours.Close()
		return nil, noParentOK(err)
	}
	return reconfig.NewFollower(ours, h.ParentPID(), handler, h.log), nil
}

// socketPair makes a connected pair of unix stream sockets: ours as a
// connection, theirs as a file to send.
func socketPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fds[0]), "drain-stream")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "drain-stream-peer"), nil
}

// TerminateParent tells the parent to shut down, and forgets it: later
// requests return zero results. A parent that disappears before its reply
// counts as terminated. If it does not answer in time the error says so;
// ParentPID names the process for a harder measure.
func (h *HotRestart) TerminateParent(ctx context.Context) error {
	h.cmu.Lock()
	attached := h.merger != nil
	h.cmu.Unlock()
	if attached && h.HasParent() {
		// Last counts before the parent goes; a failure here must not keep it alive.
		if err := h.SyncParentStats(ctx); err != nil {
			h.log.WithError(err).Warn("final merge of the parent's stats failed")
		}
	}
	f, err := h.roundTrip(ctx, msgTerminate, nil, msgTerminateReply)
	if f != nil {
		f.closeFiles()
	}
	h.cmu.Lock()
	wasConnected := h.conn != nil
	if h.conn != nil {
		_ = h.conn.Close()
		h.conn = nil
	}
	h.parentTerminated = true
	h.parentGoneLocked()
	h.cmu.Unlock()
	if err == nil && wasConnected {
		h.log.Info("parent terminated")
	}
	if errors.Is(err, errParentLost) && !isTimeout(err) {
		return nil // it went away: terminated all the same
	}
	return noParentOK(err)
}

// TerminateParentAfter waits for d (--parent-shutdown-time-s) on the Config
// clock, then terminates the parent. It returns early with ctx's error.
func (h *HotRestart) TerminateParentAfter(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-h.cfg.After(d):
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.RequestTimeout)
	defer cancel()
	return h.TerminateParent(tctx)
}

// errParentLost marks a broken connection to the parent.
var errParentLost = errors.New("connection to hot restart parent lost")

// withCtxErr makes a socket timeout caused by ctx's deadline (or cancellation)
// match context.DeadlineExceeded (or context.Canceled).
func withCtxErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
	}
	return err
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}

// noParentOK turns "no parent" into success, as Envoy's child calls are no-ops then.
func noParentOK(err error) error {
	if errors.Is(err, ErrNoParent) {
		return nil
	}
	return err
}

// roundTrip sends one request and reads its reply within ctx (or the default
// timeout). It returns (nil, ErrNoParent) when there is no parent. Any
// transport error breaks the connection for good: the parent counts as gone.
func (h *HotRestart) roundTrip(ctx context.Context, req msgType, body any, want msgType) (*frame, error) {
	return h.roundTripFiles(ctx, req, body, nil, want)
}

// roundTripFiles is roundTrip with descriptors sent along with the request.
func (h *HotRestart) roundTripFiles(ctx context.Context, req msgType, body any, files []*os.File, want msgType) (*frame, error) {
	var got *frame
	err := h.exchange(ctx, req, body, files, want, func(f *frame) (bool, error) {
		got = f
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// exchange sends one request and reads its reply: frames of type want, each
// given to part (which takes its files), for as long as part says more
// follow. All of it is bounded by ctx (the request timeout without a
// deadline). Without a parent it is ErrNoParent; a broken connection, or a
// reply that is garbled or of another type, loses the parent.
func (h *HotRestart) exchange(ctx context.Context, req msgType, body any, files []*os.File, want msgType, part func(*frame) (more bool, err error)) error {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	if h.conn == nil || h.parentTerminated {
		return ErrNoParent
	}
	ctx, cancel := h.withTimeout(ctx)
	defer cancel()
	deadline, _ := ctx.Deadline()
	c := h.conn
	if err := c.SetDeadline(deadline); err != nil {
		return h.lose(fmt.Errorf("envoy: %v: %w", typeName(req), err))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) }) // wake on cancel
	defer stop()

	if err := writeFrame(c, req, body, files); err != nil {
		return h.lose(fmt.Errorf("envoy: request %v: %w", typeName(req), withCtxErr(ctx, err)))
	}
	for {
		f, err := readFrame(c)
		if err != nil {
			return h.lose(fmt.Errorf("envoy: reply to %v: %w", typeName(req), withCtxErr(ctx, err)))
		}
		switch f.typ {
		case want:
			more, err := part(&f)
			if err != nil {
				f.closeFiles()
				return h.lose(fmt.Errorf("envoy: reply to %v: %w", typeName(req), err))
			}
			if !more {
				_ = c.SetDeadline(time.Time{})
				return nil
			}
		case msgError:
			f.closeFiles()
			_ = c.SetDeadline(time.Time{})
			var e errorReply
			_ = f.decode(&e)
			return fmt.Errorf("envoy: parent refused %v: %s", typeName(req), wire.Bound(e.Message, maxErrorMessage))
		default:
			f.closeFiles()
			return h.lose(fmt.Errorf("envoy: reply to %v was %v: %w", typeName(req), typeName(f.typ), ErrGarbled))
		}
	}
}

// lose drops a broken connection to the parent. Called with cmu held.
func (h *HotRestart) lose(err error) error {
	if h.conn != nil {
		_ = h.conn.Close()
		h.conn = nil
	}
	h.parentGoneLocked()
	// Not logged here: the caller gets the error and decides.
	return fmt.Errorf("%w: %w", err, errParentLost)
}
