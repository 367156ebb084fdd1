package reconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig/wire"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// ProtocolVersion is the manifest version this build speaks. It changes only
// for an incompatible change; compatible additions are new JSON fields
// (ignored by older readers) or new frame types flagged optional.
const ProtocolVersion = 1

// Manifest is what the old process hands to the new one with its fds.
// Entries are in fd order: Entries[i] describes the i-th fd.
type Manifest struct {
	// Version, PID, AckDeadline and Proof are filled in by the Server; an
	// Export callback leaves them zero.
	Version     int       `json:"version"`
	PID         int       `json:"pid"`
	AckDeadline time.Time `json:"ack_deadline"` // the old gives up waiting for the ack then (wall clock: for an earlier version)
	// AckTimeout is how long the old process still waits for the ack from
	// when it sent the manifest: the new one counts it on its own clock
	// from the manifest's arrival (no clocks compared across processes;
	// the settled handoff makes it a hint, see doc.go). Zero from an
	// earlier version: AckDeadline then.
	AckTimeout time.Duration `json:"ack_timeout,omitempty"`
	// Proof shows that the old process is the one the new one asked on
	// reconfig.sock (see proof.go). Absent from an older old process.
	Proof string `json:"proof,omitempty"`

	Generation uint64          `json:"generation"` // the old process's; the new one is Generation+1
	StartTime  time.Time       `json:"start_time"` // first start of the lineage (uptime across generations)
	Entries    []ident.Spec    `json:"entries"`
	Counters   []sample.Sample `json:"counters,omitempty"` // the old's counter values at export
	// Histograms are the old's histogram states at export (those with
	// observations). Absent from an older peer, and left out when the
	// manifest would be too large with them (see ErrManifestTooLarge):
	// then the first counters push after the ack carries them whole.
	Histograms []histsample.Histogram `json:"histograms,omitempty"`
	// DrainTimeout is the longest the old process drains after the ack
	// (its graceful_timeout); the new one bounds its wait for bye by it.
	// Zero from an older peer: the new one uses its own.
	DrainTimeout time.Duration `json:"drain_timeout,omitempty"`
	// Env is what the process manager gave this lineage that a successor
	// started outside it does not get (systemd's WATCHDOG_USEC reaches only
	// the process systemd started): names and values, opaque here, at most
	// MaxEnv of them. Absent from an older old process.
	Env map[string]string `json:"env,omitempty"`
	// SessionTicketKeys are the lineage's TLS session ticket keys, so that
	// a client resumes its session across the upgrade. Secret: they travel
	// only here, on the 0600, peer-checked listen.sock, and never print.
	// Absent from an older old process (then the new one makes its own).
	SessionTicketKeys []SessionTicketKey `json:"session_ticket_keys,omitempty"`
}

// SessionTicketKey is one TLS session ticket key of the lineage and when it
// was made. It prints without its key.
type SessionTicketKey struct {
	Key     []byte    `json:"key"`
	Created time.Time `json:"created"`
}

func (k SessionTicketKey) String() string {
	return "SessionTicketKey(created " + k.Created.UTC().Format(time.RFC3339) + ", redacted)"
}
func (k SessionTicketKey) GoString() string              { return k.String() }
func (k SessionTicketKey) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(k.String())) }

// Limits of Manifest.SessionTicketKeys.
const (
	MaxSessionTicketKeys = 16
	SessionTicketKeySize = 32
)

// CheckSessionTicketKeys checks received session ticket keys.
func CheckSessionTicketKeys(keys []SessionTicketKey) error {
	if len(keys) > MaxSessionTicketKeys {
		return fmt.Errorf("%d session ticket keys, at most %d", len(keys), MaxSessionTicketKeys)
	}
	for i, k := range keys {
		if len(k.Key) != SessionTicketKeySize || k.Created.IsZero() {
			return fmt.Errorf("session ticket key %d: %d bytes (want %d) or no creation time", i, len(k.Key), SessionTicketKeySize)
		}
	}
	return nil
}

// Limits of Manifest.Env.
const (
	MaxEnv         = 32
	maxEnvNameLen  = 128
	maxEnvValueLen = 4096
)

