package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// durations returns n values a proxy sees: mostly log-normal around a few
// ms, some exactly on a classic bound, some zero, some above 30 s.
func durations(r *rand.Rand, n int) []float64 {
	bounds := ProxyBuckets()
	out := make([]float64, n)
	for i := range out {
		switch r.IntN(20) {
		case 0:
			out[i] = 0
		case 1, 2:
			out[i] = bounds[r.IntN(len(bounds))]
		case 3:
			out[i] = 30 + r.Float64()*100
		default:
			out[i] = math.Exp(r.NormFloat64()*2 - 5)
		}
	}
	return out
}

// gatherOne returns the one histogram metric family name of c, gathered
// through the Prometheus client.
func gatherOne(t *testing.T, c prometheus.Collector, name string) *dto.MetricFamily {
	t.Helper()
	preg := prometheus.NewRegistry()
	if err := preg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := preg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	t.Fatalf("no family %s", name)
	return nil
}

// TestHistogramMatchesPrometheusClient observes the same durations into a
// registry histogram and into the Prometheus Go client's own histogram with
// the same classic buckets and native schema, and compares what both expose.
func TestHistogramMatchesPrometheusClient(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	values := durations(r, 5000)

	reg := New()
	if err := reg.SetExposition(Exposition{NativeHistograms: true}); err != nil {
		t.Fatal(err)
	}
	h := reg.Histogram("http.downstream_rq_duration_seconds", "Request time.", nil, "listener", "web")
	ref := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "ref", Help: "ref", Buckets: ProxyBuckets(),
		NativeHistogramBucketFactor: 1.1, NativeHistogramZeroThreshold: NativeZeroThreshold,
	})
	for _, v := range values {
		h.ObserveSeconds(v)
		ref.Observe(v)
	}
	var want dto.Metric
	if err := ref.Write(&want); err != nil {
		t.Fatal(err)
	}
	mf := gatherOne(t, reg.Collector(), "mosnlite_http_downstream_rq_duration_seconds")
	if mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("type %v", mf.GetType())
	}
	got := mf.GetMetric()[0].GetHistogram()
	w := want.GetHistogram()
	if got.GetSampleCount() != w.GetSampleCount() || math.Abs(got.GetSampleSum()-w.GetSampleSum()) > 1e-9*w.GetSampleSum() {
		t.Errorf("count/sum %d/%v, client %d/%v", got.GetSampleCount(), got.GetSampleSum(), w.GetSampleCount(), w.GetSampleSum())
	}
	if len(got.GetBucket()) != len(w.GetBucket()) {
		t.Fatalf("%d classic buckets, client %d", len(got.GetBucket()), len(w.GetBucket()))
	}
	for i, b := range got.GetBucket() {
		wb := w.GetBucket()[i]
		if b.GetUpperBound() != wb.GetUpperBound() || b.GetCumulativeCount() != wb.GetCumulativeCount() {
			t.Errorf("bucket %d: le=%v %d, client le=%v %d", i, b.GetUpperBound(), b.GetCumulativeCount(), wb.GetUpperBound(), wb.GetCumulativeCount())
		}
	}
	if got.GetSchema() != w.GetSchema() || got.GetZeroThreshold() != w.GetZeroThreshold() || got.GetZeroCount() != w.GetZeroCount() {
		t.Errorf("schema/zero %d/%v/%d, client %d/%v/%d", got.GetSchema(), got.GetZeroThreshold(), got.GetZeroCount(),
			w.GetSchema(), w.GetZeroThreshold(), w.GetZeroCount())
	}
	// The client bridges gaps of one or two empty buckets inside a span;
	// compare the buckets the encodings stand for.
	gb, wb := decodeNative(t, got), decodeNative(t, w)
	if len(gb) != len(wb) || len(gb) < 20 {
		t.Fatalf("%d native buckets, client %d", len(gb), len(wb))
	}
	for k, n := range wb {
		if gb[k] != n {
			t.Errorf("native bucket %d: %d, client %d", k, gb[k], n)
		}
	}
}

// decodeNative decodes positive spans and deltas into index → count,
// leaving out empty buckets.
func decodeNative(t *testing.T, h *dto.Histogram) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	var idx int32
	var count int64
	d := 0
	for i, sp := range h.GetPositiveSpan() {
		idx += sp.GetOffset()
		if i > 0 && sp.GetOffset() < 0 {
			t.Fatalf("span %d has a negative offset", i)
		}
		for j := uint32(0); j < sp.GetLength(); j++ {
			count += h.GetPositiveDelta()[d]
			d++
			if count < 0 {
				t.Fatalf("bucket %d decodes to %d", idx, count)
			}
			if count > 0 {
				out[idx] = count
			}
			idx++
		}
	}
	if d != len(h.GetPositiveDelta()) {
		t.Fatalf("%d deltas for spans of %d buckets", len(h.GetPositiveDelta()), d)
	}
	return out
}

