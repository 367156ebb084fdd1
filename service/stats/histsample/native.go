package histsample

import (
	"fmt"
	"math"
)

// Indexer finds the native bucket of an observation at one schema. The zero
// value is not usable; call NewIndexer.
type Indexer struct {
	schema int32
	// For a positive schema s, the buckets of one power of two are split at
	// the fractions 2^(j/2^s - 1), j = 0 … 2^s-1, all in [0.5, 1): mant[j]
	// is the mantissa field of fraction j, so that comparing a fraction in
	// [0.5, 1) with it is comparing mantissa fields. first[c] is the number
	// of fractions whose mantissa is below c<<(52-cellBits), the start of
	// cell c of the mantissa's range: the bucket of a mantissa in cell c is
	// first[c] plus the fractions in the cell below it, of which there is
	// at most one (the fractions are 2^-s·ln2 or more apart, a cell is
	// 2^-(s+1) wide), so Index does one table look-up and at most one
	// comparison where sort.SearchFloat64s did s+1.
	mant     []uint64
	first    []uint16
	cellBits uint
}

const (
	mantBits = 52
	mantMask = 1<<mantBits - 1
	expMask  = 0x7ff
)

// NewIndexer returns the indexer of schema, which must be in [MinSchema, MaxSchema].
func NewIndexer(schema int32) (Indexer, error) {
	if schema < MinSchema || schema > MaxSchema {
		return Indexer{}, fmt.Errorf("histsample: schema %d outside [%d, %d]", schema, MinSchema, MaxSchema)
	}
	ix := Indexer{schema: schema}
	if schema > 0 {
		n := 1 << schema
		ix.mant = make([]uint64, n)
		for j := range ix.mant {
			ix.mant[j] = math.Float64bits(math.Exp2(float64(j)/float64(n)-1)) & mantMask
		}
		ix.cellBits = uint(schema) + 1
		ix.first = make([]uint16, 1<<ix.cellBits)
		j := 0
		for c := range ix.first {
			for j < n && ix.mant[j] < uint64(c)<<(mantBits-ix.cellBits) {
				j++
			}
			ix.first[c] = uint16(j)
		}
	}
	return ix, nil
}

// Schema is the indexer's schema.
func (ix *Indexer) Schema() int32 { return ix.schema }

// Index returns the bucket of v > 0: the k with 2^((k-1)·2^-s) < v ≤ 2^(k·2^-s).
func (ix *Indexer) Index(v float64) int32 {
	// v = frac · 2^exp with 0.5 ≤ frac < 1, as math.Frexp has it: for a
	// normal v, frac has v's mantissa field and exp is v's exponent + 1.
	bits := math.Float64bits(v)
	exp := int32(bits>>mantBits&expMask) - 1022
	if exp == -1022 || exp == expMask-1022 { // subnormal (or not finite): let Frexp normalise it
		frac, e := math.Frexp(v)
		bits, exp = math.Float64bits(frac), int32(e)
	}
	m := bits & mantMask
	if ix.schema > 0 {
		// The first fraction at or above frac is the bucket within the
		// power of two: count the fractions below it.
		j := int(ix.first[m>>(mantBits-ix.cellBits)])
		if j < len(ix.mant) && ix.mant[j] < m {
			j++
		}
		return int32(j) + (exp-1)<<ix.schema
	}
	k := exp
	if m == 0 { // an exact power of two is the upper bound of the bucket below
		k--
	}
	shift := -ix.schema
	offset := int32(1)<<shift - 1
	return (k + offset) >> shift
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
