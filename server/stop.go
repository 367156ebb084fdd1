package server

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/service/stats"
)

// counterPushInterval is how often a draining process sends its successor
// what it counted since the last push.
const counterPushInterval = 250 * time.Millisecond

// serviceStopTimeout bounds how long, after the ack, a draining process waits
// for requests in flight on its service ports before it hands its counters
// over. A longer one (a CPU profile) goes on during the drain.
const serviceStopTimeout = time.Second

// reconfigHooks are what the reconfig server calls when a successor arrives.
func (s *Server) reconfigHooks() reconfig.ServerConfig {
	return reconfig.ServerConfig{
		HandoffTimeout: s.handoffTimeout(),
		Log:            s.opts.Log.WithField("component", "reconfig"),
		Export:         s.export,
		OnAck:          s.onAck,
		OnFail: func(newPID int, err error) {
			s.m.upgradesFailed.Inc()
		},
	}
}

// export is the manifest and the fds a successor receives: every listener
// this process serves, the counters, the generation.
func (s *Server) export() (reconfig.Manifest, []*os.File, error) {
	s.mu.Lock()
	set, gen, first := s.listeners, s.generation, s.firstStart
	s.mu.Unlock()
	specs, files, err := set.Export()
	if err != nil {
		return reconfig.Manifest{}, nil, err
	}
	m := reconfig.Manifest{
		Generation: uint64(gen),
		StartTime:  first,
		Counters:   s.reg.Counters(),
		// The drain after the ack lasts at most graceful_timeout.
		DrainTimeout: s.gracefulTimeout(),
	}
	s.mu.Lock()
	s.exportedCounters = m.Counters
	s.mu.Unlock()
	for _, sp := range specs {
		m.Entries = append(m.Entries, reconfig.FDEntry{Name: sp.Name, Kind: string(sp.Kind), Network: sp.Network, Address: sp.Address})
	}
	return m, files, nil
}

// onAck runs when a successor has acked: stop accepting everywhere, send the
// successor what was counted since the manifest (it waits for that before it
// serves the metrics port), then, in the background, move the connections
// the successor takes, drain the rest, and exit.
func (s *Server) onAck(newPID int) {
	log := s.log.WithFields(map[string]interface{}{"old_pid": s.opts.PID, "new_pid": newPID})
	log.Info("handoff: successor acked; stopping accepting and draining")
	s.setState(StateDraining)
	s.mu.Lock()
	base := s.exportedCounters
	rs := s.reconfigServer
	parts := append([]*part(nil), s.parts...)
	s.mu.Unlock()
	s.m.live.Set(0)
	for _, p := range parts {
		if err := p.stopAccepting(); err != nil {
			log.WithError(err).Warn("stop accepting")
		}
	}
	// The service ports finish what they are answering now (bounded), so that
	// nothing this process says about its counters comes after the delta
	// below: the successor serves /metrics only once it has that delta.
	sctx, scancel := context.WithTimeout(context.Background(), serviceStopTimeout)
	for _, p := range parts {
		if p.svc != nil {
			_ = p.wait(sctx)
		}
	}
	scancel()
	pusher := &counterPusher{reg: s.reg, rs: rs, base: base, log: log}
	pusher.push(true)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.gracefulTimeout())
		defer cancel()
		push := func() { pusher.push(false) }
		// Counters pushed after each batch include the migration counters
		// and everything the moved connections counted here.
		out := s.startMigration(rs, rs.MigrationTargets(), parts, log, push)
		s.drainParts(ctx, push, out.migrating)
		out.finish(log)
		pusher.push(false)
		if err := rs.Bye(); err != nil {
			log.WithError(err).Debug("goodbye to successor")
		}
		log.Info("handoff: drained; exiting")
		s.finish(nil)
	}()
}

// counterPusher sends the successor what this process counted since the
// last push. Safe for concurrent use.
type counterPusher struct {
	mu   sync.Mutex
	reg  *stats.Registry
	rs   *reconfig.Server
	base []stats.Sample // what the successor has already
	log  *logrus.Entry
}

// push sends the increments; with always, even when there are none.
func (c *counterPusher) push(always bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.reg.Counters()
	d := stats.Delta(c.base, now)
	if len(d) == 0 && !always {
		return
	}
	if err := c.rs.SendCounters(d); err != nil {
		c.log.WithError(err).Debug("push counters to successor")
		return
	}
	c.base = now
}

// Shutdown stops the process for good, with no successor: stop accepting,
// let connections finish within ctx (graceful_timeout when ctx has no
// deadline), then cut the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	if st := s.getState(); st == StateDraining || st == StateStopped {
		<-s.done
		return s.Err()
	}
	ctx, cancel := s.gracefulContext(ctx)
	defer cancel()
	s.setState(StateDraining)
	s.mu.Lock()
	rs := s.reconfigServer
	s.mu.Unlock()
	if rs != nil {
		rs.Close()
		if rs.HandedOff() {
			// A successor acked just before the close: the drain after the
			// ack is under way, and the unix paths are the successor's now.
			<-s.done
			return s.Err()
		}
	}
	s.drain(ctx, nil)
	s.mu.Lock()
	set := s.listeners
	s.mu.Unlock()
	if set != nil {
		set.RemoveUnixPaths()
	}
	s.finish(nil)
	return nil
}

// drain stops accepting everywhere, asks connections to finish, waits for them
// until ctx ends, then cuts what remains. tick, if set, runs periodically.
func (s *Server) drain(ctx context.Context, tick func()) {
	s.drainParts(ctx, tick, nil)
}

// drainParts is drain, except that the connections of parts for which
// migrating reports true are not asked to finish: they are moving to a
// successor, and the wait covers them as they go.
func (s *Server) drainParts(ctx context.Context, tick func(), migrating func(*part) bool) {
	s.mu.Lock()
	parts := append([]*part(nil), s.parts...)
	s.mu.Unlock()
	s.m.live.Set(0)
	for _, p := range parts {
		if err := p.stopAccepting(); err != nil {
			s.log.WithError(err).Warn("drain")
		}
		if migrating == nil || !migrating(p) {
			p.drain()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, p := range parts {
			if err := p.wait(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				s.log.WithError(err).WithField("listener", p.spec.Name).Warn("drain wait")
			}
		}
	}()
	t := time.NewTicker(counterPushInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			s.closeParts(parts)
			return
		case <-ctx.Done():
			left := 0
			for _, p := range parts {
				left += p.active()
			}
			s.log.WithField("connections", left).Warn("graceful timeout: closing what remains")
			s.closeParts(parts)
			<-done
			return
		case <-t.C:
			if tick != nil {
				tick()
			}
		}
	}
}

func (s *Server) closeParts(parts []*part) {
	for _, p := range parts {
		p.closeAll()
	}
	if s.clusters != nil {
		s.clusters.Close()
	}
}

// gracefulContext bounds ctx by graceful_timeout unless it has a deadline.
func (s *Server) gracefulContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.gracefulTimeout())
}
