// Package listener owns one process's socket set: a listener's identity, opening
// fresh sockets, adopting inherited fds, exporting fds and closing what nobody claimed.
// It knows nothing of processes or of the handoff protocol.
package listener

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
)

// Kind tells the proxy's own listeners from the service ports.
type Kind string

const (
	KindServer  Kind = "server"  // a proxy listener from servers[].listeners[]
	KindService Kind = "service" // admin, pprof or metrics
)

// Spec identifies a listener: name, kind, network and normalised address.
type Spec struct {
	Name    string `json:"name"`
	Kind    Kind   `json:"kind"`
	Network string `json:"network"` // "tcp" or "unix"
	Address string `json:"address"` // normalised: see Normalize
}

func (s Spec) String() string {
	return fmt.Sprintf("%s %s %s://%s", s.Kind, s.Name, s.Network, s.Address)
}

// Normalize returns the canonical form of a listening address so that two
// spellings of one socket compare equal: for tcp, "ip:port" with IPv4-mapped
// IPv6 unmapped, IPv6 in brackets and compressed, an empty host read as
// 0.0.0.0; for unix, an absolute clean path.
func Normalize(network, address string) (string, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "":
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return "", fmt.Errorf("listener: address %q: %w", address, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return "", fmt.Errorf("listener: address %q: bad port %q", address, port)
		}
		if host == "" {
			host = "0.0.0.0"
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", fmt.Errorf("listener: address %q: host must be an IP literal: %w", address, err)
		}
		return netip.AddrPortFrom(ip.Unmap().WithZone(ip.Zone()), uint16(p)).String(), nil
	case "unix":
		if address == "" {
			return "", fmt.Errorf("listener: empty unix socket path")
		}
		abs, err := filepath.Abs(address)
		if err != nil {
			return "", fmt.Errorf("listener: unix path %q: %w", address, err)
		}
		return abs, nil
	default:
		return "", fmt.Errorf("listener: unknown network %q", network)
	}
}

// AnyPort reports whether a normalised tcp address asks for any free port
// (port 0). Such a listener is matched to an inherited one by name instead
// of by address.
func AnyPort(network, normalised string) bool {
	if network == "unix" {
		return false
	}
	ap, err := netip.ParseAddrPort(normalised)
	return err == nil && ap.Port() == 0
}
