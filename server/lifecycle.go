package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
)

// followSlack is added to the predecessor's drain bound before this process
// stops waiting for its goodbye.
const followSlack = 5 * time.Second

// ackMargin is how much before the predecessor's ack deadline the start must
// be done, leaving time for the ack itself to travel.
const ackMargin = 250 * time.Millisecond

// errNoStream: the successor sent no drain stream, so nothing can move.
var errNoStream = errors.New("server: the successor has no drain stream")

// Start brings the process up, in either handoff style: it finds out
// whether a predecessor runs and takes its sockets over, or binds fresh; it
// serves on every listener; then it acks the predecessor and becomes the one
// a successor will reach. On any error before the ack everything started is
// rolled back and the predecessor is told why; it carries on untouched. The
// error is returned, not logged: the caller reports it.
func (s *Server) Start(ctx context.Context) error {
	began := s.fx.now()
	hctx, cancel := context.WithTimeout(ctx, s.handoffTimeout())
	defer cancel()
	if !s.opts.ReadyBy.IsZero() {
		// Whoever started us stops waiting then: better to fail than to take
		// over after it has reported failure.
		var c2 context.CancelFunc
		hctx, c2 = context.WithDeadline(hctx, s.opts.ReadyBy)
		defer c2()
	}

	lin, pred, err := s.style.begin(hctx)
	if err != nil {
		return fmt.Errorf("server: start: %w", err)
	}
	var predPID any = 0
	if pred != nil {
		predPID = pred.pidLabel()
	}
	s.inherit(lin, predPID)
	if pred != nil && !lin.ackBy.IsZero() {
		// The predecessor stops waiting for our ack at its deadline; every
		// step before the ack must end before it.
		var c3 context.CancelFunc
		hctx, c3 = context.WithDeadlineCause(hctx, lin.ackBy.Add(-ackMargin),
			fmt.Errorf("the predecessor (pid %v) stops waiting for our ack at %s", pred.pidLabel(), lin.ackBy.Format(time.RFC3339Nano)))
		defer c3()
	}
	var inherited []ident.Socket
	if pred != nil {
		inherited = pred.sockets()
		s.log.WithFields(map[string]interface{}{
			"old_pid": pred.pidLabel(), "new_pid": s.opts.PID, "generation": lin.generation, "fds": len(inherited),
		}).Info("handoff: received listeners from predecessor")
		s.closeActivated("a running process hands its own sockets over")
	}
	if err := s.open(hctx, inherited, pred == nil); err != nil {
		if pred != nil {
			pred.fail(err)
		}
		return err
	}

	alone := pred == nil
	var adopt *adopter
	if pred != nil {
		// Connections the predecessor moves go to the listener of the same
		// name and kind; it learns which with the ack.
		targets, a := s.migrationTargets()
		pred.dropListeners(s.unclaimed)
		if err := pred.ack(hctx, targets, a); err != nil {
			if !pred.gone() {
				// The predecessor gave up on us and serves on: undo.
				err = fmt.Errorf("server: handoff: ack to predecessor (pid %v): %w", pred.pidLabel(), err)
				s.abandon()
				pred.fail(err)
				return err
			}
			// The predecessor is gone: this process already serves every
			// proxy socket, so it carries on, as an ordinary process.
			s.log.WithError(err).WithField("old_pid", pred.pidLabel()).Warn("handoff: predecessor exited before our ack; serving")
			pred.orphan()
			alone = true
			s.mu.Lock()
			s.drainingPID, s.drainingElsewhere = 0, false
			s.mu.Unlock()
			defer s.recordUpgrade(nil) // nothing moves here
		} else {
			adopt = a
			s.mu.Lock()
			s.pred = pred
			s.mu.Unlock()
		}
		// exec → ack: what an upgrade costs, from the start of this process.
		handoff := s.fx.now().Sub(s.execTime(began))
		s.m.upgrades.Inc()
		s.m.lastHandoffSeconds.Set(handoff.Seconds())
		s.m.upgrade.Handoff(handoff)
	}
	ep, err := s.style.listen(s.successorHooks())
	if err != nil {
		if pred == nil {
			// Nothing is lost by failing a fresh start, and a process that
			// can never be upgraded is not what was asked for.
			s.abandon()
			return fmt.Errorf("server: start: %w", err)
		}
		// After the ack the predecessor no longer accepts: stopping now would
		// be an outage. Serve, and say loudly that no upgrade is possible.
		s.log.WithError(err).Error("cannot take over reconfig.sock: this process cannot be upgraded")
	}
	s.mu.Lock()
	s.endpoint = ep
	s.mu.Unlock()
	if pred != nil {
		if !alone {
			// The service ports (metrics above all) start serving here only
			// once the predecessor has stopped serving its own and sent what
			// it counted since the manifest: no scrape sees a counter go back.
			first := make(chan struct{})
			go s.follow(ctx, pred, lin.drainBound, first, adopt)
			select {
			case <-first:
			case <-s.fx.after(s.handoffTimeout()):
				s.log.Warn("handoff: predecessor sent no counters after the ack; serving the service ports anyway")
			}
		}
		s.serveParts(func(p *part) bool { return p.svc != nil })
	}
	s.mu.Lock()
	gen := s.generation
	s.mu.Unlock()
	s.setState(StateRunning)
	s.log.WithFields(map[string]interface{}{"generation": gen, "handoff_seconds": s.fx.now().Sub(began).Seconds()}).Info("ready")
	return nil
}

