package reconfig

import "errors"

// ErrUpgradeInProgress is returned by Begin when another process holds the
// upgrade lock or the running process is busy with another upgrade (or is
// still following its own predecessor's drain).
var ErrUpgradeInProgress = errors.New("upgrade already in progress")

// ErrNotHandedOff is returned by Server.SendCounters and Server.Bye before a
// handoff was acked or after Bye.
var ErrNotHandedOff = errors.New("reconfig: no acked handoff connection")
