package reconfig

import "errors"

// ErrUpgradeInProgress is returned by Begin when another process holds the
// upgrade lock or the running process is busy with another upgrade (or is
// still following its own predecessor's drain).
var ErrUpgradeInProgress = errors.New("upgrade already in progress")

// ErrNotHandedOff is returned by Server.SendCounters and Server.Bye before a
// handoff was acked or after Bye.
var ErrNotHandedOff = errors.New("reconfig: no acked handoff connection")

// ErrManifestTooLarge is returned by the send function of
// ServerConfig.Export, before anything is sent, when the encoded manifest
// exceeds its frame limit. The callback may send again with less in it
// (Manifest.Histograms can follow in the first counters push instead).
var ErrManifestTooLarge = errors.New("reconfig: manifest too large")

// ErrUpgradeRefused is returned by Begin when the running process refused
// the upgrade for a reason it gives (for example: it is PID 1 of a PID
// namespace that the new process shares, see ServerConfig.OnRequest).
var ErrUpgradeRefused = errors.New("upgrade refused")

// ErrMigrationUnsettled is returned by Successor.Migrate when the successor
// gave no answer to a batch it was sent whole — it is stopped or starved,
// not dead — within the batch's timeout and StreamConfig.SettleTimeout after
// it. It may yet serve any of the batch's connections: the caller must not
// resume them (two processes would serve one connection), only close its
// own copies of their sockets.
var ErrMigrationUnsettled = errors.New("reconfig: migration batch unsettled")