// checkEnv checks a received Manifest.Env.
func checkEnv(env map[string]string) error {
	if len(env) > MaxEnv {
		return fmt.Errorf("%d env entries, at most %d", len(env), MaxEnv)
	}
	for k, v := range env {
		if k == "" || len(k) > maxEnvNameLen || len(v) > maxEnvValueLen {
			return fmt.Errorf("env entry %q: name of %d bytes (1-%d) or value of %d bytes (at most %d)",
				wire.Bound(k, 64), len(k), maxEnvNameLen, len(v), maxEnvValueLen)
		}
	}
	return nil
}

type ackMsg struct {
	PID int `json:"pid"`
	// Watch: this new process keeps the handoff connection open after the
	// bye until it sends release, so that the old one can watch it for
	// upgrade_watch_period. Absent from an older new process: no watch.
	Watch bool `json:"watch,omitempty"`
	// Migration lists the listeners the new process takes connections for.
	// Absent (an older new process, or migration off) means none: the old
	// process drains everything.
	Migration []MigrationTarget `json:"migration,omitempty"`
	// Dropped lists the manifest's listeners the new process does not
	// serve (its config has them no more; it closed its copies): the old
	// process closes them at the ack, so that their clients are refused
	// rather than queued until it exits. Absent from an older new process.
	Dropped []ident.Spec `json:"dropped,omitempty"`
}

type nackMsg struct {
	PID    int    `json:"pid"`
	Reason string `json:"reason"`
}

// Counts is one push of what a draining old process counted: how much each
// counter and histogram grew since the previous push (since the manifest,
// for the first). The new process adds them to its own.
type Counts struct {
	Counters []sample.Sample `json:"counters"`
	// Histograms are deltas (histsample.Delta); an older peer sends none.
	Histograms []histsample.Histogram `json:"histograms,omitempty"`
	// More says that this push was split to fit the frame limit and that
	// another part follows at once: only the last part completes the push.
	// Each part is applied as it comes (an older new process, which does
	// not know the field, does the same).
	More bool `json:"more,omitempty"`
}

// MigrationDone is what the old process says once its connection migration
// is over: every connection of the listeners that move has moved or stays
// with it. The new process then knows how many it took over.
type MigrationDone struct {
	Moved  int `json:"moved"`
	Failed int `json:"failed"`
	// Duration is the migration's, from the ack to the last batch answered.
	Duration time.Duration `json:"duration"`
}

type byeMsg struct {
	PID int `json:"pid"`
}

// decodePayload unmarshals a frame's JSON; an empty payload reads as {}.
func decodePayload(f frame, v any) error {
	if len(f.Payload) == 0 {
		return nil
	}
	if err := json.Unmarshal(f.Payload, v); err != nil {
		return badFrame("%s payload: %v", typeName(f.Type), err)
	}
	return nil
}

// readManifest reads the manifest frame and returns it with one file per
// entry. On any error every received fd is closed.
func readManifest(d *wire.Decoder) (Manifest, []*os.File, error) {
	f, err := d.Next()
	if err != nil {
		return Manifest{}, nil, err
	}
	if f.Type != typeManifest {
		f.CloseFDs()
		return Manifest{}, nil, badFrame("expected manifest, got %s", typeName(f.Type))
	}
	var m Manifest
	if err := decodePayload(f, &m); err != nil {
		f.CloseFDs()
		return Manifest{}, nil, err
	}
	if m.Version != ProtocolVersion {
		f.CloseFDs()
		return Manifest{}, nil, fmt.Errorf("manifest protocol version %d, this build speaks %d", m.Version, ProtocolVersion)
	}
	if n := len(f.FDs); n != len(m.Entries) {
		f.CloseFDs()
		return Manifest{}, nil, badFrame("manifest lists %d listeners but %d fds arrived", len(m.Entries), n)
	}
	for i, e := range m.Entries {
		if err := e.Valid(); err != nil {
			f.CloseFDs()
			return Manifest{}, nil, badFrame("manifest entry %d: %v", i, err)
		}
	}
	if err := checkEnv(m.Env); err != nil {
		f.CloseFDs()
		return Manifest{}, nil, badFrame("manifest: %v", err)
	}
	if err := CheckSessionTicketKeys(m.SessionTicketKeys); err != nil {
		f.CloseFDs()
		return Manifest{}, nil, badFrame("manifest: %v", err)
	}
	files := f.Files(func(i int) string { return m.Entries[i].Name })
	return m, files, nil
}
