package stats

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// refHist is a histogram series done the plain way (as the registry's was
// before its native window): a binary search of the classic bounds, the
// native index from math.Frexp and a search of the split points, a map of
// native buckets. Its snapshot is what the registry's must equal.
type refHist struct {
	s      histsample.Histogram // Native unused: native holds the buckets
	native map[int32]uint64
	splits []float64 // 2^(j/8 - 1), j = 0 … 7
}

func newRefHist(bounds []float64) *refHist {
	r := &refHist{
		s: histsample.Histogram{Name: "x_seconds", Bounds: bounds, Counts: make([]uint64, len(bounds)+1),
			Schema: NativeSchema, ZeroThreshold: NativeZeroThreshold},
		native: map[int32]uint64{},
	}
	for j := range 1 << NativeSchema {
		r.splits = append(r.splits, math.Exp2(float64(j)/(1<<NativeSchema)-1))
	}
	return r
}

func (r *refHist) observe(v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	v = max(v, 0)
	r.s.Counts[sort.SearchFloat64s(r.s.Bounds, v)]++
	r.s.Count++
	r.s.Sum += v
	if v <= r.s.ZeroThreshold {
		r.s.ZeroCount++
		return
	}
	frac, exp := math.Frexp(v)
	k := int32(sort.SearchFloat64s(r.splits, frac) + (exp-1)*len(r.splits))
	if d := NativeSchema - r.s.Schema; d > 0 {
		k = ((k - 1) >> d) + 1
	}
	r.native[k]++
}

func (r *refHist) snapshot() histsample.Histogram {
	out := r.s.Clone()
	out.Native = []histsample.Bucket{}
	for k, n := range r.native {
		out.Native = append(out.Native, histsample.Bucket{Index: k, Count: n})
	}
	slices.SortFunc(out.Native, func(a, b histsample.Bucket) int { return int(a.Index) - int(b.Index) })
	return out
}

func (r *refHist) add(s histsample.Histogram) {
	m := histsample.Add(r.snapshot(), s)
	r.s = m
	r.native = map[int32]uint64{}
	for _, b := range m.Native {
		r.native[b.Index] = b.Count
	}
}

// Value generators for the model test: what a proxy sees, values across
// far more than the native window, and values that arrive in an order that
// makes the window grow both ways and take over buckets first counted
// beyond it.
var refGenerators = map[string]func(r *rand.Rand, i int) float64{
	"proxy": func(r *rand.Rand, i int) float64 {
		return durations(r, 1)[0]
	},
	"wide": func(r *rand.Rand, i int) float64 {
		switch r.IntN(50) {
		case 0:
			return 0
		case 1:
			return -r.Float64()
		case 2:
			return math.NaN()
		case 3:
			return math.Inf(1)
		case 4:
			return math.Ldexp(1, r.IntN(300)-200) // an exact bucket bound
		}
		return math.Exp2(r.Float64()*200 - 160) // 2^-160 … 2^40
	},
	"outliers first": func(r *rand.Rand, i int) float64 {
		switch {
		case i < 4:
			return []float64{1e-9, 1e4, 1e-30, 1e9}[i]
		case i%97 == 0:
			return math.Exp2(r.Float64()*120 - 100)
		}
		// A cluster that drifts down, then up, across 2^-40 … 2^10.
		x := float64(i%2000) / 2000
		if (i/2000)%2 == 1 {
			x = 1 - x
		}
		return math.Exp2(x*50-40) * (1 + r.Float64()/10)
	},
}

