package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/reconfig/wire"
	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// counterPushInterval is how often a draining process sends its successor
// what it counted since the last push.
const counterPushInterval = 250 * time.Millisecond

// serviceStopTimeout bounds how long, after the ack, a draining process waits
// for requests in flight on its service ports before it hands its counters
// over. A longer one (a CPU profile) goes on during the drain.
const serviceStopTimeout = time.Second

// successorHooks are what the style calls when a successor arrives.
func (s *Server) successorHooks() successorHooks {
	return successorHooks{
		export: func(send func([]ident.Spec, []int) error) error {
			s.mu.Lock()
			set := s.listeners
			s.mu.Unlock()
			return set.Export(send)
		},
		manifest: s.manifest,
		sent:     s.manifestSent,
		freeze:   func() { s.reg.Freeze() },
		onAck:    s.onAck,
		onFail: func(pid int, err error) {
			s.m.upgradesFailed.Inc()
			if f := s.opts.Events.OnUpgradeFailed; f != nil {
				f(pid, err)
			}
		},
		onRequest: func(pid int) error {
			if f := s.opts.Events.OnUpgradeRequested; f != nil {
				return f(pid)
			}
			return nil
		},
		pauseAdmin: s.pauseAdmin,
		stats:      s.reg.Unfrozen,
		histograms: s.reg.Histograms,
		ticketKeys: s.ticketKeys,
		terminate:  s.terminate,
	}
}

// manifest is what a successor inherits besides the sockets: the counters,
// and the histograms that have observations.
func (s *Server) manifest() lineage {
	c := s.reg.Counters()
	var hs []histsample.Histogram
	for _, h := range s.reg.Histograms() {
		if h.Count > 0 {
			hs = append(hs, h)
		}
	}
	var env map[string]string
	if s.opts.Carry != nil {
		env = s.opts.Carry()
	}
	keys := s.ticketKeys()
	s.mu.Lock()
	defer s.mu.Unlock()
	return lineage{
		generation: s.generation, firstStart: s.firstStart, counters: c, histograms: hs,
		// The drain after the ack lasts at most graceful_timeout.
		drainBound: s.gracefulTimeout(), env: env, ticketKeys: keys,
	}
}

// manifestSent remembers what a successor was sent in its manifest: the
// base of what we push it after its ack.
func (s *Server) manifestSent(lin lineage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exported, s.exportedHists = lin.counters, lin.histograms
}

// handover is the old side of one handover to a successor, from its ack to
// this process's exit (or, if the successor died within the watch period,
// to this process serving again).
type handover struct {
	s    *Server
	succ successor
	pol  handoverPolicy
	pl   *plane // the plane handed over
	log  *logrus.Entry
	// acked is when the successor acked (the start of the migration).
	acked time.Time

	stopOnce sync.Once
	stopped  chan struct{} // Shutdown or terminate: finish, no watch
	watched  chan struct{} // the watch is over
	// base is what the drain's bounds derive from: cut ends it (a
	// Shutdown whose context ended), and what is left is closed at once.
	base context.Context
	cut  context.CancelFunc
	// revertDone is closed once a revert has run (served again, or failed to).
	revertDone chan struct{}
	mu         sync.Mutex
	reverting  bool // a revert has begun: a stop no longer ends the process
	reverted   bool // it serves again
}

