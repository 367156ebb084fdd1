package reconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Connection kinds a migration carries, and the sockets each comes with.
const (
	ConnKindTCP  = "tcp"  // a TCP proxy session: fds [downstream, upstream]
	ConnKindHTTP = "http" // an idle HTTP/1.1 downstream connection: fds [downstream]
	// ConnKindTunnel is an HTTP/1.1 connection upgraded to another protocol
	// (a WebSocket): fds [downstream, upstream], moved like a TCP session.
	ConnKindTunnel = "http_tunnel"
)

// DefaultMigrateTimeout bounds one migration batch, from the first offer to
// the result, when ServerConfig.MigrateTimeout is zero.
const DefaultMigrateTimeout = 2 * time.Second

// Limits a receiver enforces on what it is offered.
const (
	maxPendingBytes = 4 << 20 // per pending buffer of one connection
	maxNameLen      = 256     // listener names and kinds
	maxBatchOffers  = 1 << 16 // offers held at once, ids in a commit or result
	maxReasonLen    = 1024    // a refusal's reason
	// resultGrace is how long past a batch's timeout the old process waits
	// for the result before it warns that the new one is slow; it waits on
	// (StreamConfig.SettleTimeout) rather than resume what it may serve.
	resultGrace = time.Second
)

// MigrationTarget is a listener a new process takes connections for.
type MigrationTarget struct {
	Listener string `json:"listener"`
	Kind     string `json:"kind"` // ConnKindTCP or ConnKindHTTP
}

// ConnOffer is one connection the old process moves to the new one: its
// sockets and what had been read from them and not yet written on.
type ConnOffer struct {
	// ID names the offer in the commit and the result; unique and non-zero
	// within the old process.
	ID        uint64    `json:"id"`
	Listener  string    `json:"listener"`
	Kind      string    `json:"kind"`
	StartedAt time.Time `json:"started_at"` // when the connection was accepted: its age carries over
	// ToUpstream and ToDownstream (tcp): read from one side, not yet written
	// to the other.
	ToUpstream   []byte `json:"to_upstream,omitempty"`
	ToDownstream []byte `json:"to_downstream,omitempty"`
	// Buffered (http): read from the client, not yet parsed; Requests
	// (http, http_tunnel): how many requests the connection carried so far.
	Buffered []byte `json:"buffered,omitempty"`
	Requests uint64 `json:"requests,omitempty"`
	// Timeout is the batch's time limit, set by Successor.Migrate: the new
	// process serves the connection only if it answers the commit within
	// Timeout of the batch's first offer reaching it, as its own clock
	// measures (nothing compares clocks across processes). Deadline is the
	// same limit as a wall-clock time, for a new process of an earlier
	// version, which knows no Timeout.
	Timeout  time.Duration `json:"timeout,omitempty"`
	Deadline time.Time     `json:"deadline"`
	// Files are the sockets, in the kind's order. The old side's caller owns
	// them; on the new side they are open only while ConnHandler.Hold runs.
	Files []*os.File `json:"-"`
}

// commitMsg ends a batch: the offers it consists of.
type commitMsg struct {
	Batch    uint64        `json:"batch"`
	IDs      []uint64      `json:"ids"`
	Timeout  time.Duration `json:"timeout,omitempty"` // as ConnOffer.Timeout
	Deadline time.Time     `json:"deadline"`          // for an earlier version
}

// Refusal is one offer the new process does not serve, and why.
type Refusal struct {
	ID     uint64 `json:"id"`
	Reason string `json:"reason"`
}

// resultMsg answers a commit.
type resultMsg struct {
	Batch    uint64    `json:"batch"`
	Accepted []uint64  `json:"accepted"`
	Refused  []Refusal `json:"refused"`
}

// MigrationResult is the new process's answer to one batch: every offered id
// is in exactly one of Accepted (the new process serves it from now on) and
// Refused (the old process still owns it alone).
type MigrationResult struct {
	Accepted []uint64
	Refused  map[uint64]string
}

// connFDs is the number of sockets a connection kind comes with, 0 for an
// unknown kind.
func connFDs(kind string) int {
	switch kind {
	case ConnKindTCP, ConnKindTunnel:
		return 2
	case ConnKindHTTP:
		return 1
	}
	return 0
}

