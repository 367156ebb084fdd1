package server

import (
	"context"

	"github.com/mosnlite/mosnlite/listener/ident"
)

// noUpgradeStyle is MOSN's disable_upgrade (or close_graceful): the
// process neither takes over from a running one (it does not dial
// reconfig.sock: it binds its sockets fresh, and a port a running process
// holds fails the start, as in MOSN) nor offers to be taken over (no
// reconfig.sock is served). A stop drains and exits as usual.
type noUpgradeStyle struct{ s *Server }

func newNoUpgradeStyle(s *Server) handoffStyle { return noUpgradeStyle{s: s} }

func (noUpgradeStyle) begin(context.Context) (lineage, predecessor, error) {
	return lineage{generation: 1}, nil, nil
}

func (noUpgradeStyle) opened([]ident.Spec) error { return nil }

func (n noUpgradeStyle) listen(successorHooks) (endpoint, error) {
	n.s.log.Info("disable_upgrade: no reconfig.sock; this process cannot be upgraded in place")
	return noEndpoint{}, nil
}

func (n noUpgradeStyle) policy() handoverPolicy {
	return handoverPolicy{exitWhenDrained: true}
}

// noEndpoint is the endpoint of a process nobody can reach.
type noEndpoint struct{}

func (noEndpoint) close() error    { return nil }
func (noEndpoint) handedOff() bool { return false }
