package server

import (
	"context"
	"sync/atomic"

	"errors"
	"fmt"
	"github.com/sirupsen/logrus"
	"time"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/reconfig/envoy"
)

// EnvoyOptions are the Envoy hot-restart settings a process runs with.
type EnvoyOptions struct {
	envoy.Options
}

// HotRestartVersion implements service.Info: the hot-restart compatibility
// string, "disabled" when hot restart is off.
func (s *Server) HotRestartVersion() string {
	if s.opts.Envoy == nil {
		return envoy.Version(false)
	}
	return envoy.Version(s.opts.Envoy.DisableHotRestart)
}

// envoyStatsInterval is how often a child pulls its parent's stats.
const envoyStatsInterval = time.Second

// envoyNoImportGauges are gauges about one process only: a child never adds
// its parent's value (Envoy's rule for server.live and the like).
func envoyNoImportGauges() []string {
	return append(envoy.DefaultNoImportGauges(),
		"server.hot_restart_generation", "server.listeners_inherited",
		"server.last_handoff_duration_seconds")
}

// envoyStyle is Envoy's hot restart by epochs (package reconfig/envoy):
// epoch N takes admin over from N−1, pulls its listening sockets, serves,
// tells it to drain (moving its connections here over the drain stream),
// and terminates it after --parent-shutdown-time-s. The MOSN-style
// reconfig.sock is not used in this mode.
type envoyStyle struct {
	s  *Server
	o  envoy.Options
	hr *envoy.HotRestart // nil with --disable-hot-restart; set by begin
}

func newEnvoyStyle(s *Server) handoffStyle { return &envoyStyle{s: s, o: s.opts.Envoy.Options} }

func (e *envoyStyle) begin(ctx context.Context) (lineage, predecessor, error) {
	lin := lineage{generation: e.o.RestartEpoch + 1}
	if e.o.DisableHotRestart {
		return lin, nil, nil
	}
	hr, err := envoy.Open(ctx, envoy.Config{Options: e.o, Log: e.s.opts.Log.WithField("component", "hot_restart")})
	if err != nil {
		return lineage{}, nil, fmt.Errorf("hot restart: %w", err)
	}
	merger := envoy.NewStatMerger(envoyNoImportGauges(), []string{})
	e.s.reg.SetView(merger.Overlay)
	hr.AttachStats(merger, e.s.reg)
	e.hr = hr
	if !hr.HasParent() {
		return lin, nil, nil
	}
	p := &envoyPredecessor{hr: hr, o: e.o, alive: e.s.fx.alive, log: e.s.log.WithFields(map[string]interface{}{"parent_pid": hr.ParentPID(), "epoch": hr.Epoch()})}
	first, err := hr.ShutdownParentAdmin(ctx)
	if err != nil {
		p.fail(err)
		return lineage{}, nil, fmt.Errorf("hot restart: shut down parent admin: %w", err)
	}
	socks, err := hr.PassListenSockets(ctx)
	if err != nil {
		p.fail(err)
		return lineage{}, nil, fmt.Errorf("hot restart: pass listen sockets: %w", err)
	}
	if err := hr.SyncParentStats(ctx); err != nil {
		p.log.WithError(err).Warn("hot restart: parent stats")
	}
	p.socks = socks
	lin.ticketKeys = ticketKeysFromWire(hr.SessionTicketKeys())
	lin.firstStart, lin.drainingPID = first, hr.ParentPID()
	lin.drainBound = e.o.ParentShutdownTime
	p.log.WithField("listeners", len(socks)).Info("hot restart: took the parent's listeners")
	return lin, p, nil
}

func (e *envoyStyle) opened(specs []ident.Spec) error {
	for _, sp := range specs {
		if sp.Name == ServiceAdmin && sp.Kind == ident.KindService {
			if err := e.o.WriteAdminAddress(sp.Address); err != nil {
				return fmt.Errorf("--admin-address-path: %w", err)
			}
		}
	}
	return nil
}

