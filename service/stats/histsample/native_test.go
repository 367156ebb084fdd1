package histsample

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// refIndex is the definition of Index done the plain way (the
// implementation Index had before its look-up table): math.Frexp, then a
// binary search of the fraction among the schema's 2^s split points.
func refIndex(schema int32, bounds []float64, v float64) int32 {
	frac, exp := math.Frexp(v)
	if schema > 0 {
		n := len(bounds)
		return int32(sort.SearchFloat64s(bounds, frac) + (exp-1)*n)
	}
	k := exp
	if frac == 0.5 {
		k--
	}
	shift := -schema
	return int32((k + (1 << shift) - 1) >> shift)
}

// refBounds are refIndex's split points of schema > 0.
func refBounds(schema int32) []float64 {
	if schema <= 0 {
		return nil
	}
	n := 1 << schema
	bounds := make([]float64, n)
	for j := range bounds {
		bounds[j] = math.Exp2(float64(j)/float64(n) - 1)
	}
	return bounds
}

// indexProbes returns values where Index can go wrong: every bucket
// boundary of schema around 1 (the bound itself, one ulp either side),
// the same scaled to many powers of two, exact powers of two from the
// smallest subnormal to the largest, the edges of every look-up cell,
// subnormals, and random bit patterns and log-uniform values.
func indexProbes(schema int32, r *rand.Rand) []float64 {
	var out []float64
	near := func(v float64) {
		for _, w := range []float64{v, math.Nextafter(v, 0), math.Nextafter(v, math.Inf(1))} {
			if w > 0 && !math.IsInf(w, 0) {
				out = append(out, w)
			}
		}
	}
	n := 1 << max(schema, 0)
	for j := 0; j <= n; j++ {
		b := math.Exp2(float64(j)/float64(n) - 1)
		for _, e := range []int{-1073, -1070, -1022, -1021, -200, -128, -30, -10, -1, 0, 1, 7, 30, 500, 1023} {
			if v := math.Ldexp(b, e); v > 0 && !math.IsInf(v, 0) {
				near(v)
			}
		}
	}
	for e := -1074; e <= 1023; e++ {
		near(math.Ldexp(1, e))
	}
	// Every cell edge of the mantissa, at two exponents.
	for c := uint64(0); c < 1<<10; c++ {
		for _, e := range []uint64{1023, 1000} {
			out = append(out, math.Float64frombits(e<<52|c<<42), math.Float64frombits(e<<52|(c<<42-1)&mantMask))
		}
	}
	out = append(out, math.SmallestNonzeroFloat64, 3*math.SmallestNonzeroFloat64, math.Float64frombits(mantMask), math.MaxFloat64)
	for range 200000 {
		if v := math.Float64frombits(r.Uint64() &^ (1 << 63)); v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
			out = append(out, v)
		}
		out = append(out, math.Exp(r.Float64()*60-40))
	}
	return out
}

func TestIndexMatchesTheDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for s := MinSchema; s <= MaxSchema; s++ {
		ix, err := NewIndexer(s)
		if err != nil {
			t.Fatal(err)
		}
		bad, bounds := 0, refBounds(s)
		for _, v := range indexProbes(s, r) {
			if got, want := ix.Index(v), refIndex(s, bounds, v); got != want {
				if bad++; bad <= 5 {
					t.Errorf("schema %d: Index(%v [%#x]) = %d, want %d", s, v, math.Float64bits(v), got, want)
				}
			}
		}
	}
}

func BenchmarkIndex(b *testing.B) {
	ix, err := NewIndexer(3)
	if err != nil {
		b.Fatal(err)
	}
	v, sink := 0.0001, int32(0)
	for b.Loop() {
		sink += ix.Index(v)
		if v *= 1.01; v > 10 {
			v = 0.0001
		}
	}
	_ = sink
}
