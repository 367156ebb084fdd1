package listener

import "net/netip"

// sameSocket reports whether two normalised specs name one socket: same
// network and same address. For network "tcp" the IPv4 and IPv6 wildcards
// are one socket, because Go binds either as a dual-stack [::] socket.
func sameSocket(a, b Spec) bool {
	na, nb := a.Network, b.Network
	if na != nb {
		return false
	}
	if a.Address == b.Address {
		return true
	}
	if na != "tcp" {
		return false
	}
	pa, errA := netip.ParseAddrPort(a.Address)
	pb, errB := netip.ParseAddrPort(b.Address)
	if errA != nil || errB != nil || pa.Port() != pb.Port() {
		return false
	}
	return pa.Addr().IsUnspecified() && pb.Addr().IsUnspecified()
}

// sameAnyPortSlot reports whether an inherited spec can serve a configured
// port-0 spec: same kind, name and network, and the same host.
func sameAnyPortSlot(configured, inherited Spec) bool {
	if configured.Kind != inherited.Kind || configured.Name != inherited.Name ||
		configured.Network != inherited.Network {
		return false
	}
	pc, errC := netip.ParseAddrPort(configured.Address)
	pi, errI := netip.ParseAddrPort(inherited.Address)
	if errC != nil || errI != nil {
		return false
	}
	return pc.Addr() == pi.Addr() || (pc.Addr().IsUnspecified() && pi.Addr().IsUnspecified())
}
