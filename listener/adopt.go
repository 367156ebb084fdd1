package listener

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/listener/ident"
)

// adopt turns an inherited socket into a net.Listener for the configured
// spec. The socket's real address (getsockname: family, IP and port, or
// path) must be the one its inherited entry names and the configured spec
// asks for: an entry that says 127.0.0.1 for a socket bound to 127.0.0.2 is
// refused, naming both. The file is always closed: net.FileListener holds
// its own duplicate. The kernel socket, with its accept queue, is the very
// one the previous process listened on.
func adopt(f *os.File, entry, configured Spec) (net.Listener, error) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("inspect fd: %w", err)
	}
	acc, serr := 0, error(nil)
	if err := rc.Control(func(fd uintptr) {
		acc, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	}); err != nil {
		return nil, fmt.Errorf("inspect fd: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("fd is not a socket: %w", serr)
	}
	if acc != 1 {
		return nil, fmt.Errorf("fd is not a listening socket")
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("file listener: %w", err)
	}
	got, err := boundSpec(ln, entry.Network)
	if err == nil {
		err = sameBound(got, entry, "its entry")
	}
	if err == nil {
		err = sameBound(got, configured, "the config")
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// boundSpec is the network and address a listening socket is really bound
// to, as getsockname reports them (net.FileListener reads them so).
func boundSpec(ln net.Listener, network string) (Spec, error) {
	switch a := ln.Addr().(type) {
	case *net.UnixAddr:
		// Never unlink: the path is the predecessor's too, then the successor's.
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		return Spec{Network: ident.NetworkUnix, Address: a.Name}, nil
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return Spec{}, fmt.Errorf("fd is bound to %s, not an IP address", a)
		}
		fam := ident.NetworkTCP6
		if ip.Is4() || ip.Is4In6() {
			fam = ident.NetworkTCP4
		}
		if network == ident.NetworkTCP {
			fam = ident.NetworkTCP // either family
		}
		return Spec{Network: fam, Address: netip.AddrPortFrom(ip.Unmap().WithZone(a.Zone), uint16(a.Port)).String()}, nil
	}
	return Spec{}, fmt.Errorf("unsupported listener type %T", ln)
}

// sameBound checks that a socket bound at got is the one want names.
func sameBound(got, want Spec, who string) error {
	gu, wu := got.Network == ident.NetworkUnix, want.Network == ident.NetworkUnix
	switch {
	case gu && !wu:
		return fmt.Errorf("fd is a unix socket, %s says %s", who, want.Network)
	case !gu && wu:
		return fmt.Errorf("fd is a tcp socket, %s says unix", who)
	case gu:
		if got.Address != want.Address {
			return fmt.Errorf("fd is bound to %s, %s says %s", got.Address, who, want.Address)
		}
		return nil
	}
	g, err := netip.ParseAddrPort(got.Address)
	w, werr := netip.ParseAddrPort(want.Address)
	if err != nil || werr != nil {
		return fmt.Errorf("fd bound to %s, %s says %s: unreadable", got.Address, who, want.Address)
	}
	if want.Network != ident.NetworkTCP && got.Network != ident.NetworkTCP && got.Network != want.Network {
		return fmt.Errorf("fd is a %s socket, %s says %s", got.Network, who, want.Network)
	}
	if w.Port() != 0 && g.Port() != w.Port() {
		return fmt.Errorf("fd is bound to port %d, %s says %d", g.Port(), who, w.Port())
	}
	// 0.0.0.0 and [::] are one dual-stack socket for network tcp.
	if g.Addr() != w.Addr() && !(g.Addr().IsUnspecified() && w.Addr().IsUnspecified()) {
		return fmt.Errorf("fd is bound to %s, %s says %s", got.Address, who, want.Address)
	}
	return nil
}
