package systemd

import (
	"fmt"
	"strconv"
	"strings"
)

// Environment of socket activation (sd_listen_fds(3)).
const (
	ListenPIDEnv     = "LISTEN_PID"
	ListenFDsEnv     = "LISTEN_FDS"
	ListenFDNamesEnv = "LISTEN_FDNAMES"
)

// ListenFDsStart is the first passed descriptor (SD_LISTEN_FDS_START).
const ListenFDsStart = 3

// UnknownName is the name of a descriptor passed without LISTEN_FDNAMES.
const UnknownName = "unknown"

// maxListenFDs bounds LISTEN_FDS: far above any real socket unit, low enough
// that a garbled value cannot make us walk the whole descriptor space.
const maxListenFDs = 1 << 16

// maxFDName is the longest name FileDescriptorName= allows.
const maxFDName = 255

// ListenFD is one descriptor passed by socket activation.
type ListenFD struct {
	FD   int    // ListenFDsStart, ListenFDsStart+1, …
	Name string // FileDescriptorName= (the socket unit's name by default), or UnknownName
}

// Activation is what the socket-activation environment says.
type Activation struct {
	// FDs are the passed descriptors, in the socket unit's order; none when
	// the environment is absent or meant for another process.
	FDs []ListenFD
	// Ignored says why variables that were set do not apply to this process
	// (LISTEN_PID names another one); "" otherwise. Worth a log line: a
	// wrapper between systemd and mosnlite changes the pid.
	Ignored string
}

// ParseListenFDs reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES through
// getenv for process pid. It touches no descriptor: checking that each is a
// listening socket, and adopting it, is the caller's.
func ParseListenFDs(getenv func(string) string, pid int) (Activation, error) {
	ps, ns, names := getenv(ListenPIDEnv), getenv(ListenFDsEnv), getenv(ListenFDNamesEnv)
	if ps == "" {
		if ns != "" || names != "" {
			return Activation{}, fmt.Errorf("systemd: %s=%q is set but %s is not: cannot tell whom the sockets are for", ListenFDsEnv, ns, ListenPIDEnv)
		}
		return Activation{}, nil
	}
	lp, err := strconv.Atoi(ps)
	if err != nil || lp <= 0 {
		return Activation{}, fmt.Errorf("systemd: %s=%q: not a process id", ListenPIDEnv, ps)
	}
	if lp != pid {
		return Activation{Ignored: fmt.Sprintf("%s=%d names another process than this one (pid %d): its sockets are not ours", ListenPIDEnv, lp, pid)}, nil
	}
	if ns == "" {
		return Activation{}, fmt.Errorf("systemd: %s=%d names this process but %s is not set", ListenPIDEnv, lp, ListenFDsEnv)
	}
	n, err := strconv.Atoi(ns)
	switch {
	case err != nil:
		return Activation{}, fmt.Errorf("systemd: %s=%q: not a number", ListenFDsEnv, ns)
	case n < 0 || n > maxListenFDs:
		return Activation{}, fmt.Errorf("systemd: %s=%d: out of range 0..%d", ListenFDsEnv, n, maxListenFDs)
	}
	var nameList []string
	if names != "" {
		if nameList = strings.Split(names, ":"); len(nameList) != n {
			return Activation{}, fmt.Errorf("systemd: %s=%q has %d names for %s=%d", ListenFDNamesEnv, names, len(nameList), ListenFDsEnv, n)
		}
	}
	a := Activation{FDs: make([]ListenFD, n)}
	for i := range a.FDs {
		name := UnknownName
		if nameList != nil {
			name = nameList[i]
			if err := checkFDName(name); err != nil {
				return Activation{}, fmt.Errorf("systemd: %s: name %d (fd %d) %q: %w", ListenFDNamesEnv, i+1, ListenFDsStart+i, name, err)
			}
		}
		a.FDs[i] = ListenFD{FD: ListenFDsStart + i, Name: name}
	}
	return a, nil
}

// checkFDName applies FileDescriptorName='s rules: up to 255 ASCII
// characters, no control characters (':' cannot occur: it separates names).
// An empty name is allowed, as systemd allows it: such a socket can only be
// matched by its address.
func checkFDName(s string) error {
	if len(s) > maxFDName {
		return fmt.Errorf("longer than %d characters", maxFDName)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return fmt.Errorf("character %q at offset %d is not printable ASCII", c, i)
		}
	}
	return nil
}