func TestNativeBucketsOnlyWhenAsked(t *testing.T) {
	reg := New()
	reg.Histogram("x_seconds", "", nil).ObserveSeconds(0.01)
	reg.Histogram("empty_seconds", "", nil)
	h := gatherOne(t, reg.Collector(), "mosnlite_x_seconds").GetMetric()[0].GetHistogram()
	if h.Schema != nil || len(h.GetPositiveSpan()) != 0 {
		t.Errorf("native buckets exposed without NativeHistograms: %v", h)
	}
	if err := reg.SetExposition(Exposition{NativeHistograms: true}); err != nil {
		t.Fatal(err)
	}
	h = gatherOne(t, reg.Collector(), "mosnlite_x_seconds").GetMetric()[0].GetHistogram()
	if h.GetSchema() != NativeSchema || len(h.GetPositiveSpan()) != 1 || len(h.GetPositiveDelta()) != 1 || h.GetPositiveDelta()[0] != 1 {
		t.Errorf("native buckets with NativeHistograms: %v", h)
	}
	// An empty native histogram carries an empty span, so that Prometheus
	// knows it is native before its first observation.
	e := gatherOne(t, reg.Collector(), "mosnlite_empty_seconds").GetMetric()[0].GetHistogram()
	if sp := e.GetPositiveSpan(); len(sp) != 1 || sp[0].GetLength() != 0 {
		t.Errorf("empty native histogram spans: %v", sp)
	}
}

