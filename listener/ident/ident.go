// Package ident is a listener's identity — name, kind, network and
// normalised address — as one type that travels end to end: from the config
// (New), through the listener set, across a handoff in either style (the
// MOSN-style manifest, the Envoy-style socket list) and into the successor's
// set. It is a leaf: the handoff packages carry it without importing the
// socket set.
package ident

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
)

// Kind tells the proxy's own listeners from the service ports.
type Kind string

const (
	KindServer  Kind = "server"  // a proxy listener from servers[].listeners[]
	KindService Kind = "service" // admin, pprof or metrics
)

// Networks a listener may have.
const (
	NetworkTCP  = "tcp"
	NetworkTCP4 = "tcp4"
	NetworkTCP6 = "tcp6"
	NetworkUnix = "unix"
)

// Limits of an identity received from another process.
const (
	MaxNameLen    = 256
	MaxAddressLen = 4096
)

// Spec identifies a listener: name, kind, network and normalised address.
// Build one with New, which normalises; one received from a peer is checked
// with Valid.
type Spec struct {
	Name    string `json:"name"`
	Kind    Kind   `json:"kind"`
	Network string `json:"network"` // "tcp", "tcp4", "tcp6" or "unix"
	Address string `json:"address"` // normalised: see Normalize
}

func (s Spec) String() string {
	return fmt.Sprintf("%s %s %s://%s", s.Kind, s.Name, s.Network, s.Address)
}

// New returns the identity of a configured listener, its network defaulted
// (tcp) and its address normalised: the one place an address is normalised.
func New(name string, kind Kind, network, address string) (Spec, error) {
	if network == "" {
		network = NetworkTCP
	}
	addr, err := Normalize(network, address)
	if err != nil {
		return Spec{}, err
	}
	return Spec{Name: name, Kind: kind, Network: network, Address: addr}, nil
}

// Valid checks an identity that came from another process: bounded
// lengths, a known kind and network, an address in normal form.
func (s Spec) Valid() error {
	switch {
	case s.Name == "" || len(s.Name) > MaxNameLen:
		return fmt.Errorf("listener name of %d bytes", len(s.Name))
	case s.Kind != KindServer && s.Kind != KindService:
		return fmt.Errorf("listener %q: unknown kind %q", s.Name, bound(string(s.Kind)))
	case len(s.Address) > MaxAddressLen:
		return fmt.Errorf("listener %q: address of %d bytes", s.Name, len(s.Address))
	}
	norm, err := Normalize(s.Network, s.Address)
	if err != nil {
		return fmt.Errorf("listener %q: %w", s.Name, err)
	}
	if s.Network == "" || norm != s.Address {
		return fmt.Errorf("listener %q: address %q is not in normal form (%s %q)", s.Name, s.Address, s.Network, norm)
	}
	return nil
}

func bound(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Normalize returns the canonical form of a listening address so that two
// spellings of one socket compare equal: for tcp, "ip:port" with IPv4-mapped
// IPv6 unmapped, IPv6 in brackets and compressed, an empty host read as
// 0.0.0.0; for unix, an absolute clean path.
func Normalize(network, address string) (string, error) {
	switch network {
	case NetworkTCP, NetworkTCP4, NetworkTCP6, "":
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return "", fmt.Errorf("listener: address %q: %w", bound(address), err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return "", fmt.Errorf("listener: address %q: bad port %q", bound(address), bound(port))
		}
		if host == "" {
			host = "0.0.0.0"
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", fmt.Errorf("listener: address %q: host must be an IP literal: %w", bound(address), err)
		}
		return netip.AddrPortFrom(ip.Unmap().WithZone(ip.Zone()), uint16(p)).String(), nil
	case NetworkUnix:
		if address == "" {
			return "", fmt.Errorf("listener: empty unix socket path")
		}
		abs, err := filepath.Abs(address)
		if err != nil {
			return "", fmt.Errorf("listener: unix path %q: %w", bound(address), err)
		}
		return abs, nil
	default:
		return "", fmt.Errorf("listener: unknown network %q", bound(network))
	}
}

// AnyPort reports whether a normalised tcp address asks for any free port
// (port 0). Such a listener is matched to an inherited one by name instead
// of by address.
func (s Spec) AnyPort() bool {
	if s.Network == NetworkUnix {
		return false
	}
	ap, err := netip.ParseAddrPort(s.Address)
	return err == nil && ap.Port() == 0
}

// Socket is a listening socket with its identity, as it is handed from one
// process to the next. Whoever holds it owns File.
type Socket struct {
	Spec Spec
	File *os.File
}