// TestHistogramMatchesReference observes random values into a registry
// series and into refHist, merging in the same predecessor states (one at
// a lower schema, one with a wider zero bucket) on the way, and compares
// their snapshots every few hundred observations.
func TestHistogramMatchesReference(t *testing.T) {
	for name, gen := range refGenerators {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(len(name))))
			reg := New()
			h := reg.Histogram("x_seconds", "", nil)
			ref := newRefHist(ProxyBuckets())
			compare := func(when string) {
				t.Helper()
				got, want := h.Snapshot(), ref.snapshot()
				if err := got.Validate(); err != nil {
					t.Fatalf("%s: %v", when, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: snapshot differs from the reference's:\n got %+v\nwant %+v", when, got, want)
				}
			}
			compare("empty")
			for i := range 30000 {
				v := gen(r, i)
				h.ObserveSeconds(v)
				ref.observe(v)
				if i%701 == 0 {
					compare("after " + name)
				}
				switch i {
				case 10000: // a predecessor at schema 1 with a zero bucket of 2^-100
					p := predecessor(r, gen, 1, math.Ldexp(1, -100))
					if err := reg.AddHistograms([]histsample.Histogram{p}); err != nil {
						t.Fatal(err)
					}
					ref.add(p)
					compare("after merging a coarser state")
				case 20000: // one at the series' layout now (schema 1), as at every handoff
					p := predecessor(r, gen, 1, math.Ldexp(1, -100))
					if err := reg.AddHistograms([]histsample.Histogram{p}); err != nil {
						t.Fatal(err)
					}
					ref.add(p)
					compare("after merging a second state")
				}
			}
			compare("at the end")
			w := h.h
			if len(w.window) > maxWindow {
				t.Errorf("native window of %d buckets, at most %d", len(w.window), maxWindow)
			}
		})
	}
}

// predecessor is the state of another process's series at schema with zero
// threshold zero, holding 3000 values of gen.
func predecessor(r *rand.Rand, gen func(*rand.Rand, int) float64, schema int32, zero float64) histsample.Histogram {
	p := newRefHist(ProxyBuckets())
	for i := range 3000 {
		p.observe(gen(r, i))
	}
	s := p.snapshot().ReduceSchema(schema).WidenZero(zero)
	return s
}

// TestNativeWindowStaysBounded: a series that saw values over the whole
// range of float64 keeps a window of at most maxWindow buckets and a map
// entry per populated bucket beyond it, and one that saw a proxy's
// latencies needs no map at all.
func TestNativeWindowStaysBounded(t *testing.T) {
	reg := New()
	empty := reg.Histogram("empty_seconds", "", nil).h
	if empty.window != nil || empty.far != nil {
		t.Errorf("an empty series has native storage: window %d, far %d", len(empty.window), len(empty.far))
	}
	// 1 µs to 100 s, 27 powers of two, rising or falling: all in the window.
	for _, rising := range []bool{true, false} {
		h := reg.Histogram("x_seconds", "", nil, "rising", strconv.FormatBool(rising))
		for v := 1e-6; v < 100; v *= 1.01 {
			if rising {
				h.ObserveSeconds(v)
			} else {
				h.ObserveSeconds(1e-4 / v)
			}
		}
		if w := h.h; w.far != nil || len(w.window) > maxWindow {
			t.Errorf("1 µs … 100 s, rising %v: window %d buckets, %d beyond it", rising, len(w.window), len(w.far))
		}
	}
	h := reg.Histogram("x_seconds", "", nil)
	for v := 1e-35; v < 1e35; v *= 1.01 {
		h.ObserveSeconds(v)
	}
	s := h.Snapshot()
	if w := h.h; len(w.window) != maxWindow || len(w.far) == 0 || len(w.far)+maxWindow < len(s.Native) {
		t.Errorf("1e-35 … 1e35: window %d buckets, %d beyond it, for %d native buckets", len(w.window), len(w.far), len(s.Native))
	}
}

