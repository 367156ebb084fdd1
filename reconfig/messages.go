package reconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// ProtocolVersion is the manifest version this build speaks. It changes only
// for an incompatible change; compatible additions are new JSON fields
// (ignored by older readers) or new frame types flagged optional.
const ProtocolVersion = 1

// FDEntry identifies one listening socket in a manifest. The lead converts
// it to and from listener.Spec; reconfig does not import listener.
type FDEntry struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`    // "server" or "service"
	Network string `json:"network"` // "tcp" or "unix"
	Address string `json:"address"` // normalised, with the bound port
}

// Manifest is what the old process hands to the new one with its fds.
// Entries are in fd order: Entries[i] describes the i-th fd.
type Manifest struct {
	// Version, PID and AckDeadline are filled in by the Server; an Export
	// callback leaves them zero.
	Version     int       `json:"version"`
	PID         int       `json:"pid"`
	AckDeadline time.Time `json:"ack_deadline"` // the old gives up waiting for the ack then

	Generation uint64          `json:"generation"` // the old process's; the new one is Generation+1
	StartTime  time.Time       `json:"start_time"` // first start of the lineage (uptime across generations)
	Entries    []FDEntry       `json:"entries"`
	Counters   []sample.Sample `json:"counters,omitempty"` // the old's counter values at export
	// DrainTimeout is the longest the old process drains after the ack
	// (its graceful_timeout); the new one bounds its wait for bye by it.
	// Zero from an older peer: the new one uses its own.
	DrainTimeout time.Duration `json:"drain_timeout,omitempty"`
}

type ackMsg struct {
	PID int `json:"pid"`
	// Migration lists the listeners the new process takes connections for.
	// Absent (an older new process, or migration off) means none: the old
	// process drains everything.
	Migration []MigrationTarget `json:"migration,omitempty"`
}

type nackMsg struct {
	PID    int    `json:"pid"`
	Reason string `json:"reason"`
}

type countersMsg struct {
	Counters []sample.Sample `json:"counters"`
}

type byeMsg struct {
	PID int `json:"pid"`
}

// decodePayload unmarshals a frame's JSON; an empty payload reads as {}.
func decodePayload(f frame, v any) error {
	if len(f.payload) == 0 {
		return nil
	}
	if err := json.Unmarshal(f.payload, v); err != nil {
		return badFrame("%s payload: %v", f.typ, err)
	}
	return nil
}

// readManifest reads the manifest frame and returns it with one file per
// entry. On any error every received fd is closed.
func readManifest(d *decoder) (Manifest, []*os.File, error) {
	f, err := d.next()
	if err != nil {
		return Manifest{}, nil, err
	}
	if f.typ != typeManifest {
		f.closeFDs()
		return Manifest{}, nil, badFrame("expected manifest, got %s", f.typ)
	}
	var m Manifest
	if err := decodePayload(f, &m); err != nil {
		f.closeFDs()
		return Manifest{}, nil, err
	}
	if m.Version != ProtocolVersion {
		f.closeFDs()
		return Manifest{}, nil, fmt.Errorf("manifest protocol version %d, this build speaks %d", m.Version, ProtocolVersion)
	}
	if n := len(f.fds); n != len(m.Entries) {
		f.closeFDs()
		return Manifest{}, nil, badFrame("manifest lists %d listeners but %d fds arrived", len(m.Entries), n)
	}
	files := make([]*os.File, len(f.fds))
	for i, fd := range f.fds {
		files[i] = os.NewFile(uintptr(fd), m.Entries[i].Name)
	}
	return m, files, nil
}
