package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/reconfig/envoy"
	"github.com/mosnlite/mosnlite/server/conntrack"
)

// envoyState is what a process started the Envoy way holds.
type envoyState struct {
	hr     *envoy.HotRestart // nil with --disable-hot-restart
	cancel context.CancelFunc
	// adminDup keeps the admin socket open between ShutdownAdmin and
	// ExportListeners, so that no connection is refused while the child takes
	// admin over.
	adminDup  *os.File
	adminSpec listener.Spec
}

// envoyNoImportGauges are gauges about one process only: a child never adds
// its parent's value (Envoy's rule for server.live and the like).
func envoyNoImportGauges() []string {
	return append(envoy.DefaultNoImportGauges(),
		"server.hot_restart_generation", "server.listeners_inherited",
		"server.last_handoff_duration_seconds")
}

// StartEnvoy brings the process up the Envoy way: epoch 0 starts fresh; epoch
// N takes admin over from epoch N−1, pulls its listening sockets, serves, tells
// it to drain, and terminates it after --parent-shutdown-time-s. The MOSN-style
// reconfig.sock is not used in this mode.
func (s *Server) StartEnvoy(ctx context.Context) (err error) {
	if s.opts.Envoy == nil {
		return errors.New("server: StartEnvoy without Envoy options")
	}
	o := s.opts.Envoy.Options
	began := s.clock()
	hctx, cancel := context.WithTimeout(ctx, s.handoffTimeout())
	defer cancel()
	runCtx, stop := context.WithCancel(context.Background())
	st := &envoyState{cancel: stop}
	s.mu.Lock()
	s.envoy = st
	s.generation = o.RestartEpoch + 1
	s.mu.Unlock()
	s.m.generation.Set(float64(o.RestartEpoch + 1))
	defer func() {
		if err != nil {
			stop()
			if st.hr != nil {
				_ = st.hr.Close()
			}
		}
	}()

	var inherited []listener.Inherited
	if !o.DisableHotRestart {
		hr, err := envoy.Open(hctx, envoy.Config{Options: o, Log: s.opts.Log.WithField("component", "hot_restart"), Pid: s.opts.PID})
		if err != nil {
			return fmt.Errorf("server: hot restart: %w", err)
		}
		st.hr = hr
		merger := envoy.NewStatMerger(envoyNoImportGauges(), []string{})
		s.reg.SetView(merger.Overlay)
		hr.AttachStats(merger, s.reg)
		if hr.HasParent() {
			if inherited, err = s.takeOverFromParent(hctx, hr); err != nil {
				return err
			}
		}
	}

	set := listener.NewSet(inherited, s.opts.Log.WithField("component", "listener"))
	clusters, parts, err := s.build()
	if err != nil {
		set.CloseAll()
		return err
	}
	s.mu.Lock()
	s.parts, s.listeners, s.clusters = parts, set, clusters
	s.mu.Unlock()
	clusters.Start(context.WithoutCancel(ctx))
	n := 0
	for _, p := range parts {
		ln, err := set.Open(p.spec)
		if err != nil {
			s.rollback(set)
			return fmt.Errorf("server: open %s: %w", p.spec, err)
		}
		p.ln = ln
		if ln.Inherited {
			n++
		}
		if p.spec.Name == ServiceAdmin && p.spec.Kind == listener.KindService {
			if err := o.WriteAdminAddress(ln.Spec.Address); err != nil {
				s.rollback(set)
				return fmt.Errorf("server: --admin-address-path: %w", err)
			}
		}
	}
	set.CloseUnclaimed()
	s.m.listenersInherited.Set(float64(n))
	// A child serves its proxies at once; its service ports only once the
	// parent has stopped serving its own and the parent's counters are in
	// (below), so that no scrape sees a counter go backwards.
	hasParent := st.hr != nil && st.hr.HasParent()
	s.serveParts(func(p *part) bool { return p.proxy != nil || !hasParent })
	s.m.live.Set(1)

	if hr := st.hr; hr != nil {
		go func() {
			if err := hr.Serve(s.envoyHooks()); err != nil {
				s.log.WithError(err).Warn("hot restart: parent socket stopped")
			}
		}()
		// Tells the parent to drain, and marks this epoch initialized.
		if err := hr.DrainParentListeners(hctx); err != nil {
			s.log.WithError(err).Warn("hot restart: drain parent listeners")
		}
		if hasParent {
			if err := hr.SyncParentStats(hctx); err != nil {
				s.log.WithError(err).Warn("hot restart: parent stats after drain")
			}
			s.serveParts(func(p *part) bool { return p.svc != nil })
			go hr.RunStatsSync(runCtx, time.Second)
			go func() {
				if err := hr.TerminateParentAfter(runCtx, o.ParentShutdownTime); err != nil && !errors.Is(err, context.Canceled) {
					s.log.WithError(err).Warn("hot restart: terminate parent")
				}
				s.mu.Lock()
				s.drainingPID = 0
				s.mu.Unlock()
			}()
		}
	}
	s.m.lastHandoffSeconds.Set(s.clock().Sub(began).Seconds())
	s.setState(StateRunning)
	s.log.WithFields(map[string]interface{}{"generation": o.RestartEpoch + 1, "restart_epoch": o.RestartEpoch}).Info("ready")
	return nil
}