// onAck runs when a successor serves: stop accepting everywhere (the sockets
// stay open, paused, for the watch), let the service ports finish what they
// answer, send the successor what was counted since the manifest (it waits
// for that before it serves its own service ports), then, in the
// background, move the connections the successor takes, drain the rest,
// watch the successor, and exit.
func (s *Server) onAck(succ successor) {
	log := s.log.WithFields(map[string]interface{}{"old_pid": s.opts.PID, "new_pid": wire.PIDLabel(succ.PID(), succ.ReportedPID())})
	log.Info("handoff: successor acked; stopping accepting and draining")
	if f := s.opts.Events.OnSuccessorTookOver; f != nil {
		f(succ.PID())
	}
	s.setState(StateDraining)
	s.mu.Lock()
	pl, base, baseHists, pred := s.plane, s.exported, s.exportedHists, s.pred
	h := &handover{s: s, succ: succ, pol: s.style.policy(), pl: pl, log: log, acked: s.fx.now(),
		stopped: make(chan struct{}), watched: make(chan struct{}), revertDone: make(chan struct{})}
	h.base, h.cut = context.WithCancel(context.Background())
	s.handover = h
	s.mu.Unlock()
	if pred != nil {
		// From now on our successor, not our predecessor, takes over if we die.
		pred.stop(context.Background())
	}
	s.m.live.Set(0)
	for _, p := range pl.parts {
		if err := p.stopAccepting(); err != nil {
			log.WithError(err).Warn("stop accepting")
		}
	}
	closeDropped(pl, succ.Dropped(), log)
	// From now on our own service ports, finishing what they answer, show
	// our counters and histograms frozen at what the successor gets (pushed
	// now, or pulled by an Envoy child, whose drain request froze them
	// already): no scrape sees one go backwards.
	snap, snapHists := s.reg.Freeze()
	push := func() {}
	if h.pol.pushCounters {
		// The successor serves its service ports once it has what we counted
		// since the manifest: its admin, pprof and metrics do not wait for
		// our in-flight requests.
		pusher := &counterPusher{reg: s.reg, succ: succ, base: base, baseHists: baseHists, log: log}
		pusher.pushAt(snap, snapHists, true)
		push = func() { pusher.push(false) }
	} else {
		// An Envoy child pulls our stats after the drain request: our service
		// ports finish what they answer first (bounded).
		h.stopServices()
	}
	go h.run(push)
}

// closeDropped closes, at the ack, the sockets the successor does not serve
// (its config has them no more): their clients are refused at once rather
// than queued, unanswered, until this process exits. A revert binds them
// afresh.
func closeDropped(pl *plane, dropped []ident.Spec, log *logrus.Entry) {
	if len(dropped) == 0 {
		return
	}
	gone := make(map[ident.Spec]bool, len(dropped))
	for _, d := range dropped {
		gone[d] = true
	}
	for _, p := range pl.parts {
		if p.ln == nil || !gone[p.ln.Spec] {
			continue
		}
		if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			log.WithError(err).WithField("listener", p.ln.Spec.String()).Warn("close a listener the successor dropped")
			continue
		}
		log.WithField("listener", p.ln.Spec.String()).Info("handoff: listener dropped by the successor's config: closed")
	}
}

// stopServices lets the service ports finish what they answer (bounded by
// serviceStopTimeout); a longer request (a CPU profile) goes on in the drain.
func (h *handover) stopServices() {
	ctx, cancel := context.WithTimeout(context.Background(), serviceStopTimeout)
	defer cancel()
	for _, p := range h.pl.parts {
		if p.svc != nil {
			_ = p.wait(ctx)
		}
	}
}

// run moves and drains the handed-over plane, watches the successor, and
// ends the process (or, after a revert, only the old plane).
func (h *handover) run(push func()) {
	s, log := h.s, h.log
	if h.pol.watch > 0 && h.succ.Watchable() {
		go h.watch()
	} else {
		close(h.watched)
	}
	ask, cut, cancel := h.contexts()
	defer cancel()
	// Counters pushed after each batch include the migration counters and
	// everything the moved connections counted here.
	out := s.startMigration(h.succ, h.succ.MigrationTargets(), h.pl.parts, log, push)
	migrated := make(chan struct{})
	go h.migrationOver(out, cut, push, migrated)
	// What does not move is asked to finish: at once, or gradually.
	var rest []*part
	for _, p := range h.pl.parts {
		if !out.migrating(p) {
			rest = append(rest, p)
		}
	}
	if h.pol.gradual {
		go s.drainGradually(ask, rest, h.pol.drainTime)
	} else {
		for _, p := range rest {
			p.drain()
		}
	}
	if h.pol.exitWhenDrained {
		ask = nil // what does not move was asked above; at the bound it is cut
	}
	s.drainPlane(cut, h.pl, push, out.migrating, ask)
	out.finish(log)
	<-migrated
	push()
	if err := h.succ.Bye(); err != nil {
		log.WithError(err).Debug("goodbye to successor")
	}
	if !h.pol.exitWhenDrained {
		<-h.stopped // an Envoy parent lives until its child terminates it
	}
	<-h.watched
	h.mu.Lock()
	reverted := h.reverted
	h.mu.Unlock()
	_ = h.succ.Close()
	if reverted {
		log.Info("handoff: the old plane has drained")
		return
	}
	s.mu.Lock()
	set := s.listeners
	s.mu.Unlock()
	_ = set.CloseAll() // our copies; the successor holds its own
	log.Info("handoff: drained; exiting")
	s.finish(nil)
}

