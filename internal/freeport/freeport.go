// Package freeport picks TCP ports on 127.0.0.1 for tests that must name a
// port before a process binds it.
//
// A port asked of the kernel with port 0 comes from its ephemeral range,
// the range it also gives to outgoing connections: between the probe and
// the real bind, a client dialling anywhere on the machine (another test
// package running at the same time) may take it as its local port, and the
// bind fails with EADDRINUSE. Ports below that range are never given out
// by the kernel on its own, so only another explicit bind can clash.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is where the search starts: well above the well-known ports and
// the registered ports that daemons commonly use on a development machine.
const lowest = 20000

// Port returns a port on 127.0.0.1 that was free a moment ago, below the
// kernel's ephemeral range when that range leaves room, else from port 0.
func Port() (int, error) {
	hi := ephemeralStart() - 1
	if hi-lowest < 1000 {
		return kernelPort()
	}
	for i := 0; i < 200; i++ {
		p := lowest + rand.IntN(hi-lowest+1)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken: another
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("freeport: no free port below the ephemeral range in 200 tries")
}

func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralStart is the first port of the kernel's ephemeral range
// (32768, Linux's default, when it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1024 {
		return 32768
	}
	return n
}