// parseOffer decodes and checks an offer that arrived with nfds fds. On an
// error the returned offer still carries the ID if one could be read, so
// that the refusal can name it.
func parseOffer(payload []byte, nfds int) (ConnOffer, error) {
	var o ConnOffer
	if err := json.Unmarshal(payload, &o); err != nil {
		return ConnOffer{}, badFrame("connection offer payload: %v", err)
	}
	id := o.ID
	bad := func(format string, args ...any) (ConnOffer, error) {
		return ConnOffer{ID: id}, badFrame("connection offer %d: %s", id, fmt.Sprintf(format, args...))
	}
	switch {
	case o.ID == 0:
		return bad("no id")
	case o.Listener == "" || len(o.Listener) > maxNameLen:
		return bad("listener name of %d bytes", len(o.Listener))
	case connFDs(o.Kind) == 0:
		return bad("unknown kind %q", truncate(o.Kind, maxNameLen))
	case nfds != connFDs(o.Kind):
		return bad("a %s connection comes with %d sockets, %d arrived", o.Kind, connFDs(o.Kind), nfds)
	case o.StartedAt.IsZero():
		return bad("no started_at")
	case o.Deadline.IsZero() && o.Timeout <= 0:
		return bad("no timeout")
	case len(o.ToUpstream) > maxPendingBytes || len(o.ToDownstream) > maxPendingBytes || len(o.Buffered) > maxPendingBytes:
		return bad("pending data over the %d byte limit", maxPendingBytes)
	case o.Kind == ConnKindTCP && (len(o.Buffered) > 0 || o.Requests > 0):
		return bad("a tcp session with http fields")
	case o.Kind == ConnKindHTTP && (len(o.ToUpstream) > 0 || len(o.ToDownstream) > 0):
		return bad("an http connection with tcp pending data")
	case o.Kind == ConnKindTunnel && len(o.Buffered) > 0:
		return bad("an http tunnel with unparsed request bytes")
	}
	return o, nil
}

// parseCommit decodes and checks a commit.
func parseCommit(payload []byte) (commitMsg, error) {
	var c commitMsg
	if err := json.Unmarshal(payload, &c); err != nil {
		return commitMsg{}, badFrame("migration commit payload: %v", err)
	}
	switch {
	case c.Batch == 0:
		return commitMsg{}, badFrame("migration commit: no batch number")
	case c.Deadline.IsZero() && c.Timeout <= 0:
		return commitMsg{}, badFrame("migration commit %d: no timeout", c.Batch)
	case len(c.IDs) > maxBatchOffers:
		return commitMsg{}, badFrame("migration commit %d: %d offers, over the limit of %d", c.Batch, len(c.IDs), maxBatchOffers)
	}
	if err := uniqueIDs(c.IDs, nil); err != nil {
		return commitMsg{}, badFrame("migration commit %d: %v", c.Batch, err)
	}
	return c, nil
}

// parseResult decodes and checks a result.
func parseResult(payload []byte) (resultMsg, error) {
	var r resultMsg
	if err := json.Unmarshal(payload, &r); err != nil {
		return resultMsg{}, badFrame("migration result payload: %v", err)
	}
	if r.Batch == 0 {
		return resultMsg{}, badFrame("migration result: no batch number")
	}
	if len(r.Accepted) > maxBatchOffers || len(r.Refused) > maxBatchOffers {
		return resultMsg{}, badFrame("migration result %d: over the limit of %d ids", r.Batch, maxBatchOffers)
	}
	seen := map[uint64]bool{}
	if err := uniqueIDs(r.Accepted, seen); err != nil {
		return resultMsg{}, badFrame("migration result %d: %v", r.Batch, err)
	}
	refused := make([]uint64, len(r.Refused))
	for i, x := range r.Refused {
		if len(x.Reason) > maxReasonLen {
			return resultMsg{}, badFrame("migration result %d: reason of %d bytes", r.Batch, len(x.Reason))
		}
		refused[i] = x.ID
	}
	if err := uniqueIDs(refused, seen); err != nil {
		return resultMsg{}, badFrame("migration result %d: %v", r.Batch, err)
	}
	return r, nil
}

// uniqueIDs checks that ids are non-zero and appear once, also across the
// lists checked with the same seen map.
func uniqueIDs(ids []uint64, seen map[uint64]bool) error {
	if seen == nil {
		seen = make(map[uint64]bool, len(ids))
	}
	for _, id := range ids {
		if id == 0 {
			return fmt.Errorf("id 0")
		}
		if seen[id] {
			return fmt.Errorf("id %d listed twice", id)
		}
		seen[id] = true
	}
	return nil
}

// validTargets keeps the well-formed entries of an ack's migration list.
func validTargets(ts []MigrationTarget) []MigrationTarget {
	var out []MigrationTarget
	for _, t := range ts {
		if t.Listener != "" && len(t.Listener) <= maxNameLen && connFDs(t.Kind) > 0 {
			out = append(out, t)
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
