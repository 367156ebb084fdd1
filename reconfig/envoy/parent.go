package envoy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/reconfig/wire"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// ParentHooks is what a process does when its child (epoch+1) asks. Hooks run
// one at a time, on the goroutine that serves the child, except Terminate.
// A nil hook answers with an empty result.
type ParentHooks struct {
	// ShutdownAdmin stops the admin listener from serving (the child takes admin
	// over) and returns the start time of the first epoch. It may keep the admin
	// socket open for ExportListeners, so that no connection is refused between.
	ShutdownAdmin func() time.Time
	// ExportListeners calls send with the identity and the descriptor of
	// every listening socket this process serves, open while send runs
	// (listener.Set.Export). It must not stop the listeners: the parent keeps
	// accepting until Drain.
	ExportListeners func(send func(specs []ident.Spec, fds []int) error) error
	// SessionTicketKeys are the TLS session ticket keys the child takes
	// with the listeners, so that clients resume their sessions on it.
	SessionTicketKeys func() []reconfig.SessionTicketKey
	// Stats returns this process's counters and gauges as the child should see
	// them: the registry snapshot with StatMerger.Overlay applied, so that the
	// gauges of a grandparent that still lives are included.
	Stats func() []sample.Sample
	// Histograms returns this process's histogram states (the registry's
	// own, whole: the child merges their growth).
	Histograms func() []histsample.Histogram
	// Drain stops accepting on every listener, moves the connections it can
	// to the child over succ (the drain stream; nil if the child sent none)
	// and drains the rest over Options.DrainTime with Options.DrainStrategy
	// (see DrainSchedule). It owns succ and must return promptly.
	Drain func(succ *reconfig.Successor)
	// Terminate shuts this process down promptly (Envoy: as on SIGTERM). It runs
	// on its own goroutine after the reply is sent and after this process's
	// epoch sockets are closed.
	Terminate func()
}

// Serve answers this process's child until Close (or Terminate): it accepts on
// the parent-role socket, refuses peers of another user (SO_PEERCRED) and
// peers not bound to the expected child socket name, and serves each
// connection's requests in order. It returns nil once the socket is closed.
func (h *HotRestart) Serve(hooks ParentHooks) error {
	want := SocketName(h.opts.SocketPath, RoleChild, h.baseID, h.opts.RestartEpoch+1)
	backoff := 5 * time.Millisecond
	// Every peer may fail: the log says so at most every peerWarnEvery.
	acceptWarn := wire.Throttle{Every: peerWarnEvery, Now: h.cfg.Now}
	refusedWarn := wire.Throttle{Every: peerWarnEvery, Now: h.cfg.Now}
	for {
		c, err := h.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors and the like: back off and try again.
			if ok, n := acceptWarn.Allow(); ok {
				h.log.WithError(err).WithField("suppressed", n).Warn("hot restart accept failed")
			}
			<-h.cfg.After(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if err := h.admit(c, want); err != nil {
			if ok, n := refusedWarn.Allow(); ok {
				h.log.WithError(err).WithField("suppressed", n).Warn("refused a hot restart peer")
			}
			_ = c.Close()
			continue
		}
		if !h.track(c) {
			_ = c.Close()
			return nil
		}
		go h.serveChild(c, hooks)
	}
}

// admit checks a new connection's credentials and bound name.
func (h *HotRestart) admit(c *net.UnixConn, want string) error {
	if _, err := checkPeer(c, h.uid); err != nil {
		return err
	}
	got := ""
	if a, ok := c.RemoteAddr().(*net.UnixAddr); ok && a != nil {
		got = a.Name
	}
	if got != want {
		return fmt.Errorf("envoy: peer is bound to %q, expected the epoch %d child socket %q", got, h.opts.RestartEpoch+1, want)
	}
	return nil
}

// track records a child connection for Close; false once closed.
func (h *HotRestart) track(c *net.UnixConn) bool {
	h.smu.Lock()
	defer h.smu.Unlock()
	if h.stopped {
		return false
	}
	h.children[c] = struct{}{}
	return true
}

func (h *HotRestart) untrack(c *net.UnixConn) {
	h.smu.Lock()
	defer h.smu.Unlock()
	delete(h.children, c)
	_ = c.Close()
}

func (h *HotRestart) serveChild(c *net.UnixConn, hooks ParentHooks) {
	defer h.untrack(c)
	log := h.log.WithField("child_epoch", h.opts.RestartEpoch+1)
	log.Info("hot restart child connected")
	for {
		f, err := readFrame(c) // no deadline: a child may be idle between stats polls
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				log.Info("hot restart child disconnected")
			} else {
				log.WithError(err).Warn("hot restart child sent a bad message; dropping it")
			}
			return
		}
		h.pmu.Lock()
		err = h.handle(c, f, hooks, log)
		h.pmu.Unlock()
		if err != nil {
			log.WithError(err).Warn("hot restart reply failed; dropping the child")
			return
		}
	}
}

