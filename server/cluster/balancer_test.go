package cluster

import (
	"testing"

	"github.com/mosnlite/mosnlite/config"
)

func testHosts(weights ...int) []*Host {
	hs := make([]*Host, len(weights))
	for i, w := range weights {
		hs[i] = newHost(i, "tcp", string(rune('a'+i)), w)
	}
	return hs
}

func pickSeq(t *testing.T, b balancer, hosts []*Host, n int) string {
	t.Helper()
	out := make([]byte, 0, n)
	for range n {
		h := b.pick(hosts, nil)
		if h == nil {
			t.Fatal("pick returned nil with healthy hosts")
		}
		out = append(out, h.address...)
	}
	return string(out)
}

func TestRoundRobinOrder(t *testing.T) {
	hosts := testHosts(1, 1, 1)
	b, err := newBalancer(config.LBRoundRobin, len(hosts))
	if err != nil {
		t.Fatal(err)
	}
	if got := pickSeq(t, b, hosts, 7); got != "abcabca" {
		t.Fatalf("sequence %q, want abcabca", got)
	}
}

func TestRoundRobinWeights(t *testing.T) {
	hosts := testHosts(3, 1, 2)
	b, _ := newBalancer(config.LBRoundRobin, len(hosts))
	seq := pickSeq(t, b, hosts, 60) // ten full rounds of total weight 6
	counts := map[rune]int{}
	for _, r := range seq {
		counts[r]++
	}
	if counts['a'] != 30 || counts['b'] != 10 || counts['c'] != 20 {
		t.Fatalf("counts %v, want a=30 b=10 c=20", counts)
	}
	// Smooth: the heaviest host is never picked three times in a row.
	for i := 0; i+2 < len(seq); i++ {
		if seq[i] == 'a' && seq[i+1] == 'a' && seq[i+2] == 'a' {
			t.Fatalf("sequence %q not smooth at %d", seq, i)
		}
	}
}

func TestRoundRobinSkipsUnhealthy(t *testing.T) {
	hosts := testHosts(1, 1, 1)
	hosts[1].healthy.Store(false)
	b, _ := newBalancer(config.LBRoundRobin, len(hosts))
	if got := pickSeq(t, b, hosts, 4); got != "acac" {
		t.Fatalf("sequence %q, want acac", got)
	}
}

func TestRandomCoversAllHosts(t *testing.T) {
	hosts := testHosts(1, 1, 1, 1)
	b, _ := newBalancer(config.LBRandom, len(hosts))
	seen := map[string]int{}
	for range 1000 {
		seen[b.pick(hosts, nil).address]++
	}
	for _, h := range hosts {
		if seen[h.address] == 0 {
			t.Fatalf("host %s never picked in 1000 picks: %v", h.address, seen)
		}
	}
}

func TestRandomWeightsAndUnhealthy(t *testing.T) {
	hosts := testHosts(1, 3, 1)
	hosts[2].healthy.Store(false)
	// Deterministic source: walk every value of [0,total).
	next := 0
	r := &random{intn: func(n int) int { v := next % n; next++; return v }}
	counts := map[string]int{}
	for range 8 {
		counts[r.pick(hosts, nil).address]++
	}
	if counts["a"] != 2 || counts["b"] != 6 || counts["c"] != 0 {
		t.Fatalf("counts %v, want a=2 b=6 c=0", counts)
	}
}

func TestLeastRequestPicksLeastLoaded(t *testing.T) {
	hosts := testHosts(1, 1, 1)
	b, _ := newBalancer(config.LBLeastRequest, len(hosts))
	for range 3 {
		hosts[0].Acquire()
	}
	hosts[2].Acquire()
	for range 5 {
		if h := b.pick(hosts, nil); h != hosts[1] {
			t.Fatalf("picked %s, want b (0 in flight)", h.address)
		}
	}
	hosts[1].healthy.Store(false)
	if h := b.pick(hosts, nil); h != hosts[2] {
		t.Fatalf("picked %s, want c (1 in flight, b unhealthy)", h.address)
	}
	hosts[2].Release()
	hosts[0].Release()
	if got := hosts[0].ActiveRequests(); got != 2 {
		t.Fatalf("a in flight = %d, want 2", got)
	}
}

func TestLeastRequestWeighted(t *testing.T) {
	hosts := testHosts(1, 4)
	b, _ := newBalancer(config.LBLeastRequest, len(hosts))
	hosts[1].Acquire()
	hosts[1].Acquire() // (2+1)/4 < (0+1)/1
	if h := b.pick(hosts, nil); h != hosts[1] {
		t.Fatalf("picked %s, want the heavier host b", h.address)
	}
}

func TestLeastRequestSpreadsTies(t *testing.T) {
	hosts := testHosts(1, 1, 1)
	b, _ := newBalancer(config.LBLeastRequest, len(hosts))
	seen := map[string]bool{}
	for range 3 {
		seen[b.pick(hosts, nil).address] = true
	}
	if len(seen) != 3 {
		t.Fatalf("ties went to %v, want all three hosts", seen)
	}
}

func TestNoEligibleHost(t *testing.T) {
	for _, lb := range []string{config.LBRoundRobin, config.LBRandom, config.LBLeastRequest} {
		hosts := testHosts(1, 1)
		for _, h := range hosts {
			h.healthy.Store(false)
		}
		b, _ := newBalancer(lb, len(hosts))
		if h := b.pick(hosts, nil); h != nil {
			t.Fatalf("%s picked %s with no healthy host", lb, h.address)
		}
	}
	if _, err := newBalancer("LB_MAGIC", 1); err == nil {
		t.Fatal("unknown lb_type accepted")
	}
}
