package stats

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

func exposedCount(r *Registry, name string) (uint64, bool) {
	for _, h := range r.ExposedHistograms() {
		if h.Name == name {
			return h.Count, true
		}
	}
	return 0, false
}

// TestFreezeShowsWhatWasTaken: frozen, the registry exposes its counters and
// histograms as they were (series created since are left out), gauges live,
// and goes on counting underneath; Freeze again returns the first
// snapshot; Unfreeze shows the live values.
func TestFreezeShowsWhatWasTaken(t *testing.T) {
	r := New()
	c := r.Counter("a_total", "")
	c.Add(2)
	g := r.Gauge("g", "")
	h := r.Histogram("rq_seconds", "", nil)
	h.ObserveSeconds(0.01)
	counters, hists := r.Freeze()
	if len(counters) != 1 || counters[0].Value != 2 || len(hists) != 1 || hists[0].Count != 1 {
		t.Fatalf("Freeze took %v %v", counters, hists)
	}
	c.Inc()
	g.Set(7)
	h.ObserveSeconds(0.02)
	r.Counter("new_total", "").Inc()
	r.Histogram("new_seconds", "", nil).ObserveSeconds(1)
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a_total: 2\n", "g: 7\n", "rq_seconds: count=1 "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("frozen /stats lacks %q:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "new_") {
		t.Errorf("series created after the freeze are exposed:\n%s", text.String())
	}
	if n, _ := exposedCount(r, "rq_seconds"); n != 1 {
		t.Errorf("exposed histogram count %d, want 1", n)
	}
	if got := r.Counters(); fmt.Sprint(got) == fmt.Sprint(counters) {
		t.Error("the registry stopped counting underneath")
	}
	if un := r.Unfrozen(); len(un) != 3 {
		t.Errorf("Unfrozen: %v", un)
	}
	if again, _ := r.Freeze(); again[0].Value != 2 {
		t.Errorf("a second Freeze took a new snapshot: %v", again)
	}
	r.Unfreeze()
	if n, _ := exposedCount(r, "rq_seconds"); n != 2 {
		t.Errorf("after Unfreeze: %d, want 2", n)
	}
	if _, ok := exposedCount(r, "new_seconds"); !ok {
		t.Error("after Unfreeze a new series is still hidden")
	}
}

// TestAddHistogramsRefusesWhatIsNotAHistogramBounded: states that fail
// validation, or repeat a series, are skipped; the others are applied; the
// error names a few and counts the rest, short whatever was sent.
func TestAddHistogramsRefusesWhatIsNotAHistogramBounded(t *testing.T) {
	src := New()
	src.Histogram("ok_seconds", "", nil).ObserveSeconds(0.1)
	good := src.Histograms()[0]
	states := []histsample.Histogram{good, good}
	for i := 0; i < 100; i++ {
		b := good.Clone()
		b.Name = strings.Repeat("long", 10_000) + fmt.Sprint(i)
		b.Counts = b.Counts[1:]
		states = append(states, b)
	}
	r := New()
	err := r.AddHistograms(states)
	if err == nil || !strings.Contains(err.Error(), "101 histogram states refused") || !strings.Contains(err.Error(), "and 98 more") || !strings.Contains(err.Error(), "given twice") {
		t.Fatalf("error: %.300v", err)
	}
	if len(err.Error()) > 2000 {
		t.Fatalf("error of %d bytes", len(err.Error()))
	}
	if hs := r.Histograms(); len(hs) != 1 || hs[0].Count != 1 {
		t.Fatalf("applied %+v", hs)
	}
}