func (e *envoyStyle) listen(h successorHooks) (endpoint, error) {
	if e.hr == nil {
		return envoyEndpoint{}, nil
	}
	if !e.hr.HasParent() {
		// Epoch 0 (or a parent lost): initialized now, the next epoch may start.
		if _, err := e.hr.DrainParentListeners(context.Background(), nil, nil); err != nil {
			e.s.log.WithError(err).Warn("hot restart: mark initialized")
		}
	}
	hr := e.hr
	ep := envoyEndpoint{hr: hr, drained: new(atomic.Bool)}
	go func() {
		err := hr.Serve(envoy.ParentHooks{
			ShutdownAdmin:   h.pauseAdmin,
			ExportListeners: h.export,
			SessionTicketKeys: func() []reconfig.SessionTicketKey {
				return ticketKeysToWire(h.ticketKeys())
			},
			Stats:      h.stats,
			Histograms: h.histograms,
			Drain: func(succ *reconfig.Successor) {
				// Before the reply: the child's next stats pull shows at
				// least what our service ports show from now on, and the
				// handover is under way (handedOff, Server.handover) by
				// the time the child hears of it: a stop after it finds
				// the handover, not a process that serves.
				h.freeze()
				ep.drained.Store(true)
				if succ == nil {
					h.onAck(noSuccessor{})
					return
				}
				h.onAck(succ)
			},
			Terminate: h.terminate,
		})
		if err != nil {
			e.s.log.WithError(err).Warn("hot restart: parent socket stopped")
		}
	}()
	return ep, nil
}

func (e *envoyStyle) policy() handoverPolicy {
	return handoverPolicy{
		drainTime: e.o.DrainTime,
		gradual:   e.o.DrainStrategy == envoy.DrainGradual && e.o.DrainTime > 0,
	}
}

// envoyPredecessor is the parent epoch.
type envoyPredecessor struct {
	hr       *envoy.HotRestart
	o        envoy.Options
	alive    func(pid int) bool
	log      *logrus.Entry
	socks    []ident.Socket
	follower *reconfig.Follower
}

func (p *envoyPredecessor) pid() int      { return p.hr.ParentPID() }
func (p *envoyPredecessor) pidLabel() any { return p.hr.ParentPID() }

// gone: the parent's pid, from its socket, in our PID namespace (Envoy's
// epochs run under one wrapper, so they share it).
func (p *envoyPredecessor) gone() bool              { return !p.alive(p.hr.ParentPID()) }
func (p *envoyPredecessor) sockets() []ident.Socket { return p.socks }

func (p *envoyPredecessor) closeSockets() {
	for _, s := range p.socks {
		s.File.Close()
	}
	p.socks = nil
}

// dropListeners: an Envoy parent closes every socket once terminated; the
// drain request carries no list.
func (*envoyPredecessor) dropListeners([]ident.Spec) {}

func (p *envoyPredecessor) ack(ctx context.Context, targets []reconfig.MigrationTarget, h reconfig.ConnHandler) error {
	p.closeSockets()
	if len(targets) == 0 {
		h = nil
	}
	f, err := p.hr.DrainParentListeners(ctx, targets, h)
	if err != nil {
		return err
	}
	p.follower = f
	return nil
}

func (p *envoyPredecessor) fail(error) {
	p.closeSockets()
	_ = p.hr.Close()
}

func (p *envoyPredecessor) orphan() { p.closeSockets() }

// follow pulls the parent's stats (the first pull after the drain request
// says its service ports have stopped), moves in what the parent hands over
// on the drain stream, and terminates the parent after
// --parent-shutdown-time-s, as Envoy does.
func (p *envoyPredecessor) follow(ctx context.Context, h followHooks) error {
	if err := p.hr.SyncParentStats(ctx); err != nil {
		p.log.WithError(err).Warn("hot restart: parent stats after drain")
	}
	h.counts(reconfig.Counts{}) // the stats merger added them to the registry itself
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go p.hr.RunStatsSync(runCtx, envoyStatsInterval)
	streamDone := make(chan struct{})
	if p.follower != nil {
		go func() {
			defer close(streamDone)
			if err := p.follower.Follow(runCtx, reconfig.FollowHooks{Migrated: h.migrated}); err != nil && !errors.Is(err, context.Canceled) {
				p.log.WithError(err).Warn("hot restart: drain stream")
			}
		}()
	} else {
		close(streamDone)
	}
	err := p.hr.TerminateParentAfter(runCtx, p.o.ParentShutdownTime)
	h.gone()
	cancel()
	<-streamDone
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// stop terminates a parent that still lives: this process stops for good,
// or hands over to its own child, which makes the parent one too many.
func (p *envoyPredecessor) stop(ctx context.Context) {
	if !p.hr.HasParent() {
		return
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), envoy.DefaultRequestTimeout)
	defer cancel()
	if err := p.hr.TerminateParent(tctx); err != nil {
		p.log.WithError(err).Warn("hot restart: terminate parent")
	}
}

// envoyEndpoint is this process's parent-role epoch socket.
type envoyEndpoint struct {
	hr      *envoy.HotRestart
	drained *atomic.Bool // a child asked us to drain: the handover is under way
}

func (e envoyEndpoint) close() error {
	if e.hr == nil {
		return nil
	}
	return e.hr.Close()
}

func (e envoyEndpoint) handedOff() bool { return e.drained != nil && e.drained.Load() }