// execTime is when this process started: Options.ExecTime, or began (when
// Start was called) without one.
func (s *Server) execTime(began time.Time) time.Time {
	if t := s.opts.ExecTime; !t.IsZero() && !t.After(began) {
		return t
	}
	return began
}

// refusalLog returns how refused histogram states from predecessor pid are
// logged: the first error at warning level, later ones at debug level (the
// error itself is bounded, see stats.Registry.AddHistograms).
func (s *Server) refusalLog(pid any, what string) func(error) {
	var once sync.Once
	return func(err error) {
		if err == nil {
			return
		}
		log := s.log.WithError(err).WithField("old_pid", pid)
		level := logrus.DebugLevel
		once.Do(func() { level = logrus.WarnLevel })
		log.Log(level, "handoff: "+what+" from the predecessor refused; the others are carried")
	}
}

// inherit takes what the lineage carries.
func (s *Server) inherit(lin lineage, pid any) {
	s.inheritTicketKeys(lin.ticketKeys)
	s.refusalLog(pid, "counters")(s.reg.AddCounters(lin.counters))
	s.refusalLog(pid, "histograms")(s.reg.AddHistograms(lin.histograms))
	s.mu.Lock()
	s.generation = max(lin.generation, 1)
	if !lin.firstStart.IsZero() {
		s.firstStart = lin.firstStart
	}
	s.drainingPID, s.drainingElsewhere = lin.drainingPID, lin.drainingElsewhere
	s.carried = lin.env
	s.mu.Unlock()
	s.m.generation.Set(float64(s.generation))
}

// closeActivated closes the sockets a process manager passed, unused.
func (s *Server) closeActivated(why string) {
	if len(s.opts.Activated) == 0 {
		return
	}
	for _, a := range s.opts.Activated {
		a.File.Close()
	}
	s.log.WithField("sockets", len(s.opts.Activated)).Warn("socket activation: sockets passed by the process manager closed unused: " + why)
	s.opts.Activated = nil
}

// open opens every listener (inherited or fresh) and serves on it: every
// one on a fresh start, the proxies only for a successor (its service ports
// wait for the predecessor's last counters, see Start).
func (s *Server) open(ctx context.Context, inherited []ident.Socket, fresh bool) (err error) {
	pl, err := s.build()
	if err != nil {
		for _, in := range inherited {
			in.File.Close()
		}
		s.closeActivated("the start failed")
		return err
	}
	if fresh && len(s.opts.Activated) > 0 {
		// Sockets the process manager bound: adopted like inherited ones.
		specs := make([]ident.Spec, len(pl.parts))
		for i, p := range pl.parts {
			specs[i] = p.spec
		}
		act := s.opts.Activated
		s.opts.Activated = nil
		if inherited, err = listener.MatchActivated(specs, act); err != nil {
			pl.clusters.Close()
			return fmt.Errorf("server: start: %w", err)
		}
		s.log.WithField("sockets", len(inherited)).Info("socket activation: adopting the sockets the process manager passed")
	}
	set := listener.NewSet(inherited, s.opts.Log.WithField("component", "listener"))
	s.mu.Lock()
	s.plane, s.listeners = pl, set
	s.mu.Unlock()
	defer func() {
		if err != nil {
			s.rollback()
		}
	}()
	pl.clusters.Start(context.WithoutCancel(ctx))

	nInherited := 0
	var specs []ident.Spec
	for _, p := range pl.parts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("server: start: handoff deadline: %w", context.Cause(ctx))
		}
		ln, err := set.Open(p.spec)
		if err != nil {
			return fmt.Errorf("server: open %s: %w", p.spec, err)
		}
		p.ln = ln
		specs = append(specs, ln.Spec)
		if ln.Inherited {
			nInherited++
		}
	}
	s.unclaimed = set.CloseUnclaimed()
	for _, spec := range s.unclaimed {
		s.log.WithField("listener", spec.String()).Info("inherited listener not in config: closed here, and by the predecessor at our ack")
	}
	if err := s.style.opened(specs); err != nil {
		return fmt.Errorf("server: start: %w", err)
	}
	s.m.listenersInherited.Set(float64(nInherited))
	s.serveParts(func(p *part) bool { return fresh || p.proxy != nil })
	s.m.live.Set(1)
	return nil
}

