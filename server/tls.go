package server

import (
	"crypto/rand"
	"slices"
	"strings"

	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/server/tlsconf"
	"github.com/mosnlite/mosnlite/service"
)

// The lineage's TLS session ticket keys: made by the first generation,
// handed to each successor with the sockets (both handoff styles), so that
// a client resumes its TLS session across an upgrade.

// inheritTicketKeys makes this process's ring from what the predecessor
// handed over (nothing: new keys). Keys that are not sound are dropped, and
// said so: clients then do one full handshake.
func (s *Server) inheritTicketKeys(keys []tlsconf.TicketKey) {
	ring, err := tlsconf.NewRing(keys, s.fx.now, rand.Reader)
	if err != nil && ring == nil {
		// No randomness: every TLS context keeps Go's own keys.
		s.log.WithError(err).Error("tls: no session ticket keys; sessions do not resume across upgrades")
	} else if err != nil {
		s.log.WithError(err).Warn("tls: session ticket keys from the predecessor refused; clients do a full handshake once")
	}
	s.mu.Lock()
	s.tickets = ring
	s.mu.Unlock()
}

// ticketRing is the process's ring, made on first use when no start made
// one (Init).
func (s *Server) ticketRing() *tlsconf.Ring {
	s.mu.Lock()
	r := s.tickets
	s.mu.Unlock()
	if r == nil {
		s.inheritTicketKeys(nil)
		s.mu.Lock()
		r = s.tickets
		s.mu.Unlock()
	}
	return r
}

// ticketKeys are the keys a successor inherits.
func (s *Server) ticketKeys() []tlsconf.TicketKey {
	if r := s.ticketRing(); r != nil {
		return r.Keys()
	}
	return nil
}

func ticketKeysToWire(keys []tlsconf.TicketKey) []reconfig.SessionTicketKey {
	out := make([]reconfig.SessionTicketKey, len(keys))
	for i, k := range keys {
		out[i] = reconfig.SessionTicketKey{Key: slices.Clone(k.Key[:]), Created: k.Created}
	}
	return out
}

// ticketKeysFromWire converts received keys, which reconfig checked.
func ticketKeysFromWire(keys []reconfig.SessionTicketKey) []tlsconf.TicketKey {
	out := make([]tlsconf.TicketKey, 0, len(keys))
	for _, k := range keys {
		var t tlsconf.TicketKey
		if copy(t.Key[:], k.Key) != len(t.Key) {
			continue
		}
		t.Created = k.Created
		out = append(out, t)
	}
	return out
}

// Certificates implements service.CertsInfo: the certificates of every
// TLS listener (in config order) and cluster (by name).
func (s *Server) Certificates() []service.CertificateSet {
	s.mu.Lock()
	pl := s.plane
	s.mu.Unlock()
	if pl == nil {
		return nil
	}
	var out []service.CertificateSet
	for _, p := range pl.parts {
		if p.tls != nil {
			out = append(out, p.tls.Certificates()...)
		}
	}
	cl := pl.clusters.Certificates()
	slices.SortStableFunc(cl, func(a, b service.CertificateSet) int { return strings.Compare(a.Cluster, b.Cluster) })
	return append(out, cl...)
}
