package histsample

import (
	"fmt"
	"math"
	"sort"
)

// Indexer finds the native bucket of an observation at one schema. The zero
// value is not usable; call NewIndexer.
type Indexer struct {
	schema int32
	// bounds[j] = 2^(j/2^schema - 1) for a positive schema: the fractions
	// that split one power of two into 2^schema buckets.
	bounds []float64
}

// NewIndexer returns the indexer of schema, which must be in [MinSchema, MaxSchema].
func NewIndexer(schema int32) (Indexer, error) {
	if schema < MinSchema || schema > MaxSchema {
		return Indexer{}, fmt.Errorf("histsample: schema %d outside [%d, %d]", schema, MinSchema, MaxSchema)
	}
	ix := Indexer{schema: schema}
	if schema > 0 {
		n := 1 << schema
		ix.bounds = make([]float64, n)
		for j := range ix.bounds {
			ix.bounds[j] = math.Exp2(float64(j)/float64(n) - 1)
		}
	}
	return ix, nil
}

// Schema is the indexer's schema.
func (ix Indexer) Schema() int32 { return ix.schema }

// Index returns the bucket of v > 0: the k with 2^((k-1)·2^-s) < v ≤ 2^(k·2^-s).
func (ix Indexer) Index(v float64) int32 {
	frac, exp := math.Frexp(v) // v = frac · 2^exp, 0.5 ≤ frac < 1
	if ix.schema > 0 {
		n := len(ix.bounds)
		return int32(sort.SearchFloat64s(ix.bounds, frac) + (exp-1)*n)
	}
	k := exp
	if frac == 0.5 { // an exact power of two is the upper bound of the bucket below
		k--
	}
	shift := -ix.schema
	offset := (1 << shift) - 1
	return int32((k + offset) >> shift)
}

// UpperBound is the upper bound of native bucket k at schema.
func UpperBound(k, schema int32) float64 {
	return math.Exp2(float64(k) * math.Exp2(float64(-schema)))
}

// reduceIndex maps bucket k at some schema to its bucket d schemas lower.
func reduceIndex(k int32, d int32) int32 { return ((k - 1) >> d) + 1 }

// ReduceSchema returns h with its native buckets at schema (lower than or
// equal to h's): each group of 2^(h.Schema-schema) neighbouring buckets
// becomes one. Observation counts are unchanged.
func (h Histogram) ReduceSchema(schema int32) Histogram {
	if schema >= h.Schema {
		return h
	}
	d := h.Schema - schema
	out := make([]Bucket, 0, len(h.Native))
	for _, b := range h.Native {
		k := reduceIndex(b.Index, d)
		if n := len(out); n > 0 && out[n-1].Index == k {
			out[n-1].Count += b.Count
			continue
		}
		out = append(out, Bucket{Index: k, Count: b.Count})
	}
	h.Native, h.Schema = out, schema
	return h
}

// WidenZero returns h with a zero bucket at least as wide as threshold:
// native buckets that lie at or below it move into ZeroCount, and a bucket
// that straddles it widens the threshold to that bucket's upper bound.
func (h Histogram) WidenZero(threshold float64) Histogram {
	if threshold <= h.ZeroThreshold {
		return h
	}
	out := h.Native[:0:0]
	for _, b := range h.Native {
		upper := UpperBound(b.Index, h.Schema)
		lower := UpperBound(b.Index-1, h.Schema)
		if lower < threshold { // the bucket reaches into the zero bucket
			h.ZeroCount += b.Count
			threshold = max(threshold, upper)
			continue
		}
		out = append(out, b)
	}
	h.Native, h.ZeroThreshold = out, threshold
	return h
}
