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
	// the fractions 2^(j/2^s - 1), j = 0 … 2^s-1, all in [0.5, 1), so that
	// comparing a fraction in [0.5, 1) with one is comparing their mantissa
	// fields. cells[c] is about the mantissas of cell c, those whose top
	// s+1 bits are c: below is the number of split points under the cell,
	// next the mantissa of the first at or above its start. The points are
	// at least 2^-s·ln2 apart and a cell is 2^-(s+1) wide, so at most one is
	// inside a cell: Index does a look-up and a comparison where a binary
	// search of the points took s+1 steps.
	cells     []cell
	cellShift uint // mantissa bits below a cell's
}

type cell struct {
	below uint32
	next  uint64 // math.MaxUint64 if no point is at or above the cell's start
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
		points := make([]uint64, n)
		for j := range points {
			points[j] = math.Float64bits(math.Exp2(float64(j)/float64(n)-1)) & mantMask
		}
		ix.cellShift = mantBits - uint(schema) - 1
		ix.cells = make([]cell, 2*n)
		j := 0
		for c := range ix.cells {
			start := uint64(c) << ix.cellShift
			for j < n && points[j] < start {
				j++
			}
			ix.cells[c] = cell{below: uint32(j), next: math.MaxUint64}
			if j < n {
				ix.cells[c].next = points[j]
			}
		}
	}
	return ix, nil
}

// Schema is the indexer's schema.
func (ix *Indexer) Schema() int32 { return ix.schema }

// Index returns the bucket of a finite v > 0: the k with 2^((k-1)·2^-s) < v ≤ 2^(k·2^-s).
func (ix *Indexer) Index(v float64) int32 {
	// The common case, small enough to be inlined: a positive normal v at
	// a positive schema.
	bits := math.Float64bits(v)
	if e := bits >> mantBits; e-1 < expMask-1 && ix.schema > 0 {
		return ix.within(bits&mantMask) + (int32(e)-1023)<<ix.schema
	}
	return ix.index(v)
}

// within is the bucket, 0 … 2^s, within its power of two of a fraction
// whose mantissa field is m: the number of split points below it (the first
// at or above it is the fraction's upper bound). Only for a positive schema.
func (ix *Indexer) within(m uint64) int32 {
	c := ix.cells[m>>ix.cellShift]
	if c.next < m {
		return int32(c.below) + 1
	}
	return int32(c.below)
}

// index is Index for every v > 0 and schema: v = frac · 2^exp with
// 0.5 ≤ frac < 1, as math.Frexp has it.
func (ix *Indexer) index(v float64) int32 {
	frac, exp := math.Frexp(v)
	m := math.Float64bits(frac) & mantMask
	if ix.schema > 0 {
		return ix.within(m) + int32(exp-1)<<ix.schema
	}
	k := int32(exp)
	if m == 0 { // frac is 0.5: an exact power of two is the upper bound of the bucket below
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
