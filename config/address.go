package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// maxUnixPath is the longest unix socket path Linux accepts: sun_path is
// 108 bytes including the terminating NUL.
const maxUnixPath = 107

// sockAddr is a parsed listening address, used to find clashes.
type sockAddr struct {
	network string
	path    string         // unix: the cleaned path
	ap      netip.AddrPort // tcp
}

// String is the normalised address: "ip:port" or the cleaned unix path.
func (a sockAddr) String() string {
	if a.network == NetworkUnix {
		return a.path
	}
	return a.ap.String()
}

// clashes reports whether two listening sockets cannot both be bound: the
// same unix path, or the same tcp port on the same IP or on a wildcard that
// covers the other ("[::]" covers IPv4 too, as Go listens dual-stack).
// Port 0 asks for any free port and never clashes.
func (a sockAddr) clashes(b sockAddr) bool {
	if a.network != b.network {
		return false
	}
	if a.network == NetworkUnix {
		return a.path == b.path
	}
	if a.ap.Port() == 0 || a.ap.Port() != b.ap.Port() {
		return false
	}
	x, y := a.ap.Addr(), b.ap.Addr()
	return x == y || wildcardCovers(x, y) || wildcardCovers(y, x)
}

func wildcardCovers(w, x netip.Addr) bool {
	return w.IsUnspecified() && (w.Is6() || x.Is4())
}

// parseListenAddr checks a listening address for network ("" is tcp) and
// returns it parsed. Errors start with the quoted address, as in
// `"127.0.0.1:99999": port out of range`. A tcp host must be an IP literal;
// an empty host means 0.0.0.0.
func parseListenAddr(network, address string) (sockAddr, error) {
	if network == NetworkUnix {
		p, err := checkUnixPath(address)
		return sockAddr{network: NetworkUnix, path: p}, err
	}
	host, port, err := splitHostPort(address)
	if err != nil {
		return sockAddr{}, err
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return sockAddr{}, fmt.Errorf("%q: host %q is not an IP literal", address, host)
	}
	return sockAddr{network: NetworkTCP, ap: netip.AddrPortFrom(ip.Unmap().WithZone(ip.Zone()), port)}, nil
}

// checkDialAddr checks an upstream host address: for tcp, "host:port" with a
// port from 1 to 65535 and a host that is an IP literal or a DNS name.
func checkDialAddr(network, address string) error {
	if network == NetworkUnix {
		_, err := checkUnixPath(address)
		return err
	}
	host, port, err := splitHostPort(address)
	if err != nil {
		return err
	}
	if port == 0 {
		return fmt.Errorf("%q: port 0 cannot be dialled", address)
	}
	if host == "" {
		return fmt.Errorf("%q: missing host", address)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		return fmt.Errorf("%q: host %q is neither an IP literal nor a valid host name", address, host)
	}
	return nil
}

func splitHostPort(address string) (string, uint16, error) {
	if address == "" {
		return "", 0, fmt.Errorf("required")
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		if strings.HasPrefix(address, "/") || strings.HasPrefix(address, ".") {
			return "", 0, fmt.Errorf(`%q: not of the form ip:port (for a unix socket set network to "unix")`, address)
		}
		return "", 0, fmt.Errorf("%q: not of the form ip:port or [ipv6]:port", address)
	}
	if port == "" {
		return "", 0, fmt.Errorf("%q: missing port", address)
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return "", 0, fmt.Errorf("%q: invalid port %q", address, port)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port out of range (0-65535)", address)
	}
	return host, uint16(p), nil
}

func checkUnixPath(path string) (string, error) {
	switch {
	case path == "":
		return "", fmt.Errorf("required")
	case strings.IndexByte(path, 0) >= 0:
		return "", fmt.Errorf("%q: unix socket path contains a NUL byte", path)
	case len(path) > maxUnixPath:
		return "", fmt.Errorf("%q: unix socket path too long (%d bytes, at most %d)", path, len(path), maxUnixPath)
	}
	return filepath.Clean(path), nil
}

// validHostname accepts DNS names: dot-separated labels of letters, digits,
// '-' and '_', each 1-63 bytes, not starting or ending with '-'.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