// serveParts starts serving the parts that want says, in config order.
func (s *Server) serveParts(want func(*part) bool) {
	for _, p := range s.parts() {
		if p.serving || !want(p) {
			continue
		}
		p.serve(s.log)
		s.log.WithFields(map[string]interface{}{"listener": p.spec.Name, "kind": p.spec.Kind, "address": p.ln.Spec.Address, "inherited": p.ln.Inherited}).Info("serving")
	}
}

// rollback undoes a partial start: stop every part that started, close every
// socket this process opened. Inherited sockets are only this process's
// copies; the predecessor's stay open.
func (s *Server) rollback() {
	s.mu.Lock()
	pl, set := s.plane, s.listeners
	s.plane = nil
	s.mu.Unlock()
	if pl != nil {
		for _, p := range pl.parts {
			_ = p.stopAccepting()
			p.closeAll()
		}
		pl.clusters.Close()
	}
	if set != nil {
		set.CloseAll()
	}
	s.m.live.Set(0)
}

// abandon undoes a start that served but will not go on: stop accepting,
// let what was accepted finish briefly, close everything. The caller
// reports why.
func (s *Server) abandon() {
	s.log.Warn("start abandoned: closing what this process opened")
	ctx, cancel := context.WithTimeout(context.Background(), min(s.gracefulTimeout(), s.handoffTimeout()))
	defer cancel()
	s.stopFor(ctx)
}

// follow adds in what the draining predecessor still counts and clears the
// draining pid once it is gone.
func (s *Server) follow(ctx context.Context, pred predecessor, bound time.Duration, first chan<- struct{}, adopt *adopter) {
	signaled := false
	signal := func() {
		if !signaled {
			signaled = true
			close(first)
		}
	}
	defer signal()
	// The predecessor drains for at most its graceful_timeout; a predecessor
	// that hangs must not keep this process from being upgraded forever.
	if bound <= 0 {
		bound = s.gracefulTimeout()
	}
	ctx, cancel := context.WithTimeout(ctx, bound+s.handoffTimeout()+followSlack)
	defer cancel()
	pid := pred.pidLabel()
	var goneOnce sync.Once
	gone := func() {
		s.mu.Lock()
		s.drainingPID, s.drainingElsewhere = 0, false
		s.mu.Unlock()
		// Told before the predecessor can exit, and before a successor of
		// ours can be admitted (both wait for follow to end).
		goneOnce.Do(func() {
			if f := s.opts.Events.OnPredecessorDone; f != nil {
				f()
			}
		})
	}
	var record sync.Once
	refusals, counterRefusals := s.refusalLog(pid, "histograms"), s.refusalLog(pid, "counters")
	err := pred.follow(ctx, followHooks{
		counts: func(c reconfig.Counts) {
			counterRefusals(s.reg.AddCounters(c.Counters))
			refusals(s.reg.AddHistograms(c.Histograms))
			if !c.More {
				signal()
			}
		},
		migrated: func(m reconfig.MigrationDone) {
			s.log.WithFields(map[string]interface{}{"old_pid": pid, "moved": m.Moved, "failed": m.Failed, "migration_seconds": m.Duration.Seconds()}).Info("predecessor's connection migration over")
			record.Do(func() { s.recordUpgrade(adopt) })
		},
		gone: gone,
	})
	gone()
	record.Do(func() { s.recordUpgrade(adopt) })
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.WithError(err).WithField("old_pid", pid).Warn("predecessor connection ended without goodbye")
		return
	}
	log := s.log.WithField("old_pid", pid)
	if adopt != nil {
		n := adopt.total()
		log = log.WithFields(map[string]interface{}{"adopted_tcp": n["tcp"], "adopted_http": n["http"]})
	}
	log.Info("predecessor finished draining")
}

