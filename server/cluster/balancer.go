package cluster

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/mosnlite/mosnlite/config"
)

// balancer picks one host among the healthy ones not in tried. It returns
// nil when none is.
type balancer interface {
	pick(hosts []*Host, tried []*Host) *Host
}

// eligible: healthy and not tried yet in this request.
func eligible(h *Host, tried []*Host) bool {
	if !h.Healthy() {
		return false
	}
	for _, t := range tried {
		if t == h {
			return false
		}
	}
	return true
}

func newBalancer(lbType string, nhosts int) (balancer, error) {
	switch lbType {
	case config.LBRoundRobin, config.LBWeightedRoundRobin, "":
		return &roundRobin{current: make([]int, nhosts)}, nil
	case config.LBRandom:
		return &random{intn: rand.IntN}, nil
	case config.LBLeastRequest:
		return &leastRequest{}, nil
	default:
		return nil, fmt.Errorf("unknown lb_type %q", lbType)
	}
}

// roundRobin is smooth weighted round robin: each pick, every eligible host
// gains its weight and the richest one is chosen and pays the total. Equal
// weights give plain rotation; weights 2:1 give a,b,a.
type roundRobin struct {
	mu      sync.Mutex
	current []int // by host index
}

func (r *roundRobin) pick(hosts []*Host, tried []*Host) *Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *Host
	total := 0
	for _, h := range hosts {
		if !eligible(h, tried) {
			continue
		}
		r.current[h.index] += h.weight
		total += h.weight
		if best == nil || r.current[h.index] > r.current[best.index] {
			best = h
		}
	}
	if best != nil {
		r.current[best.index] -= total
	}
	return best
}

// random picks an eligible host at random, in proportion to its weight.
type random struct {
	intn func(n int) int // injectable for tests; must be safe for concurrent use
}

func (r *random) pick(hosts []*Host, tried []*Host) *Host {
	total := 0
	for _, h := range hosts {
		if eligible(h, tried) {
			total += h.weight
		}
	}
	if total == 0 {
		return nil
	}
	n := r.intn(total)
	for _, h := range hosts {
		if !eligible(h, tried) {
			continue
		}
		if n < h.weight {
			return h
		}
		n -= h.weight
	}
	return nil // unreachable unless eligibility changed mid-pick
}

// leastRequest picks the eligible host with the fewest requests in flight
// relative to its weight; ties rotate so that an idle cluster spreads load.
type leastRequest struct {
	next atomic.Uint64
}

func (l *leastRequest) pick(hosts []*Host, tried []*Host) *Host {
	if len(hosts) == 0 {
		return nil
	}
	start := int(l.next.Add(1) % uint64(len(hosts)))
	var best *Host
	var bestLoad int64
	for i := range hosts {
		h := hosts[(start+i)%len(hosts)]
		if !eligible(h, tried) {
			continue
		}
		load := h.ActiveRequests()
		// load/weight < bestLoad/bestWeight, without division.
		if best == nil || (load+1)*int64(best.weight) < (bestLoad+1)*int64(h.weight) {
			best, bestLoad = h, load
		}
	}
	return best
}