// TestHistogramsCarryOverExactly is what a handoff does with histograms: the
// successor adds the predecessor's state, then every delta the predecessor
// pushes while it drains; the successor's exposition equals the
// predecessor's, and goes on from there.
func TestHistogramsCarryOverExactly(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	old := New()
	series := func(reg *Registry, listener string) *Histogram {
		return reg.Histogram("http.downstream_rq_duration_seconds", "Request time.", nil, "listener", listener)
	}
	for _, v := range durations(r, 300) {
		series(old, "a").ObserveSeconds(v)
	}
	series(old, "b").Observe(3 * time.Millisecond)

	manifest := old.Histograms()
	successor := New()
	series(successor, "a").ObserveSeconds(0.2) // the successor serves before the state arrives
	if err := successor.AddHistograms(manifest); err != nil {
		t.Fatal(err)
	}
	base := manifest
	for push := 0; push < 5; push++ {
		for _, v := range durations(r, 40) {
			series(old, "a").ObserveSeconds(v)
		}
		now := old.Histograms()
		if err := successor.AddHistograms(histsample.Delta(base, now)); err != nil {
			t.Fatal(err)
		}
		base = now
	}
	series(old, "a").ObserveSeconds(0.2) // what the successor observed itself
	want := old.Histograms()
	got := successor.Histograms()
	if len(got) != len(want) {
		t.Fatalf("%d series, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Count != w.Count || !slices.Equal(g.Counts, w.Counts) || !slices.Equal(g.Native, w.Native) ||
			g.ZeroCount != w.ZeroCount || math.Abs(g.Sum-w.Sum) > 1e-9 {
			t.Errorf("%s differs after the handoff:\n got %+v\nwant %+v", g.Describe(), g, w)
		}
	}
}

func TestAddHistogramsRefusesBadStates(t *testing.T) {
	reg := New()
	good := histsample.Histogram{Name: "ok_seconds", Bounds: []float64{1}, Counts: []uint64{1, 0}, Count: 1, Sum: 0.5,
		Schema: 3, ZeroThreshold: NativeZeroThreshold, Native: []histsample.Bucket{{Index: -8, Count: 1}}}
	bad := good.Clone()
	bad.Name, bad.Count = "bad_seconds", 7
	err := reg.AddHistograms([]histsample.Histogram{bad, good})
	if err == nil || !strings.Contains(err.Error(), "bad_seconds") || !strings.Contains(err.Error(), "count is 7") {
		t.Fatalf("error = %v", err)
	}
	hs := reg.Histograms()
	if len(hs) != 1 || hs[0].Name != "ok_seconds" || hs[0].Count != 1 {
		t.Fatalf("the good state should be applied, the bad one not: %+v", hs)
	}
}

// TestCoarserStateLowersTheSchema: a predecessor with coarser native buckets
// (another version) lowers the series' schema; later observations land in
// the coarser buckets.
func TestCoarserStateLowersTheSchema(t *testing.T) {
	reg := New()
	h := reg.Histogram("x_seconds", "", nil)
	h.ObserveSeconds(0.01)
	coarse := histsample.Histogram{Name: "x_seconds", Bounds: ProxyBuckets(), Counts: make([]uint64, len(ProxyBuckets())+1),
		Schema: 0, ZeroThreshold: NativeZeroThreshold}
	coarse.Counts[5], coarse.Count, coarse.Sum = 1, 1, 0.02
	coarse.Native = []histsample.Bucket{{Index: -5, Count: 1}} // (2^-6, 2^-5]: 0.02
	if err := reg.AddHistograms([]histsample.Histogram{coarse}); err != nil {
		t.Fatal(err)
	}
	h.ObserveSeconds(0.011)
	s := h.Snapshot()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// 0.01 and 0.011 are both in (2^-7, 2^-6] at schema 0: bucket -6.
	want := []histsample.Bucket{{Index: -6, Count: 2}, {Index: -5, Count: 1}}
	if s.Schema != 0 || !slices.Equal(s.Native, want) || s.Count != 3 {
		t.Fatalf("after a schema-0 state: schema %d native %v count %d", s.Schema, s.Native, s.Count)
	}
}

func TestObserveIgnoresNaNAndClampsNegative(t *testing.T) {
	reg := New()
	h := reg.Histogram("x_seconds", "", nil)
	h.ObserveSeconds(math.NaN())
	h.ObserveSeconds(math.Inf(1))
	h.Observe(-time.Second)
	s := h.Snapshot()
	if s.Count != 1 || s.ZeroCount != 1 || s.Counts[0] != 1 || s.Sum != 0 {
		t.Fatalf("%+v", s)
	}
}

func TestHistogramConcurrentObserveAndScrape(t *testing.T) {
	reg := New()
	if err := reg.SetExposition(Exposition{NativeHistograms: true}); err != nil {
		t.Fatal(err)
	}
	h := reg.Histogram("x_seconds", "", nil)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for _, v := range durations(r, 2000) {
				h.ObserveSeconds(v)
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for scrapes := 0; ; scrapes++ {
		s := h.Snapshot()
		if err := s.Validate(); err != nil { // every snapshot is consistent
			t.Fatalf("scrape %d: %v", scrapes, err)
		}
		select {
		case <-done:
			if s := h.Snapshot(); s.Count != 8000 {
				t.Fatalf("count %d, want 8000", s.Count)
			}
			return
		default:
		}
	}
}

func TestHistogramSummaryLine(t *testing.T) {
	reg := New()
	h := reg.Histogram("x_seconds", "", []float64{1, 2, 4}, "k", "v")
	for _, v := range []float64{0.5, 0.5, 1.5, 1.5, 3, 3, 3, 3} {
		h.ObserveSeconds(v)
	}
	var b strings.Builder
	if err := reg.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if want := `x_seconds{k="v"}: count=8 sum=16 p50=2 p90=3.6 p99=3.96` + "\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
	reg.Histogram("empty_seconds", "", nil)
	b.Reset()
	_ = reg.WriteText(&b)
	if !strings.Contains(b.String(), "empty_seconds: count=0 sum=0 p50=nan") {
		t.Fatalf("empty histogram line: %q", b.String())
	}
}

// BenchmarkObserve is the cost the data plane pays per observation, on one
// goroutine (serial) and on GOMAXPROCS goroutines sharing one series
// (parallel: the contention of a hot series). The values sweep 0.1 ms to
// 10 s, a proxy's range, so that every classic and most native buckets
// are hit.
func BenchmarkObserve(b *testing.B) {
	sweep := func(v float64) float64 {
		if v *= 1.01; v > 10 {
			return 0.0001
		}
		return v
	}
	b.Run("serial", func(b *testing.B) {
		h := New().Histogram("x_seconds", "", nil)
		b.ReportAllocs()
		v := 0.0001
		for b.Loop() {
			h.ObserveSeconds(v)
			v = sweep(v)
		}
	})
	// Many series observed in turn, as a proxy's per-listener, per-cluster
	// and per-host series are: the state of each is out of the CPU's caches
	// when the next observation comes.
	b.Run("series=4096", func(b *testing.B) {
		reg := New()
		hs := make([]*Histogram, 4096)
		for i := range hs {
			hs[i] = reg.Histogram("x_seconds", "", nil, "host", strconv.Itoa(i))
			for v := 0.0001; v < 10; v *= 1.01 { // warm: every series has its buckets
				hs[i].ObserveSeconds(v)
			}
		}
		b.ReportAllocs()
		v, i := 0.0001, 0
		for b.Loop() {
			hs[i].ObserveSeconds(v)
			v = sweep(v)
			if i++; i == len(hs) {
				i = 0
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		h := New().Histogram("x_seconds", "", nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			v := 0.0001
			for pb.Next() {
				h.ObserveSeconds(v)
				v = sweep(v)
			}
		})
	})
}