// migrationOver waits until the listeners whose connections move hold
// none (each moved, or finished here) or cut ends, then records how long
// the migration took (from the ack to the last batch answered), pushes the
// counters that include it and tells the successor. Nothing when no
// listener's connections move. It closes done.
func (h *handover) migrationOver(out *outbound, cut context.Context, push func(), done chan<- struct{}) {
	defer close(done)
	if len(out.parts) == 0 {
		return
	}
	for _, p := range out.parts {
		_ = p.wait(cut)
	}
	end, moved, failed := out.settled()
	if end.IsZero() {
		end = h.s.fx.now() // nothing was offered: it took until the listeners were empty
	}
	d := max(end.Sub(h.acked), 0)
	h.s.m.upgrade.Migration(d)
	push()
	if err := h.succ.MigrationDone(reconfig.MigrationDone{Moved: moved, Failed: failed, Duration: d}); err != nil {
		h.log.WithError(err).Debug("tell the successor the migration is over")
	}
	h.log.WithFields(logrus.Fields{"moved": moved, "failed": failed, "migration_seconds": d.Seconds()}).Info("handoff: connection migration over")
}

// contexts are the drain's two bounds. MOSN: what does not move finishes
// within graceful_timeout, then is cut. Envoy: the parent drains until it is
// terminated (ask ends), then what is left closes at request boundaries
// within graceful_timeout (cut ends). A Shutdown ends ask at once.
func (h *handover) contexts() (ask, cut context.Context, cancel func()) {
	g := h.s.gracefulTimeout()
	if h.pol.exitWhenDrained {
		c, cancel := context.WithTimeout(h.base, g)
		return c, c, cancel
	}
	askCtx, askCancel := context.WithCancel(h.base)
	cutCtx, cutCancel := context.WithCancel(h.base)
	go func() {
		select {
		case <-h.stopped:
		case <-cutCtx.Done():
			return
		}
		askCancel()
		select {
		case <-h.s.fx.after(g):
		case <-cutCtx.Done():
		}
		cutCancel()
	}()
	return askCtx, cutCtx, func() { askCancel(); cutCancel() }
}

// stop ends the handover early (Shutdown, or an Envoy parent terminated):
// no more watch, and an Envoy parent closes what is left.
func (h *handover) stop(context.Context) {
	h.stopOnce.Do(func() { close(h.stopped) })
}

// stopUnlessReverting stops the handover (see stop) and reports true,
// unless a revert has begun: then the process serves again, and what stops
// it is the ordinary shutdown of what the revert serves (wait for
// revertDone).
func (h *handover) stopUnlessReverting() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reverting {
		return false
	}
	h.stop(context.Background())
	return true
}

// watch keeps the sockets for the watch period: if the successor dies in it
// without having released us, this process serves again.
func (h *handover) watch() {
	defer close(h.watched)
	timer := h.s.fx.after(h.pol.watch)
	select {
	case <-h.succ.Gone():
		select {
		case <-h.succ.Released():
			return // it released us, then closed: an exit on purpose
		case <-h.stopped:
			return
		default:
		}
		h.revert()
	case <-h.succ.Released():
	case <-timer:
	case <-h.stopped:
	}
}

// revert serves again after the successor died: a new plane on the very
// sockets (paused since the ack), the service ports too, and reconfig.sock
// taken back. Connections that had moved died with the successor; the old
// plane's go on draining.
func (h *handover) revert() {
	s := h.s
	defer close(h.revertDone)
	h.mu.Lock()
	select {
	case <-h.stopped: // a Shutdown came first: it ends the process
		h.mu.Unlock()
		return
	default:
	}
	h.reverting = true
	h.mu.Unlock()
	h.log.Warn("successor died after the ack; serving again")
	s.m.upgradesReverted.Inc()
	npl, err := s.build()
	if err != nil {
		h.log.WithError(err).Error("cannot serve again; exiting after the drain")
		return
	}
	old := map[ident.Spec]*part{}
	for _, p := range h.pl.parts {
		old[ident.Spec{Name: p.spec.Name, Kind: p.spec.Kind}] = p
	}
	for _, p := range npl.parts {
		op := old[ident.Spec{Name: p.spec.Name, Kind: p.spec.Kind}]
		if op == nil || op.ln == nil {
			h.log.WithField("listener", p.spec.String()).Error("no socket to serve again")
			continue
		}
		if op.ln.Closed() {
			// Dropped by the dead successor's config and closed at the ack:
			// bound afresh (nobody else serves it).
			if err := p.rebind(s, op); err != nil {
				h.log.WithError(err).WithField("listener", p.spec.String()).Error("cannot serve again")
				p.ln = nil
			}
			continue
		}
		if err := p.takeOver(op); err != nil {
			h.log.WithError(err).WithField("listener", p.spec.String()).Error("cannot serve again")
			p.ln = nil
		}
	}
	npl.clusters.Start(context.Background())
	h.mu.Lock()
	h.reverted = true
	h.mu.Unlock()
	s.mu.Lock()
	s.plane = npl
	s.handover = nil
	s.reverting = h.revertDone
	s.mu.Unlock()
	s.reg.Unfreeze() // ours to show again
	s.serveParts(func(p *part) bool { return p.ln != nil })
	s.m.live.Set(1)
	s.setState(StateRunning)
	if h.pol.reclaim != nil {
		ep, err := h.reclaim()
		if err != nil {
			h.log.WithError(err).Error("cannot take reconfig.sock back: this process cannot be upgraded")
		} else {
			h.log.Info("took reconfig.sock back: upgradable again")
		}
		s.mu.Lock()
		s.endpoint = ep
		s.mu.Unlock()
	}
	if f := s.opts.Events.OnServingAgain; f != nil {
		f(h.succ.PID())
	}
}

