// Package histsample is the wire type of a histogram's state: bucket counts,
// sum and count as plain data, so that a handoff can carry a histogram from
// one process to the next and the successor continues it exactly, as it does
// counters. It also holds the arithmetic on that state that both sides need:
// validation, merge (Add), the growth since an earlier state (Sub, Delta) and
// quantile estimates.
//
// It is a leaf: the handoff packages import it without pulling in the metric
// registry or the Prometheus client.
//
// A Histogram has two bucket layouts filled by the same observations:
//
//   - classic buckets: fixed upper bounds (Bounds), one count per bucket, not
//     cumulative; Counts has one more entry than Bounds, for the observations
//     above the last bound (the +Inf bucket);
//   - native buckets (Prometheus' sparse exponential histograms): bucket k at
//     schema s holds the observations v with 2^((k-1)·2^-s) < v ≤ 2^(k·2^-s);
//     observations at or below ZeroThreshold are in ZeroCount. Observations
//     are durations, so there are no negative buckets: a negative value is
//     counted as zero.
//
// Invariants (Validate): sum(Counts) == Count == ZeroCount + sum(Native counts).
package histsample

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Schema bounds of native histograms, as Prometheus defines them.
const (
	MinSchema int32 = -4
	MaxSchema int32 = 8
)

// Histogram is one histogram series' state at a moment.
type Histogram struct {
	Name   string   `json:"name"`
	Labels []string `json:"labels,omitempty"` // key, value, key, value …

	// Bounds are the classic buckets' upper bounds, finite and strictly
	// increasing. Counts[i] counts observations in (Bounds[i-1], Bounds[i]];
	// Counts[len(Bounds)] those above the last bound.
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`

	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`

	Schema        int32    `json:"schema"`
	ZeroThreshold float64  `json:"zero_threshold"`
	ZeroCount     uint64   `json:"zero_count"`
	Native        []Bucket `json:"native,omitempty"` // sorted by Index, no zero counts
}

// Bucket is one populated native bucket.
type Bucket struct {
	Index int32  `json:"i"`
	Count uint64 `json:"n"`
}

// ID identifies the series: name and labels. It is not meant for display.
func (h Histogram) ID() string { return h.Name + "\x00" + strings.Join(h.Labels, "\x00") }

// Describe names the series for errors and logs: name{k="v",…}.
func (h Histogram) Describe() string {
	if len(h.Labels) == 0 {
		return h.Name
	}
	var b strings.Builder
	b.WriteString(h.Name)
	b.WriteByte('{')
	for i := 0; i+1 < len(h.Labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", h.Labels[i], h.Labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// Clone returns a deep copy.
func (h Histogram) Clone() Histogram {
	h.Labels = append([]string(nil), h.Labels...)
	h.Bounds = append([]float64(nil), h.Bounds...)
	h.Counts = append([]uint64(nil), h.Counts...)
	h.Native = append([]Bucket(nil), h.Native...)
	return h
}

// Validate reports the first way in which h is not a consistent histogram.
// Everything that arrives from another process is validated before use.
func (h Histogram) Validate() error {
	if h.Name == "" {
		return errors.New("histogram without a name")
	}
	where := h.Describe()
	switch {
	case len(h.Labels)%2 != 0:
		return fmt.Errorf("%s: odd number of label strings (%d)", where, len(h.Labels))
	case len(h.Counts) != len(h.Bounds)+1:
		return fmt.Errorf("%s: %d bucket counts for %d bounds, want %d", where, len(h.Counts), len(h.Bounds), len(h.Bounds)+1)
	case math.IsNaN(h.Sum) || math.IsInf(h.Sum, 0):
		return fmt.Errorf("%s: sum %v is not finite", where, h.Sum)
	case h.Schema < MinSchema || h.Schema > MaxSchema:
		return fmt.Errorf("%s: native schema %d outside [%d, %d]", where, h.Schema, MinSchema, MaxSchema)
	case !(h.ZeroThreshold >= 0) || math.IsInf(h.ZeroThreshold, 0):
		return fmt.Errorf("%s: zero threshold %v is not a finite non-negative number", where, h.ZeroThreshold)
	}
	for i, b := range h.Bounds {
		if math.IsNaN(b) || math.IsInf(b, 0) {
			return fmt.Errorf("%s: bound %d (%v) is not finite", where, i, b)
		}
		if i > 0 && b <= h.Bounds[i-1] {
			return fmt.Errorf("%s: bounds not strictly increasing at %d (%v after %v)", where, i, b, h.Bounds[i-1])
		}
	}
	var classic uint64
	for _, c := range h.Counts {
		if classic+c < classic {
			return fmt.Errorf("%s: bucket counts overflow", where)
		}
		classic += c
	}
	if classic != h.Count {
		return fmt.Errorf("%s: classic buckets hold %d observations, count is %d", where, classic, h.Count)
	}
	native := h.ZeroCount
	for i, b := range h.Native {
		if b.Count == 0 {
			return fmt.Errorf("%s: native bucket %d is empty", where, b.Index)
		}
		if i > 0 && b.Index <= h.Native[i-1].Index {
			return fmt.Errorf("%s: native buckets not sorted at index %d", where, b.Index)
		}
		if native+b.Count < native {
			return fmt.Errorf("%s: native bucket counts overflow", where)
		}
		native += b.Count
	}
	if native != h.Count {
		return fmt.Errorf("%s: native buckets hold %d observations, count is %d", where, native, h.Count)
	}
	return nil
}

// Cumulative returns the classic buckets as Prometheus exposes them: for each
// bound, the observations at or below it. The +Inf bucket is Count.
func (h Histogram) Cumulative() []uint64 {
	out := make([]uint64, len(h.Bounds))
	var acc uint64
	for i := range h.Bounds {
		acc += h.Counts[i]
		out[i] = acc
	}
	return out
}

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) from the classic buckets the
// way PromQL's histogram_quantile does: linear interpolation inside the
// bucket that holds the rank, the first bucket starting at 0, and the upper
// bound of the last finite bucket for ranks in the +Inf bucket. It is NaN for
// an empty histogram, -Inf below q=0 and +Inf above q=1.
func (h Histogram) Quantile(q float64) float64 {
	switch {
	case math.IsNaN(q) || h.Count == 0:
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	rank := q * float64(h.Count)
	var below uint64
	for i, c := range h.Counts {
		if c == 0 || float64(below+c) < rank {
			below += c
			continue
		}
		if i == len(h.Bounds) { // the +Inf bucket
			if len(h.Bounds) == 0 {
				return math.NaN()
			}
			return h.Bounds[len(h.Bounds)-1]
		}
		upper := h.Bounds[i]
		lower := 0.0
		if i > 0 {
			lower = h.Bounds[i-1]
		} else if upper <= 0 {
			return upper
		}
		return lower + (upper-lower)*(rank-float64(below))/float64(c)
	}
	// Only reached when q == 0 and every bucket before the last non-empty one is empty.
	return 0
}
