package histsample

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var testBounds = []float64{0.001, 0.01, 0.1, 1}

// build returns the histogram of values, classic buckets in bounds, native
// buckets at schema, computed directly from the definitions in the package
// doc (independently of the registry's code).
func build(t *testing.T, bounds []float64, schema int32, values ...float64) Histogram {
	t.Helper()
	ix, err := NewIndexer(schema)
	if err != nil {
		t.Fatal(err)
	}
	h := Histogram{Name: "h", Labels: []string{"k", "v"}, Bounds: bounds, Counts: make([]uint64, len(bounds)+1), Schema: schema, ZeroThreshold: 1e-9}
	native := map[int32]uint64{}
	for _, v := range values {
		i := len(bounds)
		for j, b := range bounds {
			if v <= b {
				i = j
				break
			}
		}
		h.Counts[i]++
		h.Count++
		h.Sum += v
		if v <= h.ZeroThreshold {
			h.ZeroCount++
			continue
		}
		k := ix.Index(v)
		if lo, hi := UpperBound(k-1, schema), UpperBound(k, schema); !(v > lo*(1-1e-12) && v <= hi*(1+1e-12)) {
			t.Fatalf("Index(%v) = %d at schema %d: bucket (%v, %v]", v, k, schema, lo, hi)
		}
		native[k]++
	}
	for k, n := range native {
		h.Native = append(h.Native, Bucket{Index: k, Count: n})
	}
	slices.SortFunc(h.Native, func(a, b Bucket) int { return int(a.Index - b.Index) })
	if err := h.Validate(); err != nil {
		t.Fatalf("built an invalid histogram: %v", err)
	}
	return h
}

func randomValues(r *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		switch r.IntN(10) {
		case 0:
			out[i] = 0
		case 1:
			out[i] = testBounds[r.IntN(len(testBounds))] // exactly on a bound
		default:
			out[i] = math.Exp(r.NormFloat64()*3 - 5) // log-normal around 7 ms
		}
	}
	return out
}

func TestIndexPowersOfTwoAtEverySchema(t *testing.T) {
	for s := MinSchema; s <= MaxSchema; s++ {
		ix, err := NewIndexer(s)
		if err != nil {
			t.Fatal(err)
		}
		// 1 is the upper bound of bucket 0; just above it is bucket 1.
		if k := ix.Index(1); k != 0 {
			t.Errorf("schema %d: Index(1) = %d, want 0", s, k)
		}
		if k := ix.Index(math.Nextafter(1, 2)); k != 1 {
			t.Errorf("schema %d: Index(1+ulp) = %d, want 1", s, k)
		}
		// 2^n is the upper bound of bucket n·2^s (for schema ≥ 0) or n/2^-s.
		for n := -20; n <= 20; n++ {
			v := math.Ldexp(1, n)
			want := int32(n) << max(s, 0)
			if s < 0 {
				want = int32(math.Ceil(float64(n) / float64(int(1)<<-s)))
			}
			if k := ix.Index(v); k != want {
				t.Errorf("schema %d: Index(2^%d) = %d, want %d", s, n, k, want)
			}
		}
	}
	if _, err := NewIndexer(9); err == nil {
		t.Error("schema 9 accepted")
	}
}

