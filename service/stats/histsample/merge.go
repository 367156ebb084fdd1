package histsample

import (
	"fmt"
	"math"
	"slices"
)

// Add returns a + b: the histogram of both sets of observations, in a's
// classic bounds, at the lower of the two native schemas and the wider of
// the two zero buckets. b's name and labels are not looked at.
//
// When the bounds differ (a new binary changed its buckets), each of b's
// classic buckets is counted in the first of a's buckets whose bound is at
// or above b's bucket's upper bound: a cumulative count at a bound both
// layouts share is exact, and none ever decreases.
func Add(a, b Histogram) Histogram {
	out := a.Clone()
	if slices.Equal(a.Bounds, b.Bounds) {
		for i, c := range b.Counts {
			out.Counts[i] += c
		}
	} else {
		for i, c := range b.Counts {
			j := len(a.Bounds) // +Inf
			if i < len(b.Bounds) {
				j, _ = slices.BinarySearch(a.Bounds, b.Bounds[i])
			}
			out.Counts[j] += c
		}
	}
	out.Count += b.Count
	out.Sum += b.Sum

	schema := min(a.Schema, b.Schema)
	zero := max(a.ZeroThreshold, b.ZeroThreshold)
	x := out.ReduceSchema(schema).WidenZero(zero)
	y := b.ReduceSchema(schema).WidenZero(zero)
	// Widening one side may have widened its threshold past the other's.
	if x.ZeroThreshold != y.ZeroThreshold {
		zero = max(x.ZeroThreshold, y.ZeroThreshold)
		x, y = x.WidenZero(zero), y.WidenZero(zero)
	}
	x.ZeroCount += y.ZeroCount
	x.Native = mergeBuckets(x.Native, y.Native)
	out.Schema, out.ZeroThreshold, out.ZeroCount, out.Native = x.Schema, x.ZeroThreshold, x.ZeroCount, x.Native
	return out
}

// mergeBuckets adds two sorted bucket lists.
func mergeBuckets(x, y []Bucket) []Bucket {
	out := make([]Bucket, 0, max(len(x), len(y)))
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case j == len(y) || (i < len(x) && x[i].Index < y[j].Index):
			out = append(out, x[i])
			i++
		case i == len(x) || y[j].Index < x[i].Index:
			out = append(out, y[j])
			j++
		default:
			out = append(out, Bucket{Index: x[i].Index, Count: x[i].Count + y[j].Count})
			i++
			j++
		}
	}
	return out
}

// Sub returns now - base: what was observed between two states of one
// series. Its sum is rounded up where floating point needs it, so that
// Add(x, Sub(now, base)).Sum ≥ now.Sum for every x with x.Sum ≥ base.Sum: a
// successor that adds each delta to what it has never shows a lower sum than
// the process that sent them (a sum that goes back by one ulp reads as a
// reset to Prometheus' rate()). base must be an earlier state of the same histogram: the same
// classic bounds, a native schema at least as fine and a zero bucket at most
// as wide (a series only ever coarsens), and no bucket holding more than it
// does in now.
func Sub(now, base Histogram) (Histogram, error) {
	if !slices.Equal(now.Bounds, base.Bounds) {
		return Histogram{}, fmt.Errorf("histsample: %s: classic bounds changed between the two states", now.Describe())
	}
	if base.Schema < now.Schema || base.ZeroThreshold > now.ZeroThreshold {
		return Histogram{}, fmt.Errorf("histsample: %s: the earlier state has a coarser native layout (schema %d, zero %g) than the later (schema %d, zero %g)",
			now.Describe(), base.Schema, base.ZeroThreshold, now.Schema, now.ZeroThreshold)
	}
	base = base.ReduceSchema(now.Schema).WidenZero(now.ZeroThreshold)
	if base.ZeroThreshold != now.ZeroThreshold {
		return Histogram{}, fmt.Errorf("histsample: %s: zero buckets of the two states do not line up", now.Describe())
	}
	shrunk := func() (Histogram, error) {
		return Histogram{}, fmt.Errorf("histsample: %s: a bucket holds fewer observations than in the earlier state", now.Describe())
	}
	out := now.Clone()
	for i, c := range base.Counts {
		if out.Counts[i] < c {
			return shrunk()
		}
		out.Counts[i] -= c
	}
	if out.Count < base.Count || out.ZeroCount < base.ZeroCount {
		return shrunk()
	}
	out.Count -= base.Count
	out.ZeroCount -= base.ZeroCount
	out.Sum = sumDelta(now.Sum, base.Sum)
	if out.Count == 0 {
		out.Sum = 0 // float rounding must not leave a sum without observations
	}
	native := make([]Bucket, 0, len(out.Native))
	j := 0
	for _, b := range out.Native {
		for j < len(base.Native) && base.Native[j].Index < b.Index {
			return shrunk() // a bucket of base that now lacks
		}
		if j < len(base.Native) && base.Native[j].Index == b.Index {
			if b.Count < base.Native[j].Count {
				return shrunk()
			}
			b.Count -= base.Native[j].Count
			j++
		}
		if b.Count > 0 {
			native = append(native, b)
		}
	}
	if j < len(base.Native) {
		return shrunk()
	}
	out.Native = native
	return out, nil
}

// Delta returns, for each histogram in now, what it observed since base (by
// series). Series absent from base count from nothing; series unchanged, or
// not a later state of base's (see Sub), are left out.
func Delta(base, now []Histogram) []Histogram {
	prev := make(map[string]Histogram, len(base))
	for _, h := range base {
		prev[h.ID()] = h
	}
	var out []Histogram
	for _, h := range now {
		b, ok := prev[h.ID()]
		if !ok {
			if h.Count > 0 {
				out = append(out, h.Clone())
			}
			continue
		}
		if h.Count == b.Count {
			continue
		}
		if d, err := Sub(h, b); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// sumDelta is now − base, rounded up so that base + d, in floating point, is
// at least now (addition is monotonic, so x + d is too for any x ≥ base).
func sumDelta(now, base float64) float64 {
	d := now - base
	if d <= 0 {
		return 0
	}
	for i := 0; base+d < now; i++ {
		if i == 64 { // not reached: d > now/2 or d is exact, so an ulp or two suffice
			return now
		}
		d = math.Nextafter(d, math.Inf(1))
	}
	return d
}
