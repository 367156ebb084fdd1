package listener

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/listener/ident"
)

// Activated is a listening socket that a process manager bound and handed
// this process at start — systemd's socket activation (LISTEN_FDS) — with
// the name the manager gave it (FileDescriptorName=; "" or "unknown" when
// it gave none). Errors name the socket by Name and File.Name().
type Activated struct {
	Name string
	File *os.File
}

// MatchActivated gives each activated socket the identity of the configured
// listener it belongs to: the listener of the same name, else the one whose
// address is the address the socket is really bound to (getsockname; a
// port-0 listener matches by name only). The result is for NewSet, which
// adopts these sockets as it adopts sockets inherited from a predecessor
// (and checks the bound address once more). Configured listeners that no
// socket matches are bound as usual.
//
// A socket that is not a listening stream socket, that matches no
// listener, that matches a listener by name but is bound elsewhere, or
// that matches a listener another socket took already, is an error naming
// it. The files are the caller's until MatchActivated returns; from then on
// they are the result's, and on error every one is closed.
func MatchActivated(configured []Spec, act []Activated) (_ []Inherited, err error) {
	defer func() {
		if err != nil {
			for _, a := range act {
				a.File.Close()
			}
		}
	}()
	taken := map[int]string{} // configured index → the socket that took it
	out := make([]Inherited, 0, len(act))
	for _, a := range act {
		what := fmt.Sprintf("socket %q (%s)", a.Name, a.File.Name())
		got, err := activatedSpec(a.File)
		if err != nil {
			return nil, fmt.Errorf("listener: socket activation: %s: %w", what, err)
		}
		what = fmt.Sprintf("%s, bound to %s %s", what, got.Network, got.Address)
		i := -1
		for j, c := range configured {
			if a.Name != "" && c.Name == a.Name {
				i = j
				break
			}
		}
		if i >= 0 {
			if err := sameBound(got, configured[i], "its listener"); err != nil {
				return nil, fmt.Errorf("listener: socket activation: %s, has the name of listener %s but %w", what, configured[i], err)
			}
		} else {
			for j, c := range configured {
				if !c.AnyPort() && sameBound(got, c, "") == nil {
					i = j
					break
				}
			}
		}
		if i < 0 {
			return nil, fmt.Errorf("listener: socket activation: %s, matches no configured listener by name or address", what)
		}
		if other, dup := taken[i]; dup {
			return nil, fmt.Errorf("listener: socket activation: %s, is for listener %s, which %s took already", what, configured[i], other)
		}
		taken[i] = what
		entry := configured[i]
		if entry.AnyPort() {
			entry.Address = got.Address // the port the manager bound
		}
		out = append(out, Inherited{Spec: entry, File: a.File})
	}
	return out, nil
}

// activatedSpec is the network and address a passed socket is bound to; it
// must be a listening stream socket.
func activatedSpec(f *os.File) (Spec, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return Spec{}, fmt.Errorf("inspect fd: %w", err)
	}
	var (
		typ, acc int
		sa       unix.Sockaddr
		serr     error
	)
	if err := rc.Control(func(fd uintptr) {
		if typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); serr != nil {
			return
		}
		if acc, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN); serr != nil {
			return
		}
		sa, serr = unix.Getsockname(int(fd))
	}); err != nil {
		return Spec{}, fmt.Errorf("inspect fd: %w", err)
	}
	switch {
	case errors.Is(serr, unix.ENOTSOCK):
		return Spec{}, errors.New("not a socket")
	case serr != nil:
		return Spec{}, fmt.Errorf("inspect socket: %w", serr)
	case typ != unix.SOCK_STREAM:
		return Spec{}, errors.New("not a stream socket (ListenStream= is what mosnlite serves)")
	case acc != 1:
		return Spec{}, errors.New("not a listening socket (Accept=yes passes connections, not listeners)")
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return Spec{Network: ident.NetworkTCP4, Address: netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()}, nil
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr).Unmap()
		fam := ident.NetworkTCP6
		if ip.Is4() {
			fam = ident.NetworkTCP4
		}
		return Spec{Network: fam, Address: netip.AddrPortFrom(ip, uint16(a.Port)).String()}, nil
	case *unix.SockaddrUnix:
		if a.Name == "" || a.Name[0] == '@' || a.Name[0] == 0 {
			return Spec{}, fmt.Errorf("an abstract or unnamed unix socket (%q): mosnlite's unix listeners are paths", a.Name)
		}
		return Spec{Network: ident.NetworkUnix, Address: a.Name}, nil
	}
	return Spec{}, fmt.Errorf("unsupported address family %T", sa)
}