func TestValidate(t *testing.T) {
	good := build(t, testBounds, 3, 0.0005, 0.002, 0.5, 3, 0)
	for _, tc := range []struct {
		name string
		mut  func(h *Histogram)
		msg  string
	}{
		{"no name", func(h *Histogram) { h.Name = "" }, "without a name"},
		{"odd labels", func(h *Histogram) { h.Labels = []string{"k"} }, "odd number of label strings"},
		{"counts for bounds", func(h *Histogram) { h.Counts = h.Counts[1:] }, "4 bucket counts for 4 bounds, want 5"},
		{"bounds order", func(h *Histogram) { h.Bounds = []float64{0.001, 0.1, 0.01, 1} }, "not strictly increasing at 2"},
		{"infinite bound", func(h *Histogram) { h.Bounds = []float64{0.001, 0.01, 0.1, math.Inf(1)} }, "bound 3 (+Inf) is not finite"},
		{"count mismatch", func(h *Histogram) { h.Count++ }, "classic buckets hold 5 observations, count is 6"},
		{"native mismatch", func(h *Histogram) { h.ZeroCount++ }, "native buckets hold 6 observations, count is 5"},
		{"nan sum", func(h *Histogram) { h.Sum = math.NaN() }, "sum NaN is not finite"},
		{"schema", func(h *Histogram) { h.Schema = 9 }, "native schema 9 outside [-4, 8]"},
		{"zero threshold", func(h *Histogram) { h.ZeroThreshold = -1 }, "zero threshold -1"},
		{"unsorted native", func(h *Histogram) { h.Native[0], h.Native[1] = h.Native[1], h.Native[0] }, "native buckets not sorted"},
		{"empty native bucket", func(h *Histogram) { h.Native = append(h.Native, Bucket{Index: 1000}) }, "native bucket 1000 is empty"},
		{"overflow", func(h *Histogram) { h.Counts[0] = math.MaxUint64 }, "bucket counts overflow"},
	} {
		h := good.Clone()
		tc.mut(&h)
		err := h.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.msg)
		}
		if err != nil && tc.name != "no name" && !strings.Contains(err.Error(), "h{") {
			t.Errorf("%s: error does not name the series: %v", tc.name, err)
		}
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestQuantileInterpolatesAsHistogramQuantile(t *testing.T) {
	// Bounds 1, 2, 4; 2 observations ≤ 1, 2 in (1, 2], 4 in (2, 4], none above.
	h := Histogram{Name: "q", Bounds: []float64{1, 2, 4}, Counts: []uint64{2, 2, 4, 0}, Count: 8, Sum: 20}
	for _, tc := range []struct{ q, want float64 }{
		{0.25, 1},   // rank 2: the top of the first bucket
		{0.125, .5}, // rank 1: half-way through the first bucket, which starts at 0
		{0.5, 2},    // rank 4
		{0.375, 1.5},
		{0.75, 3}, // rank 6: half-way through (2, 4]
		{1, 4},
	} {
		if got := h.Quantile(tc.q); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	// A rank in the +Inf bucket reads the last finite bound.
	h.Counts = []uint64{2, 2, 2, 2}
	if got := h.Quantile(0.99); got != 4 {
		t.Errorf("Quantile(0.99) with observations above the last bound = %v, want 4", got)
	}
	if !math.IsNaN((Histogram{Bounds: []float64{1}, Counts: []uint64{0, 0}}).Quantile(0.5)) {
		t.Error("an empty histogram's quantile should be NaN")
	}
	if !math.IsInf(h.Quantile(-1), -1) || !math.IsInf(h.Quantile(2), 1) {
		t.Error("q outside [0, 1] should be ∓Inf")
	}
	// Monotonic in q over a random histogram.
	r := rand.New(rand.NewPCG(1, 2))
	rh := build(t, testBounds, 3, randomValues(r, 500)...)
	prev := math.Inf(-1)
	for q := 0.0; q <= 1; q += 0.01 {
		v := rh.Quantile(q)
		if v < prev {
			t.Fatalf("Quantile not monotonic: q=%v gives %v after %v", q, v, prev)
		}
		prev = v
	}
}

func TestAddIsTheHistogramOfBothSets(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 50; round++ {
		va, vb := randomValues(r, r.IntN(200)), randomValues(r, r.IntN(200))
		a, b := build(t, testBounds, 3, va...), build(t, testBounds, 3, vb...)
		got := Add(a, b)
		want := build(t, testBounds, 3, append(va, vb...)...)
		assertSame(t, got, want)
		// a is untouched.
		assertSame(t, a, build(t, testBounds, 3, va...))
	}
}

func TestAddAtDifferentSchemas(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	va, vb := randomValues(r, 300), randomValues(r, 300)
	fine, coarse := build(t, testBounds, 3, va...), build(t, testBounds, 1, vb...)
	got := Add(fine, coarse)
	want := build(t, testBounds, 1, append(va, vb...)...)
	assertSame(t, got, want)
	// Reducing a schema is the same as building at the lower one.
	assertSame(t, fine.ReduceSchema(-2), build(t, testBounds, -2, va...))
}

func TestAddWithDifferentBoundsNeverLowersASharedCumulativeBucket(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	old := []float64{0.001, 0.005, 0.01, 0.1, 1}
	cur := []float64{0.001, 0.01, 0.05, 0.1, 0.5, 1, 10}
	va := randomValues(r, 400)
	from := build(t, old, 3, va...)
	into := build(t, cur, 3)
	got := Add(into, from)
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Bounds, cur) || got.Count != from.Count || got.Sum != from.Sum {
		t.Fatalf("bounds/count/sum: %v %d %v", got.Bounds, got.Count, got.Sum)
	}
	fromCum, gotCum := from.Cumulative(), got.Cumulative()
	for i, b := range old {
		j := slices.Index(cur, b)
		if j < 0 {
			continue
		}
		if gotCum[j] != fromCum[i] {
			t.Errorf("le=%v: %d after rebucketing, %d before", b, gotCum[j], fromCum[i])
		}
	}
	// 0.005 is not a bound any more: its observations count at 0.01.
	if want := fromCum[2]; gotCum[1] != want {
		t.Errorf("le=0.01 = %d, want %d", gotCum[1], want)
	}
}

