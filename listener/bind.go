package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
)

// staleProbeTimeout bounds the dial that tells a live unix socket from a stale file.
const staleProbeTimeout = time.Second

// bind opens a fresh listening socket for a normalised spec and returns it
// with the spec's Address set to what was bound (the real port for port 0).
func bind(spec Spec) (net.Listener, Spec, error) {
	switch spec.Network {
	case "unix":
		if err := clearStaleUnix(spec.Address); err != nil {
			return nil, spec, err
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: spec.Address, Net: "unix"})
		if err != nil {
			return nil, spec, fmt.Errorf("bind: %w", err)
		}
		ln.SetUnlinkOnClose(false)
		return ln, spec, nil
	default:
		var lc net.ListenConfig
		ln, err := lc.Listen(context.Background(), spec.Network, spec.Address)
		if err != nil {
			return nil, spec, fmt.Errorf("bind: %w", err)
		}
		if spec.AnyPort() {
			// Keep the configured host (Go reports 0.0.0.0 as [::]) with the real port.
			ap, perr := netip.ParseAddrPort(spec.Address)
			ta, ok := ln.Addr().(*net.TCPAddr)
			if perr != nil || !ok {
				ln.Close()
				return nil, spec, fmt.Errorf("bind: cannot read bound port of %s", ln.Addr())
			}
			spec.Address = netip.AddrPortFrom(ap.Addr(), uint16(ta.Port)).String()
		}
		return ln, spec, nil
	}
}

// clearStaleUnix removes a socket file at path when nobody accepts on it.
// A live socket or a file that is not a socket is an error; nothing is removed.
func clearStaleUnix(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: address in use by a live listener", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// portOf returns the port of a normalised tcp address, or -1.
func portOf(address string) int {
	_, p, err := net.SplitHostPort(address)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return n
}