// Reclaim attempts after a revert: at most reclaimAttempts, the pause
// between two doubling from reclaimBackoff.
const (
	reclaimAttempts = 5
	reclaimBackoff  = 100 * time.Millisecond
)

// reclaim makes this process reachable again after a revert, retrying a
// failed attempt (a transient error: the upgrade lock held past an attempt's
// bound, a bind that failed) a bounded number of times with backoff. It
// returns the last error.
func (h *handover) reclaim() (endpoint, error) {
	s := h.s
	backoff := reclaimBackoff
	var err error
	for i := 1; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.handoffTimeout())
		var ep endpoint
		ep, err = h.pol.reclaim(ctx, s.successorHooks())
		cancel()
		if err == nil {
			return ep, nil
		}
		if i == reclaimAttempts {
			return nil, fmt.Errorf("server: reclaim reconfig.sock: %d attempts: %w", i, err)
		}
		h.log.WithError(err).WithField("attempt", i).Warn("cannot take reconfig.sock back yet; retrying")
		<-s.fx.after(backoff)
		backoff *= 2
	}
}

// pauseAdmin is an Envoy child's first request: stop serving admin (the
// socket stays open, paused, and goes to the child with the others), let
// what it answers finish, and return the first start of the lineage.
func (s *Server) pauseAdmin() time.Time {
	for _, p := range s.parts() {
		if p.svc != nil && p.spec.Name == ServiceAdmin {
			_ = p.stopAccepting()
			ctx, cancel := context.WithTimeout(context.Background(), serviceStopTimeout)
			_ = p.wait(ctx)
			cancel()
		}
	}
	s.log.Info("hot restart: admin handed to the child")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstStart
}

// terminate is an Envoy child's order to go: what is left closes at request
// boundaries (bounded by graceful_timeout), then the process exits.
func (s *Server) terminate() {
	s.log.Info("hot restart: terminated by the child")
	s.mu.Lock()
	h := s.handover
	s.mu.Unlock()
	if h != nil {
		h.stop(context.Background())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.gracefulTimeout())
	defer cancel()
	s.setState(StateDraining)
	s.stopFor(ctx)
	s.finish(nil)
}

// counterPusher sends the successor what this process counted since the
// last push: counter and histogram increments. Safe for concurrent use.
type counterPusher struct {
	mu        sync.Mutex
	reg       *stats.Registry
	succ      successor
	base      []sample.Sample        // what the successor has already
	baseHists []histsample.Histogram // likewise
	log       *logrus.Entry
}

// push sends the increments; with always, even when there are none.
func (c *counterPusher) push(always bool) {
	c.pushAt(c.reg.Counters(), c.reg.Histograms(), always)
}

// pushAt sends the increments up to the counters and histograms now.
func (c *counterPusher) pushAt(now []sample.Sample, nowHists []histsample.Histogram, always bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := reconfig.Counts{Counters: sample.Delta(c.base, now), Histograms: histsample.Delta(c.baseHists, nowHists)}
	if len(d.Counters) == 0 && len(d.Histograms) == 0 && !always {
		return
	}
	if err := c.succ.SendCounters(d); err != nil {
		c.log.WithError(err).Debug("push counters to successor")
		return
	}
	c.base, c.baseHists = now, nowHists
}
