package envoy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// hist is a consistent histogram state of n observations of 2 ms.
func hist(name string, n uint64, labels ...string) histsample.Histogram {
	return histsample.Histogram{
		Name: name, Labels: labels,
		Bounds: []float64{0.001, 0.01}, Counts: []uint64{0, n, 0}, Count: n, Sum: 0.002 * float64(n),
		Schema: 3, ZeroThreshold: 1e-9, Native: []histsample.Bucket{{Index: -71, Count: n}},
	}
}

// parentAndChild serves h0 as a parent (epoch 0, initialized) whose
// histograms are hists, and opens its child.
func parentAndChild(t *testing.T, fam *family, h0 *HotRestart, p0 *fakeProcess, hists func() []histsample.Histogram) *HotRestart {
	t.Helper()
	hooks := p0.hooks()
	hooks.Histograms = hists
	serve(t, h0, hooks)
	if _, err := h0.DrainParentListeners(ctx5(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	h1, err := fam.open(1)
	if err != nil {
		t.Fatal(err)
	}
	return h1
}

// TestParentStatsCarryHistogramsInParts: a child that asks gets the
// parent's histograms too, in as many reply parts as the frame limit needs;
// an older child, which asks for nothing, gets one reply of counters and
// gauges, as before.
func TestParentStatsCarryHistogramsInParts(t *testing.T) {
	fam := newFamily(t, true)
	cfg := fam.config(0)
	cfg.MaxStatsFrame = 2 << 10
	h0, err := Open(ctx5(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p0 := newFakeProcess(t)
	var samples []sample.Sample
	var hists []histsample.Histogram
	for i := 0; i < 30; i++ {
		samples = append(samples, counter("cx_total", float64(i), "listener", fmt.Sprint(i)))
		hists = append(hists, hist("rq_seconds", uint64(i+1), "listener", fmt.Sprint(i)))
	}
	p0.setStats(samples...)
	h1 := parentAndChild(t, fam, h0, p0, func() []histsample.Histogram { return hists })
	got, err := h1.ParentStats(ctx5(t))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Samples) != fmt.Sprint(samples) || fmt.Sprint(got.Histograms) != fmt.Sprint(hists) {
		t.Fatalf("ParentStats:\n%+v\nwant\n%+v %+v", got, samples, hists)
	}
	// The reply came in parts: one frame of it cannot hold it all.
	if b, _ := jsonSize(statsReply{Samples: samples, Histograms: hists}); b <= 2*cfg.MaxStatsFrame {
		t.Fatalf("the reply is only %d bytes: it tests nothing", b)
	}
	// An older child's request (no payload) is answered in one part,
	// without histograms.
	f, err := h1.roundTrip(ctx5(t), msgStats, nil, msgStatsReply)
	if err != nil {
		t.Fatal(err)
	}
	var old statsReply
	if err := f.decode(&old); err != nil || len(old.Samples) != 30 || old.Histograms != nil || old.More {
		t.Fatalf("older child's reply: %d samples, %d histograms, more %v, %v", len(old.Samples), len(old.Histograms), old.More, err)
	}
	// And the stream is still in step.
	if again, err := h1.ParentStats(ctx5(t)); err != nil || len(again.Histograms) != 30 {
		t.Fatalf("after: %d %v", len(again.Histograms), err)
	}
}

// TestStatMergerHistogramsContinue: the child gets each parent histogram's
// growth once; a state that is not a histogram is refused, named once, and
// keeps the last good state as its base; nothing after the parent is gone.
func TestStatMergerHistogramsContinue(t *testing.T) {
	m := NewStatMerger(nil, nil)
	reg := stats.New()
	merge := func(parent ...histsample.Histogram) error {
		t.Helper()
		d, err := m.MergeHistograms(parent)
		if aerr := reg.AddHistograms(d); aerr != nil {
			t.Fatalf("the merger's deltas are refused: %v", aerr)
		}
		return err
	}
	count := func(name string) uint64 {
		for _, h := range reg.Histograms() {
			if h.Name == name {
				return h.Count
			}
		}
		return 0
	}
	if err := merge(hist("a_seconds", 3), hist("b_seconds", 1)); err != nil {
		t.Fatal(err)
	}
	if err := merge(hist("a_seconds", 5), hist("b_seconds", 1)); err != nil {
		t.Fatal(err)
	}
	if count("a_seconds") != 5 || count("b_seconds") != 1 {
		t.Fatalf("a %d b %d, want 5 1", count("a_seconds"), count("b_seconds"))
	}
	bad := hist("a_seconds", 9)
	bad.Count = 10 // buckets hold 9
	err := merge(bad, hist("b_seconds", 2))
	if err == nil || !strings.Contains(err.Error(), "a_seconds") {
		t.Fatalf("a bad state: %v", err)
	}
	if err := merge(bad, hist("b_seconds", 2)); err != nil {
		t.Fatalf("the same bad series named twice: %v", err)
	}
	if count("a_seconds") != 5 || count("b_seconds") != 2 {
		t.Fatalf("after a bad state: a %d b %d, want 5 2", count("a_seconds"), count("b_seconds"))
	}
	if err := merge(hist("a_seconds", 7), hist("b_seconds", 2)); err != nil || count("a_seconds") != 7 {
		t.Fatalf("a good state again: a %d, %v", count("a_seconds"), err)
	}
	m.ParentGone()
	if d, err := m.MergeHistograms([]histsample.Histogram{hist("a_seconds", 100)}); d != nil || err != nil {
		t.Fatalf("after the parent is gone: %v %v", d, err)
	}
}

// TestSyncParentStatsMergesHistograms: through the real protocol, a child's
// registry holds the parent's observations, and only their growth is added
// by later syncs, up to the final one before the parent is terminated.
func TestSyncParentStatsMergesHistograms(t *testing.T) {
	fam := newFamily(t, true)
	h0, p0 := fam.epoch0(t)
	reg0 := stats.New()
	rq := reg0.Histogram("rq_seconds", "", nil, "listener", "web")
	for i := 0; i < 4; i++ {
		rq.ObserveSeconds(0.003)
	}
	h1 := parentAndChild(t, fam, h0, p0, reg0.Histograms)
	reg1 := stats.New()
	own := reg1.Histogram("rq_seconds", "", nil, "listener", "web")
	own.ObserveSeconds(0.2)
	h1.AttachStats(NewStatMerger(nil, nil), reg1)
	sync := func() uint64 {
		t.Helper()
		if err := h1.SyncParentStats(ctx5(t)); err != nil {
			t.Fatal(err)
		}
		return own.Snapshot().Count
	}
	if n := sync(); n != 5 {
		t.Fatalf("after the first sync: %d observations, want 5", n)
	}
	if n := sync(); n != 5 {
		t.Fatalf("a sync without growth added %d", n-5)
	}
	rq.ObserveSeconds(0.004)
	if n := sync(); n != 6 {
		t.Fatalf("after growth: %d, want 6", n)
	}
	rq.ObserveSeconds(0.004)
	if _, err := h1.DrainParentListeners(ctx5(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := h1.TerminateParent(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := own.Snapshot(); got.Count != 7 || got.Counts[3] != 6 {
		t.Fatalf("after the final sync: %+v", got)
	}
}

func jsonSize(v any) (int, error) {
	b, err := json.Marshal(v)
	return len(b), err
}
