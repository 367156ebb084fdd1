package stats

import (
	"strconv"
	"strings"
	"testing"
)

func TestViewChangesExposureNotCounters(t *testing.T) {
	r := New()
	r.Counter("a_total", "").Add(2)
	r.Gauge("g", "").Set(1)
	r.SetView(func(own []Sample) []Sample {
		out := append([]Sample(nil), own...)
		for i := range out {
			if out[i].Kind == KindGauge {
				out[i].Value += 10 // a parent's gauge
			}
		}
		return out
	})
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "g: 11\n") || !strings.Contains(b.String(), "a_total: 2\n") {
		t.Fatalf("exposed text:\n%s", b.String())
	}
	// What a handoff carries is the process's own counters, never the view.
	if c := r.Counters(); len(c) != 1 || c[0].Value != 2 {
		t.Fatalf("Counters = %v", c)
	}
	r.SetView(nil)
	if got := r.Exposed(); got[1].Value != 1 {
		t.Fatalf("after SetView(nil): %v", got)
	}
}

func TestDeltaAndAddCounters(t *testing.T) {
	r := New()
	c := r.Counter("x_total", "", "k", "v")
	c.Add(5)
	base := r.Counters()
	c.Add(3)
	r.Counter("y_total", "").Inc()
	d := Delta(base, r.Counters())
	other := New()
	other.AddCounters(base)
	other.AddCounters(d)
	if got := other.Counter("x_total", "", "k", "v").Value(); got != 8 {
		t.Fatalf("x carried = %v, want 8", got)
	}
	if got := other.Counter("y_total", "").Value(); got != 1 {
		t.Fatalf("y carried = %v, want 1", got)
	}
	// Gauges and non-positive values are never added.
	other.AddCounters([]Sample{{Name: "g", Kind: KindGauge, Value: 3}, {Name: "x_total", Labels: []string{"k", "v"}, Kind: KindCounter, Value: -1}})
	if other.Gauge("g", "").Value() != 0 || other.Counter("x_total", "", "k", "v").Value() != 8 {
		t.Fatal("AddCounters took a gauge or a negative value")
	}
}

// A peer's counters add series only up to MaxCarriedSeries: beyond, new
// series are refused with an error naming the limit, while those the
// registry has still add up. (Before: no bound, a peer grew the registry
// at will.)
func TestAddCountersIsBounded(t *testing.T) {
	r := New()
	r.maxCarried = 100
	r.Counter("kept_total", "").Inc()
	var flood []Sample
	for i := 0; i < r.maxCarried+10; i++ {
		flood = append(flood, Sample{Name: "flood_total", Labels: []string{"i", strconv.Itoa(i)}, Kind: KindCounter, Value: 1})
	}
	flood = append(flood, Sample{Name: "kept_total", Kind: KindCounter, Value: 2})
	err := r.AddCounters(flood)
	if err == nil || !strings.Contains(err.Error(), "MaxCarriedSeries") {
		t.Fatalf("AddCounters = %v, want the limit named", err)
	}
	if n := len(r.Snapshot()); n > r.maxCarried {
		t.Fatalf("%d series, over the limit of %d", n, r.maxCarried)
	}
	for _, s := range r.Snapshot() {
		if s.Name == "kept_total" && s.Value != 3 {
			t.Fatalf("kept_total = %v, want 3", s.Value)
		}
	}
}