// handle answers one request.
func (h *HotRestart) handle(c *net.UnixConn, f frame, hooks ParentHooks, log *logrus.Entry) error {
	if f.typ != msgDrain {
		f.closeFiles() // only a drain request carries a descriptor
	}
	_ = c.SetWriteDeadline(time.Now().Add(h.cfg.RequestTimeout))
	defer func() { _ = c.SetWriteDeadline(time.Time{}) }()
	log = log.WithField("request", typeName(f.typ))
	switch f.typ {
	case msgShutdownAdmin:
		var start time.Time
		if hooks.ShutdownAdmin != nil {
			start = hooks.ShutdownAdmin()
		}
		log.Info("admin shut down for the child")
		reply := shutdownAdminReply{}
		if !start.IsZero() {
			reply.OriginalStartUnixNano = start.UnixNano()
		}
		if err := writeFrame(c, msgShutdownAdminReply, reply, nil); err != nil {
			return err
		}
		// A child exists now: our own parent (epoch-2 from the child's view) must go.
		if h.HasParent() {
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
			err := h.TerminateParent(ctx)
			cancel()
			if err != nil {
				log.WithError(err).Warn("could not terminate our own parent")
			}
		}
		return nil
	case msgPassSockets:
		return h.passSocketsToChild(c, hooks, log)
	case msgStats:
		var req statsRequest
		if err := f.decode(&req); err != nil {
			return writeFrame(c, msgError, errorReply{Message: wire.Bound(err.Error(), maxErrorMessage)}, nil)
		}
		return h.sendStats(c, hooks, req, log)
	case msgDrain:
		log.Info("draining listeners for the child")
		succ := h.drainStream(c, f, log)
		if hooks.Drain != nil {
			hooks.Drain(succ)
		} else if succ != nil {
			succ.Close()
		}
		return writeFrame(c, msgDrainReply, nil, nil)
	case msgTerminate:
		log.Info("shutting down due to child request")
		// Free our epoch socket names before the ack, so that once the child
		// has it the next epochs can bind them.
		h.stopServing()
		h.closeParentConn()
		if err := writeFrame(c, msgTerminateReply, nil, nil); err != nil {
			log.WithError(err).Warn("terminate reply failed; terminating anyway")
		}
		if hooks.Terminate != nil {
			go hooks.Terminate()
		}
		return nil
	default:
		log.Warn("unrecognised hot restart request")
		return writeFrame(c, msgError, errorReply{Message: "unrecognised request " + typeName(f.typ)}, nil)
	}
}

// sendStats answers a stats request: counters and gauges in one reply to an
// older child; with histograms, in as many parts as the frame limit needs,
// to one that asked for them.
func (h *HotRestart) sendStats(c *net.UnixConn, hooks ParentHooks, req statsRequest, log *logrus.Entry) error {
	var samples []sample.Sample
	if hooks.Stats != nil {
		samples = finiteSamples(hooks.Stats())
	}
	if !req.Histograms {
		return writeFrame(c, msgStatsReply, statsReply{Samples: samples}, nil)
	}
	var hists []histsample.Histogram
	if hooks.Histograms != nil {
		hists = hooks.Histograms()
	}
	ns := len(samples)
	parts, dropped := wire.Split(ns+len(hists), h.cfg.maxStatsFrame(), false, func(lo, hi int, more bool) ([]byte, error) {
		return json.Marshal(statsReply{
			Samples:    samples[min(lo, ns):min(hi, ns)],
			Histograms: hists[max(lo, ns)-ns : max(hi, ns)-ns],
			More:       more,
		})
	})
	if len(dropped) > 0 {
		log.WithField("series", len(dropped)).Warn("series too large for a stats frame are not sent to the child")
	}
	for _, p := range parts {
		if err := protocol().WriteFrame(c, msgStatsReply, 0, p, nil); err != nil {
			return fmt.Errorf("envoy: send %v: %w", typeName(msgStatsReply), err)
		}
	}
	return nil
}

func (h *HotRestart) passSocketsToChild(c *net.UnixConn, hooks ParentHooks, log *logrus.Entry) error {
	reply := passSocketsReply{Sockets: []ident.Spec{}}
	if hooks.SessionTicketKeys != nil {
		reply.SessionTicketKeys = hooks.SessionTicketKeys()
	}
	if hooks.ExportListeners == nil {
		return writeFrame(c, msgPassSocketsReply, reply, nil)
	}
	sent := false
	err := hooks.ExportListeners(func(specs []ident.Spec, fds []int) error {
		if len(specs) != len(fds) {
			return fmt.Errorf("%d entries for %d descriptors", len(specs), len(fds))
		}
		reply.Sockets = append(reply.Sockets, specs...)
		p, err := json.Marshal(reply)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		log.WithField("sockets", len(fds)).Info("passing listen sockets to the child")
		sent = true
		return protocol().WriteFrame(c, msgPassSocketsReply, 0, p, fds)
	})
	if err != nil && !sent {
		return writeFrame(c, msgError, errorReply{Message: wire.Bound("export listeners: "+err.Error(), maxErrorMessage)}, nil)
	}
	if err != nil {
		return fmt.Errorf("envoy: send %v: %w", typeName(msgPassSocketsReply), err)
	}
	return nil
}

// drainStream makes the parent's end of the drain stream from the
// descriptor a drain request came with (nil without one, or if it is not a
// unix stream socket).
func (h *HotRestart) drainStream(c *net.UnixConn, f frame, log *logrus.Entry) *reconfig.Successor {
	defer f.closeFiles()
	if len(f.files) != 1 {
		return nil
	}
	var req drainRequest
	if err := f.decode(&req); err != nil {
		log.WithError(err).Warn("drain request unreadable: no connection migration")
		return nil
	}
	nc, err := net.FileConn(f.files[0])
	if err != nil {
		log.WithError(err).Warn("drain stream unusable: no connection migration")
		return nil
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		log.Warn("drain stream is not a unix socket: no connection migration")
		return nil
	}
	pid, _, _ := wire.PeerCred(c)
	return reconfig.NewSuccessor(uc, pid, req.Migration, false, reconfig.StreamConfig{Log: log, WriteTimeout: h.cfg.RequestTimeout})
}

// peerWarnEvery bounds how often a failing accept or a refused peer is
// logged (the lines in between are counted, "suppressed").
const peerWarnEvery = 10 * time.Second
