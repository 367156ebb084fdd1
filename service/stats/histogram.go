package stats

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// NativeSchema is the resolution of the native buckets every histogram keeps:
// 2^3 buckets per power of two, a factor of 2^(1/8) ≈ 1.09 between bounds
// (the Prometheus Go client's default factor, 1.1, picks the same schema).
const NativeSchema int32 = 3

// NativeZeroThreshold is the width of the native zero bucket (the Prometheus
// Go client's default, 2^-128): only a duration of zero falls in it.
const NativeZeroThreshold = 2.938735877055719e-39

// ProxyBuckets are the classic bucket bounds, in seconds, of request-scale
// durations: 0.5 ms to 30 s, dense where a proxy's latencies live (a
// 1-2.5-5 progression per decade).
func ProxyBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

// SessionBuckets are the classic bucket bounds, in seconds, of connection
// lifetimes: ProxyBuckets, then 1, 5, 15, 30 and 60 minutes.
func SessionBuckets() []float64 {
	return append(ProxyBuckets(), 60, 300, 900, 1800, 3600)
}

// Histogram counts observations of a duration in buckets. Safe for
// concurrent use.
type Histogram struct{ h *histogram }

// Observe records one duration. A negative one counts as zero.
func (h *Histogram) Observe(d time.Duration) { h.h.observe(d.Seconds()) }

// ObserveSeconds records one duration in seconds; NaN and infinities are ignored.
func (h *Histogram) ObserveSeconds(s float64) { h.h.observe(s) }

// Snapshot returns the series' state.
func (h *Histogram) Snapshot() histsample.Histogram { return h.h.snapshot() }

// histogram is one histogram series. Both bucket layouts, the sum and the
// count change together under mu, so a snapshot is always consistent
// (Prometheus rejects a native histogram whose buckets do not add up).
//
// The native buckets are counted in a dense window, counts of the
// consecutive indexes lo … lo+len(window)-1, allocated with the first
// observation and grown by doubling when one falls outside it, up to
// maxWindow buckets; the buckets beyond what that can reach are counted in
// far. A series' latencies span a few decades (a decade is 27 buckets at
// schema 3), so the window usually holds them all and observe updates a
// slice element where a map assignment cost it most of its time.
type histogram struct {
	name    string
	labels  []string
	classic *classicLayout // immutable, shared by the registry's series of the same bounds
	ix      *histsample.Indexer

	mu        sync.Mutex
	counts    []uint64 // len(bounds)+1, not cumulative
	count     uint64
	sum       float64
	schema    int32 // ≤ ix.Schema(): lowered if a coarser state was merged in
	lo        int32 // the native index of window[0]
	zero      float64
	zeroCount uint64
	window    []uint64         // native bucket counts from lo on; nil until the first
	far       map[int32]uint64 // native buckets outside the window; nil until one is
}

// Bounds of the native window: it starts with minWindow buckets around the
// first observation's and doubles towards the next one outside it, to at
// most maxWindow buckets (2 KiB; 32 powers of two at schema 3, 1 µs to over
// an hour), so that a series that saw values all over the range costs a
// bounded window plus a map entry per bucket beyond it.
const (
	minWindow = 16
	maxWindow = 256
)

