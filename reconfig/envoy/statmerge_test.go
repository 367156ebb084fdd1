package envoy

import (
	"testing"

	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

func counter(name string, v float64, labels ...string) sample.Sample {
	return sample.Sample{Name: name, Labels: labels, Kind: sample.KindCounter, Value: v}
}

func gauge(name string, v float64, labels ...string) sample.Sample {
	return sample.Sample{Name: name, Labels: labels, Kind: sample.KindGauge, Value: v}
}

func byKey(ss []sample.Sample) map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		out[s.Key()] = s.Value
	}
	return out
}

func TestStatMergerCountersContinue(t *testing.T) {
	m := NewStatMerger(nil, nil)
	d := byKey(m.Merge([]sample.Sample{counter("a_total", 5), counter("b_total", 2, "listener", "l1"), gauge("g", 9)}))
	if len(d) != 2 || d["a_total"] != 5 || d[`b_total{listener="l1"}`] != 2 {
		t.Fatalf("first merge deltas %v", d)
	}
	d = byKey(m.Merge([]sample.Sample{counter("a_total", 7), counter("b_total", 2, "listener", "l1"), counter("c_total", 1)}))
	if len(d) != 2 || d["a_total"] != 2 || d["c_total"] != 1 {
		t.Fatalf("second merge deltas %v (only growth)", d)
	}
	reg := stats.New()
	reg.AddCounters(m.Merge([]sample.Sample{counter("a_total", 10)}))
	if reg.Counter("a_total", "").Value() != 3 {
		t.Fatal("deltas do not apply to a registry")
	}
	m.ParentGone()
	if d := m.Merge([]sample.Sample{counter("a_total", 100)}); d != nil {
		t.Fatalf("merge after the parent is gone: %v", d)
	}
}

func TestStatMergerOverlayGauges(t *testing.T) {
	m := NewStatMerger(nil, nil)
	m.Merge([]sample.Sample{
		gauge("server.total_connections", 3), gauge("server.live", 1), gauge("parent_only", 4),
		gauge("server.hot_restart_generation", 1), counter("a_total", 5),
	})
	own := []sample.Sample{
		gauge("server.total_connections", 2), gauge("server.live", 1), gauge("server.hot_restart_generation", 1),
		counter("a_total", 5),
	}
	v := byKey(m.Overlay(own))
	want := map[string]float64{
		"server.total_connections": 5, "server.live": 1, "parent_only": 4,
		"server.hot_restart_generation": 2, "a_total": 5,
	}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %v, want %v (view %v)", k, v[k], w, v)
		}
	}
	if len(v) != len(want) {
		t.Errorf("view has %d series, want %d: %v", len(v), len(want), v)
	}
	// A later snapshot replaces the parent's gauge values (they are not summed up over time).
	m.Merge([]sample.Sample{gauge("server.total_connections", 1)})
	if v := byKey(m.Overlay(own)); v["server.total_connections"] != 3 || v["parent_only"] != 0 {
		t.Fatalf("after a new snapshot %v", v)
	}
	m.Merge([]sample.Sample{gauge("server.total_connections", 1), gauge("server.hot_restart_generation", 1)})
	m.ParentGone()
	v = byKey(m.Overlay(own))
	if v["server.total_connections"] != 2 || v["server.hot_restart_generation"] != 2 {
		t.Fatalf("after the parent is gone %v: gauges must drop the parent, the generation must stay", v)
	}
	// The overlay is sorted by key.
	out := m.Overlay(own)
	for i := 1; i < len(out); i++ {
		if out[i-1].Key() > out[i].Key() {
			t.Fatalf("overlay not sorted: %v", out)
		}
	}
}

func TestStatMergerGenerationAcrossEpochs(t *testing.T) {
	own := func() []sample.Sample { return []sample.Sample{gauge("server.hot_restart_generation", 1)} }
	gen := func(ss []sample.Sample) float64 { return byKey(ss)["server.hot_restart_generation"] }

	m0 := NewStatMerger(nil, nil) // epoch 0: no parent
	m0.ParentGone()
	if g := gen(m0.Overlay(own())); g != 1 {
		t.Fatalf("epoch 0 generation %v", g)
	}
	m1 := NewStatMerger(nil, nil)
	m1.Merge(m0.Overlay(own()))
	if g := gen(m1.Overlay(own())); g != 2 {
		t.Fatalf("epoch 1 generation %v", g)
	}
	m2 := NewStatMerger(nil, nil)
	m2.Merge(m1.Overlay(own()))
	m1.ParentGone()
	m2.Merge(m1.Overlay(own()))
	if g := gen(m2.Overlay(own())); g != 3 {
		t.Fatalf("epoch 2 generation %v", g)
	}
	m2.ParentGone()
	if g := gen(m2.Overlay(own())); g != 3 {
		t.Fatalf("epoch 2 generation after its parents exited %v", g)
	}
}

func TestStatMergerCustomLists(t *testing.T) {
	m := NewStatMerger([]string{"x"}, []string{})
	m.Merge([]sample.Sample{gauge("x", 5), gauge("server.live", 1), gauge("server.hot_restart_generation", 1)})
	v := byKey(m.Overlay(nil))
	if v["x"] != 0 || v["server.live"] != 1 {
		t.Fatalf("custom no-import list not used: %v", v)
	}
	m.ParentGone()
	if v := byKey(m.Overlay(nil)); len(v) != 0 {
		t.Fatalf("nothing is retained with an empty retain list: %v", v)
	}
}
