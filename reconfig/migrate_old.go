package reconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mosnlite/mosnlite/reconfig/wire"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
)

// MigrationTargets returns the listeners the acked successor takes
// connections for; nil before the ack, or when it takes none (an older
// version, or migration off everywhere).
func (s *Server) MigrationTargets() []MigrationTarget {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]MigrationTarget(nil), s.targets...)
}

// Migrate moves a batch of connections to the acked successor, in two
// phases: it sends every offer with its sockets and then a commit; the
// successor holds them without serving and answers with a result, after
// which it serves the ones it accepted. The batch has a deadline
// (ServerConfig.MigrateTimeout): the successor never answers after it, and
// Migrate reads the answer until a second past it.
//
// On success every offered ID is in exactly one of Accepted (close this
// process's copies of those sockets, a plain close) and Refused (resume
// them). On error the successor serves none of them: resume them all.
// After an error on the connection (timeout, EOF, a garbled frame) every
// later Migrate fails at once; SendCounters and Bye still work if the
// connection does. Offers' Files stay the caller's. One batch runs at a time.
func (s *Server) Migrate(offers []ConnOffer) (MigrationResult, error) {
	s.migMu.Lock()
	defer s.migMu.Unlock()
	s.mu.Lock()
	peer, peerPID, targets := s.peer, s.peerPID, s.targets
	s.mu.Unlock()
	switch {
	case peer == nil:
		return MigrationResult{}, ErrNotHandedOff
	case s.migBroken != nil:
		return MigrationResult{}, fmt.Errorf("reconfig: migration to new process (pid %d) failed earlier: %w", peerPID, s.migBroken)
	case len(targets) == 0:
		return MigrationResult{}, fmt.Errorf("reconfig: new process (pid %d) takes no connections", peerPID)
	case len(offers) == 0:
		return MigrationResult{Refused: map[uint64]string{}}, nil
	case len(offers) > maxBatchOffers:
		return MigrationResult{}, fmt.Errorf("reconfig: migrate: %d offers in one batch, over the limit of %d", len(offers), maxBatchOffers)
	}
	if err := checkOffers(offers, targets); err != nil {
		return MigrationResult{}, err
	}

	// Everything is encoded before anything is sent: a batch goes out whole
	// or its commit never does.
	s.batch++
	batch := s.batch
	deadline := time.Now().Add(s.cfg.MigrateTimeout)
	payloads := make([][]byte, len(offers))
	fds := make([][]int, len(offers))
	ids := make([]uint64, len(offers))
	for i := range offers {
		o := offers[i]
		o.Deadline = deadline
		p, err := json.Marshal(o)
		if err != nil {
			return MigrationResult{}, fmt.Errorf("reconfig: encode connection offer %d: %w", o.ID, err)
		}
		payloads[i], ids[i] = p, o.ID
		for _, f := range o.Files {
			fd, err := wire.RawFD(f)
			if err != nil {
				return MigrationResult{}, fmt.Errorf("reconfig: connection offer %d: %w", o.ID, err)
			}
			fds[i] = append(fds[i], fd)
		}
	}
	commit, err := json.Marshal(commitMsg{Batch: batch, IDs: ids, Deadline: deadline})
	if err != nil {
		return MigrationResult{}, fmt.Errorf("reconfig: encode migration commit: %w", err)
	}

	if err := s.sendBatch(peer, payloads, fds, commit, deadline); err != nil {
		return MigrationResult{}, err
	}
	runtime.KeepAlive(offers)

	res, err := s.readResult(peer, batch, deadline.Add(resultGrace))
	if err != nil {
		s.migBroken = err
		return MigrationResult{}, err
	}
	return collate(res, ids), nil
}

// checkOffers checks what the caller offers before anything is sent.
func checkOffers(offers []ConnOffer, targets []MigrationTarget) error {
	ok := make(map[MigrationTarget]bool, len(targets))
	for _, t := range targets {
		ok[t] = true
	}
	seen := make(map[uint64]bool, len(offers))
	for _, o := range offers {
		switch {
		case o.ID == 0 || seen[o.ID]:
			return fmt.Errorf("reconfig: migrate: offer id %d is zero or repeated", o.ID)
		case connFDs(o.Kind) != len(o.Files):
			return fmt.Errorf("reconfig: migrate: offer %d: a %q connection with %d sockets", o.ID, o.Kind, len(o.Files))
		case !ok[MigrationTarget{Listener: o.Listener, Kind: o.Kind}]:
			return fmt.Errorf("reconfig: migrate: offer %d: the new process takes no %s connections for listener %q", o.ID, o.Kind, o.Listener)
		}
		seen[o.ID] = true
	}
	return nil
}

// sendBatch writes the offers and the commit. A failed write leaves a
// partial frame on the stream: the connection is closed, which the new
// process sees as the end of the drain (it releases what it holds).
func (s *Server) sendBatch(peer *net.UnixConn, payloads [][]byte, fds [][]int, commit []byte, deadline time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peer != peer {
		return ErrNotHandedOff
	}
	peer.SetWriteDeadline(deadline)
	var err error
	for i := range payloads {
		if err = writeFrame(peer, typeConnOffer, flagOptional, payloads[i], fds[i]); err != nil {
			break
		}
	}
	if err == nil {
		err = writeFrame(peer, typeConnCommit, flagOptional, commit, nil)
	}
	if err != nil {
		peer.Close()
		s.peer = nil
		s.migBroken = err
		return fmt.Errorf("reconfig: send connection offers to new process (pid %d): %w", s.peerPID, err)
	}
	return nil
}

// readResult reads the answer to batch until deadline. Answers to earlier
// batches are skipped.
func (s *Server) readResult(peer *net.UnixConn, batch uint64, deadline time.Time) (resultMsg, error) {
	pid := s.peerPIDNow()
	peer.SetReadDeadline(deadline)
	for {
		f, err := s.peerDec.Next()
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				return resultMsg{}, fmt.Errorf("reconfig: new process (pid %d) did not answer migration batch %d by its deadline", pid, batch)
			case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
				// A process that dies with our frames unread resets the connection.
				return resultMsg{}, fmt.Errorf("reconfig: new process (pid %d) closed the connection before answering migration batch %d", pid, batch)
			}
			return resultMsg{}, fmt.Errorf("reconfig: migration result from new process (pid %d): %w", pid, err)
		}
		f.CloseFDs()
		if f.Type != typeConnResult {
			return resultMsg{}, fmt.Errorf("reconfig: new process (pid %d): %w", pid, badFrame("expected migration result, got %s", typeName(f.Type)))
		}
		r, err := parseResult(f.Payload)
		if err != nil {
			return resultMsg{}, fmt.Errorf("reconfig: new process (pid %d): %w", pid, err)
		}
		if r.Batch == batch {
			return r, nil
		}
	}
}

func (s *Server) peerPIDNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerPID
}

// collate turns a result into one verdict per offered id: an id the result
// does not name is refused; one it names but we did not offer is ignored.
func collate(r resultMsg, ids []uint64) MigrationResult {
	offered := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		offered[id] = true
	}
	out := MigrationResult{Refused: map[uint64]string{}}
	accepted := map[uint64]bool{}
	for _, id := range r.Accepted {
		if offered[id] {
			accepted[id] = true
			out.Accepted = append(out.Accepted, id)
		}
	}
	for _, x := range r.Refused {
		if offered[x.ID] {
			out.Refused[x.ID] = x.Reason
		}
	}
	for _, id := range ids {
		if _, ok := out.Refused[id]; !ok && !accepted[id] {
			out.Refused[id] = "not answered"
		}
	}
	return out
}