func (h *histogram) observe(v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	v = max(v, 0)
	var k int32
	i := 0 // the classic bucket: the first bound ≥ v, len(bounds) for +Inf
	c := h.classic
	if v > NativeZeroThreshold {
		k = h.ix.Index(v)
		if len(c.start) > 0 {
			i = int(c.start[min(max(k-c.lo, 0), int32(len(c.start))-1)])
		}
	}
	for i < len(c.bounds) && c.bounds[i] < v {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.count++
	h.sum += v
	if v <= h.zero {
		h.zeroCount++
	} else {
		if d := h.ix.Schema() - h.schema; d > 0 {
			k = ((k - 1) >> d) + 1
		}
		if j := k - h.lo; uint32(j) < uint32(len(h.window)) {
			h.window[j]++
		} else {
			h.addNative(k, 1)
		}
	}
	h.mu.Unlock()
}

// addNative adds n to native bucket k, growing the window to reach it if it
// can, in far if not. Called with mu held. The window only grows, so a
// bucket that went to far never comes within it: the window that would
// reach it would have to span more than the window plus that bucket did.
// Index arithmetic is in int: a predecessor's state may hold any int32
// index, and the window must not wrap around at the ends of int32.
func (h *histogram) addNative(k int32, n uint64) {
	if j := k - h.lo; uint32(j) < uint32(len(h.window)) { // a wrapped j is ≥ len too
		h.window[j] += n
		return
	}
	if h.window == nil {
		h.setWindow(int(k)-minWindow/2, minWindow)
		h.window[k-h.lo] += n
		return
	}
	lo, hi := min(int(h.lo), int(k)), max(int(h.lo)+len(h.window), int(k)+1)
	if span := hi - lo; span <= maxWindow {
		size := min(max(span, 2*len(h.window)), maxWindow)
		if int(k) < int(h.lo) { // grow downwards, where the values went
			lo = hi - size
		}
		old, oldLo := h.window, int(h.lo)
		h.setWindow(lo, size)
		copy(h.window[oldLo-int(h.lo):], old)
		h.window[k-h.lo] += n
		return
	}
	if h.far == nil {
		h.far = map[int32]uint64{}
	}
	h.far[k] += n
}

// setWindow gives the series an empty window of size buckets from lo, moved
// up as far as needed to start within int32.
func (h *histogram) setWindow(lo, size int) {
	h.window, h.lo = make([]uint64, size), int32(max(lo, math.MinInt32))
}

// classicLayout is a set of classic bounds and where observe starts its
// scan for an observation's classic bucket, by its native bucket k at the
// registry's schema: at start[k-lo], the number of bounds whose native
// bucket is below k (k below lo takes start[0], above the table its last
// entry). Index is monotonic, so those bounds are all below the
// observation and those of a later native bucket above it: the scan stops
// within the bounds of k's own native bucket, one or two steps, where a
// search from the first bound took one per bound below the observation.
type classicLayout struct {
	bounds []float64
	lo     int32
	start  []uint16 // empty: scan from the first bound
}

// Bounds of a classicLayout's table: bounds over at most maxClassicSpan
// native buckets (64 powers of two at schema 3; ProxyBuckets span 16), at
// most 2^16-1 of them, all above the native zero bucket.
const maxClassicSpan = 512

func newClassicLayout(bounds []float64, ix *histsample.Indexer) *classicLayout {
	c := &classicLayout{bounds: slices.Clone(bounds)}
	if len(bounds) == 0 || len(bounds) > math.MaxUint16 || bounds[0] <= NativeZeroThreshold {
		return c
	}
	first, last := ix.Index(bounds[0]), ix.Index(bounds[len(bounds)-1])
	if int(last-first)+2 > maxClassicSpan {
		return c
	}
	c.lo, c.start = first, make([]uint16, last-first+2)
	i := 0
	for j := range c.start {
		for i < len(bounds) && ix.Index(bounds[i]) < first+int32(j) {
			i++
		}
		c.start[j] = uint16(i)
	}
	return c
}

// classicLayout returns the registry's layout of bounds, creating it. Called
// with r.mu held.
func (r *Registry) classicLayout(bounds []float64) *classicLayout {
	var buf [8 * 32]byte // on the stack for up to 32 bounds
	key := buf[:0]
	for _, b := range bounds {
		key = binary.LittleEndian.AppendUint64(key, math.Float64bits(b))
	}
	if c := r.layouts[string(key)]; c != nil {
		return c
	}
	c := newClassicLayout(bounds, &r.native)
	r.layouts[string(key)] = c
	return c
}

func (h *histogram) snapshot() histsample.Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snapshotLocked()
}

func (h *histogram) snapshotLocked() histsample.Histogram {
	n := len(h.far)
	for _, c := range h.window {
		if c != 0 {
			n++
		}
	}
	out := histsample.Histogram{
		Name:          h.name,
		Labels:        h.labels,
		Bounds:        h.classic.bounds,
		Counts:        slices.Clone(h.counts),
		Count:         h.count,
		Sum:           h.sum,
		Schema:        h.schema,
		ZeroThreshold: h.zero,
		ZeroCount:     h.zeroCount,
		Native:        make([]histsample.Bucket, 0, n),
	}
	for j, c := range h.window {
		if c != 0 {
			out.Native = append(out.Native, histsample.Bucket{Index: h.lo + int32(j), Count: c})
		}
	}
	if len(h.far) > 0 {
		for k, c := range h.far {
			out.Native = append(out.Native, histsample.Bucket{Index: k, Count: c})
		}
		slices.SortFunc(out.Native, func(a, b histsample.Bucket) int { return cmp.Compare(a.Index, b.Index) })
	}
	return out
}

