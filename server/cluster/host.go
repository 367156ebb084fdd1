package cluster

import "sync/atomic"

// Host is one upstream address of a cluster.
type Host struct {
	index    int // position in the cluster's host list
	address  string
	hostname string // config's hostname, "" if none
	network  string
	weight   int
	plain    bool // tls_disable: no TLS to this host in a TLS cluster

	healthy atomic.Bool
	active  atomic.Int64 // requests or sessions in flight, for least-request
	pool    pool         // idle upstream connections
}

func newHost(index int, network, address string, weight int) *Host {
	if network == "" {
		network = "tcp"
	}
	if weight <= 0 {
		weight = 1
	}
	h := &Host{index: index, address: address, network: network, weight: weight}
	h.healthy.Store(true)
	return h
}

// Address returns the host's address ("ip:port" or a unix socket path).
func (h *Host) Address() string { return h.address }

// Hostname returns the host's configured name ("" if none).
func (h *Host) Hostname() string { return h.hostname }

// Healthy reports whether the host may be picked.
func (h *Host) Healthy() bool { return h.healthy.Load() }

// Acquire counts one more request or session in flight on h.
func (h *Host) Acquire() { h.active.Add(1) }

// Release undoes one Acquire.
func (h *Host) Release() { h.active.Add(-1) }

// ActiveRequests returns the number of requests or sessions in flight on h.
func (h *Host) ActiveRequests() int64 { return h.active.Load() }

func (h *Host) String() string { return h.network + "://" + h.address }
