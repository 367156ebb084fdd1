package server

import (
	"fmt"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/server/proxy"
)

// adopter is the new process's side of migration: it holds the connections
// a draining predecessor offers until their batch commits, then serves them
// on the listener of the same name and kind.
type adopter struct {
	log    *logrus.Entry
	byName map[string]proxy.Migrator

	mu      sync.Mutex
	held    map[uint64]proxy.Held
	kinds   map[uint64]string
	adopted map[string]int // served, by kind
}

// migrationTargets lists the listeners this process takes connections for:
// every proxy listener without disable_migration.
func (s *Server) migrationTargets() ([]reconfig.MigrationTarget, *adopter) {
	parts := s.parts()
	a := &adopter{
		log:    s.log.WithField("new_pid", s.opts.PID),
		byName: map[string]proxy.Migrator{},
		held:   map[uint64]proxy.Held{}, kinds: map[uint64]string{}, adopted: map[string]int{},
	}
	var targets []reconfig.MigrationTarget
	for _, p := range parts {
		m, ok := p.proxy.(proxy.Migrator)
		if !ok || p.noMigration {
			continue
		}
		a.byName[p.spec.Name] = m
		targets = append(targets, reconfig.MigrationTarget{Listener: p.spec.Name, Kind: m.Kind()})
		if m.Kind() == proxy.KindHTTP { // and its upgraded connections
			targets = append(targets, reconfig.MigrationTarget{Listener: p.spec.Name, Kind: proxy.KindTunnel})
		}
	}
	return targets, a
}

// Hold implements reconfig.ConnHandler.
func (a *adopter) Hold(o reconfig.ConnOffer) error {
	m, ok := a.byName[o.Listener]
	if !ok {
		return fmt.Errorf("no listener %q takes connections here", o.Listener)
	}
	if !proxy.Carries(m.Kind(), o.Kind) {
		return fmt.Errorf("listener %q is %s here, the connection is %s", o.Listener, m.Kind(), o.Kind)
	}
	h, err := m.Adopt(proxy.Handover{
		Listener: o.Listener, Kind: o.Kind, StartedAt: o.StartedAt, Files: o.Files,
		ToUpstream: o.ToUpstream, ToDownstream: o.ToDownstream,
		Buffered: o.Buffered, Requests: o.Requests,
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.held[o.ID] = h
	a.kinds[o.ID] = o.Kind
	a.mu.Unlock()
	return nil
}

// Start implements reconfig.ConnHandler.
func (a *adopter) Start(ids []uint64) {
	n := map[string]int{}
	for _, h := range a.take(ids, n) {
		h.Start()
	}
	a.mu.Lock()
	for k, v := range n {
		a.adopted[k] += v
	}
	a.mu.Unlock()
	a.log.WithFields(logrus.Fields{"tcp": n[proxy.KindTCP], "http": n[proxy.KindHTTP], "http_tunnel": n[proxy.KindTunnel]}).Info("migration: serving connections moved from the predecessor")
}

// Release implements reconfig.ConnHandler.
func (a *adopter) Release(ids []uint64) {
	for _, h := range a.take(ids, nil) {
		h.Drop()
	}
}

func (a *adopter) take(ids []uint64, byKind map[string]int) []proxy.Held {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]proxy.Held, 0, len(ids))
	for _, id := range ids {
		if h, ok := a.held[id]; ok {
			out = append(out, h)
			if byKind != nil {
				byKind[a.kinds[id]]++
			}
			delete(a.held, id)
			delete(a.kinds, id)
		}
	}
	return out
}

// total returns how many connections moved here, by kind.
func (a *adopter) total() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.adopted {
		out[k] = v
	}
	return out
}