// takeOverFromParent runs the child's side of Envoy's hot restart up to
// having the parent's sockets: admin first, then every listener, then stats.
func (s *Server) takeOverFromParent(ctx context.Context, hr *envoy.HotRestart) ([]listener.Inherited, error) {
	log := s.log.WithFields(map[string]interface{}{"parent_pid": hr.ParentPID(), "epoch": hr.Epoch()})
	first, err := hr.ShutdownParentAdmin(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: hot restart: shut down parent admin: %w", err)
	}
	socks, err := hr.PassListenSockets(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: hot restart: pass listen sockets: %w", err)
	}
	var inh []listener.Inherited
	for _, ls := range socks {
		inh = append(inh, listener.Inherited{
			Spec: listener.Spec{Name: ls.Name, Kind: listener.Kind(ls.Kind), Network: ls.Network, Address: ls.Address},
			File: ls.File,
		})
	}
	if err := hr.SyncParentStats(ctx); err != nil {
		log.WithError(err).Warn("hot restart: parent stats")
	}
	s.mu.Lock()
	if !first.IsZero() {
		s.firstStart = first
	}
	s.drainingPID = hr.ParentPID()
	s.mu.Unlock()
	log.WithField("listeners", len(inh)).Info("hot restart: took the parent's listeners")
	return inh, nil
}

// envoyHooks answer this process's own child (the next epoch).
func (s *Server) envoyHooks() envoy.ParentHooks {
	return envoy.ParentHooks{
		ShutdownAdmin:   s.envoyShutdownAdmin,
		ExportListeners: s.envoyExport,
		Stats:           s.reg.Exposed,
		Drain: func() {
			s.envoyStopServices()
			go s.envoyDrain()
		},
		Terminate: s.envoyTerminate,
	}
}

// envoyShutdownAdmin stops serving admin; the socket stays open (a dup) until
// the child has received it, so no connection is refused in between.
func (s *Server) envoyShutdownAdmin() time.Time {
	s.mu.Lock()
	set, parts, st, first := s.listeners, s.parts, s.envoy, s.firstStart
	s.mu.Unlock()
	specs, files, err := set.Export()
	if err != nil {
		s.log.WithError(err).Warn("hot restart: keep admin socket")
	}
	for i, f := range files {
		if specs[i].Name == ServiceAdmin && specs[i].Kind == listener.KindService && st.adminDup == nil {
			st.adminDup, st.adminSpec = f, specs[i]
			continue
		}
		f.Close()
	}
	for _, p := range parts {
		if p.svc != nil && p.spec.Name == ServiceAdmin {
			_ = p.stopAccepting()
			ctx, cancel := context.WithTimeout(context.Background(), serviceStopTimeout)
			_ = p.wait(ctx)
			cancel()
		}
	}
	s.log.Info("hot restart: admin handed to the child")
	return first
}