func TestAddWidensTheZeroBucket(t *testing.T) {
	a := build(t, testBounds, 3, 1e-7, 0.002, 0.5)
	b := build(t, testBounds, 3, 0.003)
	b.ZeroThreshold = 1e-6 // no observation of b is below it
	got := Add(a, b)
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if got.ZeroThreshold < 1e-6 || got.ZeroCount != 1 || got.Count != 4 {
		t.Fatalf("zero bucket %v holds %d of %d", got.ZeroThreshold, got.ZeroCount, got.Count)
	}
	for _, nb := range got.Native {
		if UpperBound(nb.Index-1, got.Schema) < got.ZeroThreshold {
			t.Errorf("native bucket %d reaches into the zero bucket (threshold %v)", nb.Index, got.ZeroThreshold)
		}
	}
}

func TestSubUndoesAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for round := 0; round < 50; round++ {
		va, vb := randomValues(r, r.IntN(100)), randomValues(r, 1+r.IntN(100))
		a := build(t, testBounds, 3, va...)
		both := build(t, testBounds, 3, append(va, vb...)...)
		d, err := Sub(both, a)
		if err != nil {
			t.Fatal(err)
		}
		want := build(t, testBounds, 3, vb...)
		if math.Abs(d.Sum-want.Sum) > 1e-9 {
			t.Fatalf("sum %v, want %v", d.Sum, want.Sum)
		}
		d.Sum = want.Sum
		assertSame(t, d, want)
	}
}

func TestSubRefusesWhatIsNotAnEarlierState(t *testing.T) {
	a := build(t, testBounds, 3, 0.002, 0.02)
	b := build(t, testBounds, 3, 0.002)
	if _, err := Sub(b, a); err == nil || !strings.Contains(err.Error(), "fewer observations") {
		t.Errorf("a shrunk bucket: %v", err)
	}
	other := build(t, []float64{1, 2}, 3, 0.002, 0.02, 0.3)
	if _, err := Sub(other, a); err == nil || !strings.Contains(err.Error(), "bounds changed") {
		t.Errorf("other bounds: %v", err)
	}
	if _, err := Sub(a.ReduceSchema(1), b); err != nil {
		t.Errorf("a later state at a coarser schema is a later state: %v", err)
	}
	if _, err := Sub(a, b.ReduceSchema(1)); err == nil || !strings.Contains(err.Error(), "coarser") {
		t.Errorf("an earlier state at a coarser schema: %v", err)
	}
	// A native bucket that disappeared.
	c := build(t, testBounds, 3, 0.002, 0.02)
	d := build(t, testBounds, 3, 0.002, 0.9)
	if _, err := Sub(d, c); err == nil {
		t.Error("a native bucket of the earlier state missing from the later: no error")
	}
}

