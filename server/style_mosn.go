package server

import (
	"context"
	"errors"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/reconfig/wire"
)

// mosnStyle is the MOSN-style handoff: reconfig.sock and listen.sock in
// uds_dir (package reconfig).
type mosnStyle struct {
	s  *Server
	up *reconfig.Upgrade // from begin: the start, fresh or not
	// frameLimit, if set, lowers the manifest's and the counters frames'
	// limits (tests).
	frameLimit int
}

func newMOSNStyle(s *Server) handoffStyle { return &mosnStyle{s: s} }

func (m *mosnStyle) begin(ctx context.Context) (lineage, predecessor, error) {
	up, err := reconfig.Begin(ctx, m.s.udsDir, m.s.opts.Log.WithField("component", "reconfig"))
	if err != nil {
		return lineage{}, nil, err
	}
	m.up = up
	if up.Fresh() {
		return lineage{generation: 1}, nil, nil
	}
	mf := up.Manifest()
	lin := lineage{
		generation: int(mf.Generation) + 1, firstStart: mf.StartTime, counters: mf.Counters,
		histograms: mf.Histograms,
		drainBound: mf.DrainTimeout, ackBy: up.AckBy(), drainingPID: mf.PID,
		// The kernel names a process of another PID namespace 0: the pid
		// shown is then the one it reports there.
		drainingElsewhere: up.OldPID() == 0 && mf.PID > 0, env: mf.Env,
		ticketKeys: ticketKeysFromWire(mf.SessionTicketKeys),
	}
	return lin, &mosnPredecessor{up: up, log: m.s.log}, nil
}

func (m *mosnStyle) opened([]ident.Spec) error { return nil }

func (m *mosnStyle) listen(h successorHooks) (endpoint, error) {
	rs, err := m.up.TakeOver(m.serverConfig(h))
	if err != nil {
		return nil, err
	}
	return mosnEndpoint{rs}, nil
}

func (m *mosnStyle) serverConfig(h successorHooks) reconfig.ServerConfig {
	return reconfig.ServerConfig{
		HandoffTimeout: m.s.handoffTimeout(),
		Log:            m.s.opts.Log.WithField("component", "reconfig"),
		Export: func(send func(reconfig.Manifest, []int) error) error {
			lin := h.manifest()
			return h.export(func(specs []ident.Spec, fds []int) error {
				mf := reconfig.Manifest{
					Generation: uint64(lin.generation), StartTime: lin.firstStart,
					Counters: lin.counters, Histograms: lin.histograms, DrainTimeout: lin.drainBound, Entries: specs, Env: lin.env,
					SessionTicketKeys: ticketKeysToWire(lin.ticketKeys),
				}
				err := send(mf, fds)
				if errors.Is(err, reconfig.ErrManifestTooLarge) && len(mf.Histograms) > 0 {
					// The handoff must not fail for its statistics: the
					// histograms go whole in the first push after the ack.
					m.s.log.WithError(err).Warn("handoff: histograms left out of the manifest; they follow the ack")
					mf.Histograms, lin.histograms = nil, nil
					err = send(mf, fds)
				}
				if err == nil {
					h.sent(lin)
				}
				return err
			})
		},
		OnAck:           func(s *reconfig.Successor) { h.onAck(s) },
		OnFail:          h.onFail,
		OnRequest:       h.onRequest,
		MaxManifestSize: m.frameLimit,
		MaxCountsFrame:  m.frameLimit,
	}
}

func (m *mosnStyle) policy() handoverPolicy {
	return handoverPolicy{
		pushCounters: true, exitWhenDrained: true, watch: m.s.watchPeriod(),
		reclaim: func(ctx context.Context, h successorHooks) (endpoint, error) {
			rs, err := reconfig.Reclaim(ctx, m.s.udsDir, m.serverConfig(h))
			if err != nil {
				return nil, err
			}
			return mosnEndpoint{rs}, nil
		},
	}
}

// mosnPredecessor is the predecessor of a MOSN-style upgrade.
type mosnPredecessor struct {
	up  *reconfig.Upgrade
	log *logrus.Entry
}

func (p *mosnPredecessor) pid() int                { return p.up.OldPID() }
func (p *mosnPredecessor) pidLabel() any           { return wire.PIDLabel(p.up.OldPID(), p.up.Manifest().PID) }
func (p *mosnPredecessor) gone() bool              { return p.up.PredecessorGone() }
func (p *mosnPredecessor) sockets() []ident.Socket { return p.up.Sockets() }
func (p *mosnPredecessor) fail(err error)          { p.up.Fail(err) }
func (p *mosnPredecessor) stop(context.Context)    { p.up.Release() }

func (p *mosnPredecessor) orphan() { p.up.Orphan() }

func (p *mosnPredecessor) dropListeners(specs []ident.Spec) { p.up.DropListeners(specs) }

func (p *mosnPredecessor) ack(ctx context.Context, targets []reconfig.MigrationTarget, h reconfig.ConnHandler) error {
	if len(targets) > 0 {
		if err := p.up.AcceptConnections(targets, h); err != nil {
			p.log.WithError(err).Warn("handoff: connection migration off")
		}
	}
	return p.up.Ack(ctx)
}

func (p *mosnPredecessor) follow(ctx context.Context, h followHooks) error {
	return p.up.Follow(ctx, reconfig.FollowHooks{Counts: h.counts, Migrated: h.migrated, Bye: h.gone})
}

// mosnEndpoint is this process's reconfig.sock.
type mosnEndpoint struct{ rs *reconfig.Server }

func (e mosnEndpoint) close() error    { return e.rs.Close() }
func (e mosnEndpoint) handedOff() bool { return e.rs.HandedOff() }