// Shutdown stops the process for good, with no successor: stop accepting,
// let connections finish within ctx (graceful_timeout when ctx has no
// deadline), then cut the rest. A predecessor still watching us is told we
// stop on purpose (it must not serve again); an Envoy parent still draining
// is terminated. During a handover, the handover ends within ctx: no watch,
// an Envoy parent drains what is left and exits.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := s.gracefulContext(ctx)
	defer cancel()
	var st State
	var h *handover
	var ep endpoint
	var pred predecessor
	for {
		s.mu.Lock()
		st, h, ep, pred = s.state, s.handover, s.endpoint, s.pred
		reverting := s.reverting
		s.mu.Unlock()
		switch {
		case st == StateStopped:
			return s.Err()
		case h != nil && h.stopUnlessReverting():
			return s.awaitDone(ctx, h)
		case h != nil:
			// The successor died and this process is serving again: once
			// the revert is done, stop what it serves, as any running process.
			if err := awaitRevert(ctx, h.revertDone); err != nil {
				return err
			}
			s.mu.Lock()
			failed := s.handover == h // it could not serve again: the handover ends the process
			s.mu.Unlock()
			if failed {
				return s.awaitDone(ctx, h)
			}
			continue
		case reverting != nil && pending(reverting):
			// A revert between the handover's end and serving again, still
			// Draining: once it is done, stop what it serves.
			if err := awaitRevert(ctx, reverting); err != nil {
				return err
			}
			continue
		case st == StateDraining:
			return s.awaitDone(ctx, nil)
		}
		break
	}
	if pred != nil {
		pred.stop(ctx)
	}
	if ep != nil {
		_ = ep.close()
		s.mu.Lock()
		h = s.handover
		s.mu.Unlock()
		if ep.handedOff() || h != nil {
			// A successor acked just before the close: the handover is under
			// way, and the unix paths are the successor's now.
			if h != nil {
				h.stop(ctx)
			}
			return s.awaitDone(ctx, h)
		}
	}
	s.setState(StateDraining)
	s.stopFor(ctx)
	s.mu.Lock()
	set := s.listeners
	s.mu.Unlock()
	if set != nil {
		_ = set.RemoveUnixPaths()
	}
	s.finish(nil)
	return nil
}

// awaitDone waits for the process to be done (a handover's drain ends
// it), until ctx ends: then what the handover h still drains is cut, and
// Shutdown returns ctx's error without waiting further.
func (s *Server) awaitDone(ctx context.Context, h *handover) error {
	select {
	case <-s.done:
		return s.Err()
	case <-ctx.Done():
		if h != nil {
			h.cut()
		}
		return fmt.Errorf("server: shutdown: %w", ctx.Err())
	}
}

// stopFor stops accepting and closes every socket (nobody takes over: a new
// client is refused rather than queued), asks connections to finish, waits
// for them until ctx ends, then cuts what remains.
func (s *Server) stopFor(ctx context.Context) {
	s.mu.Lock()
	pl, set := s.plane, s.listeners
	s.mu.Unlock()
	if pl == nil {
		return
	}
	s.m.live.Set(0)
	for _, p := range pl.parts {
		if err := p.stopAccepting(); err != nil {
			s.log.WithError(err).Warn("stop")
		}
	}
	if set != nil {
		_ = set.CloseAll()
	}
	for _, p := range pl.parts {
		p.drain()
	}
	s.drainPlane(ctx, pl, nil, nil, nil)
}

// gracefulContext bounds ctx by graceful_timeout unless it has a deadline.
func (s *Server) gracefulContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.gracefulTimeout())
}

// awaitRevert waits until a revert is done (done closed) or ctx ends.
func awaitRevert(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server: shutdown: %w", ctx.Err())
	}
}

// pending reports a channel not closed yet.
func pending(c <-chan struct{}) bool {
	select {
	case <-c:
		return false
	default:
		return true
	}
}