// TestDeltaPushesRebuildTheSeries is the drain-time push: a successor that
// took the manifest's state and then every delta holds exactly what the
// predecessor holds.
func TestDeltaPushesRebuildTheSeries(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	var seen []float64
	snapshot := func() []Histogram {
		other := build(t, testBounds, 3, 0.5)
		other.Name = "other"
		return []Histogram{build(t, testBounds, 3, seen...), other}
	}
	seen = randomValues(r, 50)
	base := snapshot()
	successor := map[string]Histogram{}
	for _, h := range base {
		successor[h.ID()] = h.Clone()
	}
	for push := 0; push < 20; push++ {
		seen = append(seen, randomValues(r, r.IntN(20))...)
		now := snapshot()
		for _, d := range Delta(base, now) {
			if err := d.Validate(); err != nil {
				t.Fatalf("push %d: invalid delta: %v", push, err)
			}
			successor[d.ID()] = Add(successor[d.ID()], d)
		}
		base = now
	}
	got := successor[Histogram{Name: "h", Labels: []string{"k", "v"}}.ID()]
	want := build(t, testBounds, 3, seen...)
	if math.Abs(got.Sum-want.Sum) > 1e-9 {
		t.Fatalf("sum %v, want %v", got.Sum, want.Sum)
	}
	got.Sum = want.Sum
	assertSame(t, got, want)
	if d := Delta(base, base); len(d) != 0 {
		t.Errorf("no observations, yet a delta: %v", d)
	}
	// A series new since base comes whole.
	fresh := build(t, testBounds, 3, 0.1)
	fresh.Name = "fresh"
	if d := Delta(base, []Histogram{fresh}); len(d) != 1 || d[0].Count != 1 {
		t.Errorf("new series: %v", d)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	h := build(t, testBounds, 3, 0, 0.0004, 0.07, 12)
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Histogram
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, h) {
		t.Fatalf("round trip:\n%+v\n%+v", back, h)
	}
}

func assertSame(t *testing.T, got, want Histogram) {
	t.Helper()
	if err := got.Validate(); err != nil {
		t.Fatalf("invalid: %v", err)
	}
	if got.Count != want.Count || !slices.Equal(got.Counts, want.Counts) || got.Schema != want.Schema ||
		got.ZeroCount != want.ZeroCount || !slices.Equal(got.Native, want.Native) || math.Abs(got.Sum-want.Sum) > 1e-9 {
		t.Fatalf("histograms differ:\n got %+v\nwant %+v", got, want)
	}
}

// TestSubNeverLowersTheSumOfWhoAddsIt: whatever the floating-point values,
// a successor that holds at least base and adds Sub(now, base) holds at
// least now: a sum that went back one ulp would read as a reset.
func TestSubNeverLowersTheSumOfWhoAddsIt(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for i := 0; i < 100_000; i++ {
		base := math.Exp(r.NormFloat64() * 8)
		now := base + math.Exp(r.NormFloat64()*8)*float64(r.IntN(2))
		own := base + math.Exp(r.NormFloat64()*8)*float64(r.IntN(2)) // the successor's own observations
		a := Histogram{Name: "h", Bounds: []float64{1}, Counts: []uint64{1, 0}, Count: 1, Sum: base, Schema: 3, Native: []Bucket{{Index: 0, Count: 1}}}
		b := a
		b.Counts, b.Count, b.Sum, b.Native = []uint64{2, 0}, 2, now, []Bucket{{Index: 0, Count: 2}}
		d, err := Sub(b, a)
		if err != nil {
			t.Fatal(err)
		}
		held := a
		held.Sum = own
		if got := Add(held, d).Sum; got < now {
			t.Fatalf("base %v now %v: the successor holds %v + %v = %v", base, now, own, d.Sum, got)
		}
	}
}

func TestCheckBoundsItsError(t *testing.T) {
	good := build(t, testBounds, 3, 0.002)
	bad := good.Clone()
	bad.Name = strings.Repeat("é", 1000)
	bad.Count++
	ok, err := Check([]Histogram{bad, good, good, bad, bad, bad})
	if len(ok) != 1 {
		t.Fatalf("%d kept", len(ok))
	}
	if err == nil || !strings.Contains(err.Error(), "5 histogram states refused") || !strings.Contains(err.Error(), "and 2 more") || !utf8.ValidString(err.Error()) || len(err.Error()) > 1000 {
		t.Fatalf("error (%d bytes): %v", len(err.Error()), err)
	}
	if ok, err := Check([]Histogram{good}); err != nil || len(ok) != 1 {
		t.Fatalf("a good state: %v %v", ok, err)
	}
}