// envoyExport gives the child every listening socket, admin included.
func (s *Server) envoyExport() ([]envoy.ListenSocket, error) {
	s.mu.Lock()
	set, st := s.listeners, s.envoy
	s.mu.Unlock()
	specs, files, err := set.Export()
	if err != nil {
		return nil, err
	}
	var out []envoy.ListenSocket
	for i, sp := range specs {
		out = append(out, envoy.ListenSocket{Name: sp.Name, Kind: string(sp.Kind), Network: sp.Network, Address: sp.Address, File: files[i]})
	}
	if st.adminDup != nil {
		sp := st.adminSpec
		out = append(out, envoy.ListenSocket{Name: sp.Name, Kind: string(sp.Kind), Network: sp.Network, Address: sp.Address, File: st.adminDup})
		st.adminDup = nil // the Parent closes it after sending
	}
	return out, nil
}

// envoyStopServices is the first step of a parent's drain: its service ports
// finish what they answer now (bounded) and stop, before the child serves its
// own with the parent's final counters.
func (s *Server) envoyStopServices() {
	s.mu.Lock()
	parts := append([]*part(nil), s.parts...)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), serviceStopTimeout)
	defer cancel()
	for _, p := range parts {
		if p.svc != nil {
			_ = p.stopAccepting()
			_ = p.wait(ctx)
		}
	}
}

// envoyDrain stops accepting and drains over --drain-time-s: immediate asks
// every HTTP connection to close at its next request boundary at once;
// gradual asks each with a probability growing linearly over the drain
// time, as Envoy does. TCP sessions run on until the child terminates us.
func (s *Server) envoyDrain() {
	o := s.opts.Envoy.Options
	s.setState(StateDraining)
	s.m.live.Set(0)
	s.mu.Lock()
	parts := append([]*part(nil), s.parts...)
	s.mu.Unlock()
	for _, p := range parts {
		_ = p.stopAccepting()
	}
	sched := envoy.NewDrainSchedule(s.clock(), o)
	tick := max(sched.Duration/20, 100*time.Millisecond)
	asked := map[conntrack.Conn]bool{}
	for {
		now := s.clock()
		if !now.Before(sched.Deadline()) || o.DrainStrategy == envoy.DrainImmediate {
			for _, p := range parts {
				p.drain()
			}
			return
		}
		for _, p := range parts {
			tr, ok := p.proxy.(interface{ Tracker() *conntrack.Tracker })
			if !ok {
				continue
			}
			tr.Tracker().Range(func(c conntrack.Conn, _ conntrack.State) bool {
				if !asked[c] && sched.ShouldClose(now, rand.Uint64()) {
					asked[c] = true
					c.Drain()
				}
				return true
			})
		}
		select {
		case <-time.After(tick):
		case <-s.done:
			return
		}
	}
}

// envoyTerminate is the child's order to go: cut everything and stop.
func (s *Server) envoyTerminate() {
	s.log.Info("hot restart: terminated by the child")
	s.mu.Lock()
	parts, st := append([]*part(nil), s.parts...), s.envoy
	s.mu.Unlock()
	for _, p := range parts {
		_ = p.stopAccepting()
	}
	s.closeParts(parts)
	s.m.live.Set(0)
	st.cancel()
	s.finish(nil)
}

// ShutdownEnvoy stops an Envoy-mode process for good (SIGTERM): it terminates
// a parent that still lives, then stops gracefully like Shutdown.
func (s *Server) ShutdownEnvoy(ctx context.Context) error {
	s.mu.Lock()
	st := s.envoy
	s.mu.Unlock()
	if s.getState() == StateDraining {
		// A parent that drains for its child: finish within graceful_timeout
		// instead of waiting for the child to terminate us.
		ctx, cancel := s.gracefulContext(ctx)
		defer cancel()
		s.drain(ctx, nil)
		if st != nil {
			st.cancel()
			if st.hr != nil {
				_ = st.hr.Close()
			}
		}
		s.finish(nil)
		return nil
	}
	if st != nil && st.hr != nil && st.hr.HasParent() {
		tctx, cancel := context.WithTimeout(ctx, s.handoffTimeout())
		if err := st.hr.TerminateParent(tctx); err != nil {
			s.log.WithError(err).Warn("hot restart: terminate parent on shutdown")
		}
		cancel()
	}
	err := s.Shutdown(ctx)
	if st != nil {
		st.cancel()
		if st.hr != nil {
			_ = st.hr.Close()
		}
	}
	return err
}