// TestClassicBucketsMatchASearch observes values on, next to and between
// the bounds of several layouts (the two the proxy uses, bounds closer than
// one native bucket, bounds at or below the zero bucket, negative ones, a
// span too wide for the start table, none at all) and compares the classic
// counts with a binary search's.
func TestClassicBucketsMatchASearch(t *testing.T) {
	dense := []float64{}
	for b := 0.001; b < 0.002; b *= 1.01 { // 70 bounds within 8 native buckets
		dense = append(dense, b)
	}
	layouts := map[string][]float64{
		"proxy":   ProxyBuckets(),
		"session": SessionBuckets(),
		"dense":   dense,
		"zero":    {0, NativeZeroThreshold, 1e-9, 1},
		"below":   {-5, -1, 0.5, 2},
		"wide":    {1e-200, 1e-100, 1, 1e100, 1e200},
		"one":     {0.25},
		"none":    {},
	}
	r := rand.New(rand.NewPCG(11, 11))
	for name, bounds := range layouts {
		reg := New()
		h := reg.Histogram("x_seconds", "", bounds)
		want := make([]uint64, len(bounds)+1)
		observe := func(v float64) {
			h.ObserveSeconds(v)
			want[sort.SearchFloat64s(bounds, max(v, 0))]++
		}
		for _, b := range bounds {
			observe(b)
			observe(math.Nextafter(b, math.Inf(-1)))
			observe(math.Nextafter(b, math.Inf(1)))
		}
		for range 20000 {
			observe(math.Exp2(r.Float64()*80 - 60))
			if len(bounds) > 0 {
				observe(bounds[r.IntN(len(bounds))] * (1 + (r.Float64()-0.5)/50))
			}
		}
		observe(0)
		observe(1e300)
		if got := h.Snapshot().Counts; !slices.Equal(got, want) {
			t.Errorf("%s: classic counts\n got %v\nwant %v", name, got, want)
		}
		if reg.Histogram("x_seconds", "", bounds, "another", "series").h.classic != h.h.classic {
			t.Errorf("%s: two series of the same bounds do not share their layout", name)
		}
	}
	if c := New().Histogram("x_seconds", "", nil).h.classic; len(c.start) == 0 {
		t.Error("ProxyBuckets have no start table")
	}
}

// TestPeerNativeIndexesAtTheEdges: a predecessor's state may hold any int32
// native index (Validate does not bound them); a series adds them and goes
// on observing as the reference does, without overflowing its window.
func TestPeerNativeIndexesAtTheEdges(t *testing.T) {
	edges := [][]int32{
		{math.MinInt32, -3, math.MaxInt32},
		{math.MinInt32, math.MinInt32 + 1, math.MinInt32 + 300},
		{math.MaxInt32 - 300, math.MaxInt32 - 1, math.MaxInt32},
		{math.MaxInt32 - 20, math.MaxInt32},
		{math.MinInt32, math.MinInt32 + 20},
	}
	for _, idx := range edges {
		reg := New()
		h := reg.Histogram("x_seconds", "", nil)
		ref := newRefHist(ProxyBuckets())
		p := histsample.Histogram{Name: "x_seconds", Bounds: ProxyBuckets(), Counts: make([]uint64, len(ProxyBuckets())+1),
			Schema: NativeSchema, ZeroThreshold: NativeZeroThreshold}
		for _, k := range idx {
			p.Native = append(p.Native, histsample.Bucket{Index: k, Count: 2})
			p.Counts[0] += 2
			p.Count += 2
		}
		if err := reg.AddHistograms([]histsample.Histogram{p}); err != nil {
			t.Fatal(err)
		}
		ref.add(p)
		r := rand.New(rand.NewPCG(5, 5))
		for range 2000 {
			v := durations(r, 1)[0]
			h.ObserveSeconds(v)
			ref.observe(v)
		}
		// A second state at the other edge, merged into the grown window.
		q := p.Clone()
		for i, b := range p.Native {
			q.Native[len(p.Native)-1-i].Index = ^b.Index // -Index-1, without overflow
		}
		if err := reg.AddHistograms([]histsample.Histogram{q}); err != nil {
			t.Fatal(err)
		}
		ref.add(q)
		if got, want := h.Snapshot(), ref.snapshot(); !reflect.DeepEqual(got, want) {
			t.Errorf("indexes %v: snapshot differs from the reference's:\n got %+v\nwant %+v", idx, got, want)
		}
		if w := h.h; len(w.window) > maxWindow {
			t.Errorf("indexes %v: window of %d buckets", idx, len(w.window))
		}
	}
}