// add merges s (validated) into the series.
func (h *histogram) add(s histsample.Histogram) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := histsample.Add(h.snapshotLocked(), s)
	copy(h.counts, m.Counts)
	h.count, h.sum = m.Count, m.Sum
	h.schema, h.zero, h.zeroCount = m.Schema, m.ZeroThreshold, m.ZeroCount
	// The indexes may have changed meaning (a lower schema): lay the window
	// out again, over the buckets if they fit in it, else around the fullest.
	h.window, h.far, h.lo = nil, nil, 0
	if len(m.Native) > 0 {
		first, last := int(m.Native[0].Index), int(m.Native[len(m.Native)-1].Index)
		size, lo := max(last-first+1, minWindow), first
		if size > maxWindow {
			fullest := slices.MaxFunc(m.Native, func(a, b histsample.Bucket) int { return cmp.Compare(a.Count, b.Count) })
			size, lo = maxWindow, min(max(int(fullest.Index)-maxWindow/2, first), last-maxWindow+1)
		}
		h.setWindow(lo, size)
	}
	for _, b := range m.Native {
		h.addNative(b.Index, b.Count)
	}
}

// Histogram returns the histogram series name{labels}, creating it empty
// with the given classic bounds (nil means ProxyBuckets). A series that
// exists keeps its bounds. Names are dotted and end in the unit
// ("http.downstream_rq_duration_seconds").
func (r *Registry) Histogram(name, help string, bounds []float64, labels ...string) *Histogram {
	return &Histogram{r.histogram(name, help, bounds, labels)}
}

func (r *Registry) histogram(name, help string, bounds []float64, labels []string) *histogram {
	if len(labels)%2 != 0 {
		labels = append(labels, "")
	}
	id := histsample.Histogram{Name: name, Labels: labels}.ID()
	r.mu.RLock()
	h := r.hists[id]
	r.mu.RUnlock()
	if h != nil {
		return h
	}
	if bounds == nil {
		bounds = ProxyBuckets()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if h = r.hists[id]; h != nil {
		return h
	}
	if help != "" {
		r.help[name] = help
	}
	h = &histogram{
		name:    name,
		labels:  slices.Clone(labels),
		classic: r.classicLayout(bounds),
		ix:      &r.native,
		counts:  make([]uint64, len(bounds)+1),
		schema:  r.native.Schema(),
		zero:    NativeZeroThreshold,
	}
	r.hists[id] = h
	return h
}

// Histograms returns the state of every histogram series, sorted by name and
// labels: what a handoff carries.
func (r *Registry) Histograms() []histsample.Histogram {
	r.mu.RLock()
	hs := make([]*histogram, 0, len(r.hists))
	for _, h := range r.hists {
		hs = append(hs, h)
	}
	r.mu.RUnlock()
	out := make([]histsample.Histogram, len(hs))
	for i, h := range hs {
		out[i] = h.snapshot()
	}
	slices.SortFunc(out, func(a, b histsample.Histogram) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return slices.Compare(a.Labels, b.Labels)
	})
	return out
}

// AddHistograms merges each histogram state into the series of the same name
// and labels, creating it (with the state's bounds) if needed. A new process
// calls it with its predecessor's histograms at handoff, and again with what
// the predecessor observed while it drained, so that no bucket goes
// backwards. States come from another process: one that is not a consistent
// histogram, or a second state of one series, is skipped, and the error
// (bounded, whatever was sent: see histsample.Check) names the first few;
// the others are applied.
func (r *Registry) AddHistograms(states []histsample.Histogram) error {
	ok, err := histsample.Check(states)
	for _, s := range ok {
		if s.Count == 0 {
			continue
		}
		r.histogram(s.Name, "", s.Bounds, s.Labels).add(s)
	}
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	return nil
}

// HistogramSummary is a histogram in one line for people:
// "count=N sum=S p50=… p90=… p99=…", the quantiles estimated from the
// classic buckets (see histsample.Histogram.Quantile), "nan" when empty.
func HistogramSummary(h histsample.Histogram) string {
	q := func(p float64) string {
		v := h.Quantile(p)
		if math.IsNaN(v) {
			return "nan"
		}
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return fmt.Sprintf("count=%d sum=%s p50=%s p90=%s p99=%s",
		h.Count, strconv.FormatFloat(h.Sum, 'g', 6, 64), q(0.5), q(0.9), q(0.99))
}
