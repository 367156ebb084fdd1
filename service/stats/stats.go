// Package stats is mosnlite's metric registry: counters, gauges and
// histograms that the data plane updates, that /stats and /metrics expose,
// and that a handoff carries to the next process so that counters and
// histograms never go backwards.
package stats

import (
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// Kind tells a counter from a gauge (see package sample).
type Kind = sample.Kind

const (
	KindCounter = sample.KindCounter
	KindGauge   = sample.KindGauge
)

// Sample is one metric's value at a moment, as carried across a handoff.
// The type lives in the leaf package sample so that the handoff packages do
// not depend on the registry.
type Sample = sample.Sample

func seriesKey(name string, labels []string) string { return sample.SeriesKey(name, labels) }

// metric is one series. Its value is a float64 stored as bits, or, for a
// gauge func, read from fn.
type metric struct {
	name   string
	help   string
	kind   Kind
	labels []string
	bits   atomic.Uint64
	fn     atomic.Pointer[func() float64] // a GaugeFunc's; nil otherwise
}

func (m *metric) load() float64 {
	if fn := m.fn.Load(); fn != nil {
		return (*fn)()
	}
	return math.Float64frombits(m.bits.Load())
}

func (m *metric) add(d float64) {
	for {
		old := m.bits.Load()
		nv := math.Float64bits(math.Float64frombits(old) + d)
		if m.bits.CompareAndSwap(old, nv) {
			return
		}
	}
}

// Counter only goes up.
type Counter struct{ m *metric }

// Inc adds one.
func (c *Counter) Inc() { c.m.add(1) }

// Add adds n, which must not be negative.
func (c *Counter) Add(n float64) {
	if n > 0 {
		c.m.add(n)
	}
}

// Value reads the counter.
func (c *Counter) Value() float64 { return c.m.load() }

// Gauge goes up and down.
type Gauge struct{ m *metric }

func (g *Gauge) Inc()           { g.m.add(1) }
func (g *Gauge) Dec()           { g.m.add(-1) }
func (g *Gauge) Add(d float64)  { g.m.add(d) }
func (g *Gauge) Set(v float64)  { g.m.bits.Store(math.Float64bits(v)) }
func (g *Gauge) Value() float64 { return g.m.load() }

// Registry holds every series of one process. The zero value is not usable; call New.
type Registry struct {
	mu     sync.RWMutex
	series map[string]*metric
	// maxCarried bounds the series AddCounters creates (MaxCarriedSeries
	// when zero; tests set less).
	maxCarried int
	hists      map[string]*histogram     // by histsample.Histogram.ID
	layouts    map[string]*classicLayout // by the bounds' bits
	help       map[string]string
	local      map[string]bool // names of process-local gauges (see GaugeFunc)
	view       atomic.Pointer[View]
	expo       atomic.Pointer[Exposition]
	native     histsample.Indexer // native buckets at NativeSchema

	// freezeMu orders every read of exposed values against Freeze: a read
	// holds it shared from before it reads a value until it has applied the
	// freeze, Freeze holds it alone while it takes its snapshot. So a read
	// either ends before the snapshot (and shows no more than it) or shows
	// the snapshot.
	freezeMu sync.RWMutex
	frozen   *frozenState // nil: not frozen
}

// frozenState is what Freeze took: counters by key, histograms by ID.
type frozenState struct {
	counters  []Sample
	hists     []histsample.Histogram
	counterAt map[string]float64
	histAt    map[string]histsample.Histogram
}

// View turns the registry's own samples into what /stats and /metrics show,
// for example adding the gauges of an Envoy-style parent process that still
// runs. It must not modify its argument's elements in place.
type View func(own []Sample) []Sample

// New returns an empty registry.
func New() *Registry {
	ix, err := histsample.NewIndexer(NativeSchema)
	if err != nil {
		panic(err) // NativeSchema is a constant in range
	}
	return &Registry{
		series:  map[string]*metric{},
		hists:   map[string]*histogram{},
		layouts: map[string]*classicLayout{},
		help:    map[string]string{},
		local:   map[string]bool{},
		native:  ix,
	}
}

// Counter returns the counter series name{labels}, creating it at zero.
// labels are key, value pairs. Names are dotted ("listener.downstream_cx_total").
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	return &Counter{r.get(name, help, KindCounter, labels)}
}

// Gauge returns the gauge series name{labels}, creating it at zero.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	return &Gauge{r.get(name, help, KindGauge, labels)}
}

func (r *Registry) get(name, help string, kind Kind, labels []string) *metric {
	if len(labels)%2 != 0 {
		labels = append(labels, "")
	}
	key := seriesKey(name, labels)
	r.mu.RLock()
	m := r.series[key]
	r.mu.RUnlock()
	if m != nil {
		return m
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m = r.series[key]; m != nil {
		return m
	}
	if help != "" {
		r.help[name] = help
	}
	m = &metric{name: name, help: help, kind: kind, labels: append([]string(nil), labels...)}
	r.series[key] = m
	return m
}

// Snapshot returns every counter and gauge series, sorted by key.
// (Histograms are in Histograms.)
func (r *Registry) Snapshot() []Sample { return r.snapshot(func(*metric) bool { return true }) }

// snapshot reads the series that want accepts. Values are read after the
// registry lock is released: a gauge func may take its owner's locks.
func (r *Registry) snapshot(want func(*metric) bool) []Sample {
	r.mu.RLock()
	ms := make([]*metric, 0, len(r.series))
	for _, m := range r.series {
		if want(m) {
			ms = append(ms, m)
		}
	}
	r.mu.RUnlock()
	out := make([]Sample, len(ms))
	for i, m := range ms {
		out[i] = Sample{Name: m.name, Labels: m.labels, Kind: m.kind, Value: m.load()}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// SetView sets how the registry is exposed (nil: as it is).
func (r *Registry) SetView(v View) {
	if v == nil {
		r.view.Store(nil)
		return
	}
	r.view.Store(&v)
}

// Exposed returns the samples as /stats and /metrics show them: Snapshot,
// with counters at their frozen values while frozen (see Freeze), passed
// through the view, if one is set. Process-local gauges (GaugeFunc,
// SetInfo) bypass the view: they always read this process's own series.
func (r *Registry) Exposed() []Sample { return r.exposed(true) }

// Unfrozen is Exposed as if the registry were not frozen: what an
// Envoy-style child, which merges the growth of this process's counters,
// is given.
func (r *Registry) Unfrozen() []Sample { return r.exposed(false) }

func (r *Registry) exposed(applyFreeze bool) []Sample {
	var own []Sample
	if applyFreeze {
		r.freezeMu.RLock()
		own = r.Snapshot()
		if f := r.frozen; f != nil {
			own = f.applyCounters(own)
		}
		r.freezeMu.RUnlock()
	} else {
		own = r.Snapshot()
	}
	v := r.view.Load()
	if v == nil {
		return own
	}
	var local, rest []Sample
	for _, s := range own {
		if r.isLocal(s.Name) {
			local = append(local, s)
		} else {
			rest = append(rest, s)
		}
	}
	viewed := (*v)(rest)
	out := make([]Sample, 0, len(viewed)+len(local))
	for _, s := range viewed {
		if !r.isLocal(s.Name) {
			out = append(out, s)
		}
	}
	out = append(out, local...)
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// ExposedHistograms returns the histograms as /stats and /metrics show
// them: Histograms, at their frozen states while frozen (see Freeze).
func (r *Registry) ExposedHistograms() []histsample.Histogram {
	r.freezeMu.RLock()
	defer r.freezeMu.RUnlock()
	hs := r.Histograms()
	if f := r.frozen; f != nil {
		hs = f.applyHistograms(hs)
	}
	return hs
}

// Freeze takes every counter and histogram as it is now and, until
// Unfreeze, exposes them at those values (series created later are left
// out); gauges stay live. It returns what it took. A process that hands its
// counters and histograms to a successor freezes them at what it sends: a
// scrape it still answers never shows more than the successor has, while
// the registry itself goes on counting (Counters, Histograms) for the
// deltas that follow. While frozen, Freeze takes nothing new and returns the
// first snapshot again.
func (r *Registry) Freeze() ([]Sample, []histsample.Histogram) {
	r.freezeMu.Lock()
	defer r.freezeMu.Unlock()
	if r.frozen == nil {
		f := &frozenState{counters: r.Counters(), hists: r.Histograms()}
		f.counterAt = make(map[string]float64, len(f.counters))
		for _, s := range f.counters {
			f.counterAt[s.Key()] = s.Value
		}
		f.histAt = make(map[string]histsample.Histogram, len(f.hists))
		for _, h := range f.hists {
			f.histAt[h.ID()] = h
		}
		r.frozen = f
	}
	return r.frozen.counters, r.frozen.hists
}

// Unfreeze exposes the live values again (after a revert: this process
// serves once more).
func (r *Registry) Unfreeze() {
	r.freezeMu.Lock()
	r.frozen = nil
	r.freezeMu.Unlock()
}

func (f *frozenState) applyCounters(own []Sample) []Sample {
	out := own[:0:0]
	for _, s := range own {
		if s.Kind == KindCounter {
			v, ok := f.counterAt[s.Key()]
			if !ok {
				continue
			}
			s.Value = v
		}
		out = append(out, s)
	}
	return out
}

func (f *frozenState) applyHistograms(own []histsample.Histogram) []histsample.Histogram {
	out := make([]histsample.Histogram, 0, len(own))
	for _, h := range own {
		if at, ok := f.histAt[h.ID()]; ok {
			out = append(out, at)
		}
	}
	return out
}

// Counters returns the counter series only, sorted by key: what a handoff carries.
func (r *Registry) Counters() []Sample {
	return r.snapshot(func(m *metric) bool { return m.kind == KindCounter })
}

// AddCounters adds each counter sample's value to the series of the same key,
// creating it if needed. Gauges in samples are ignored. A new process calls it
// with the old process's counters at handoff, and again with what the old one
// counted while it drained, so that no counter goes backwards.
func (r *Registry) AddCounters(samples []Sample) error {
	dropped := 0
	for _, s := range samples {
		if s.Kind != KindCounter || s.Value <= 0 || math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
			continue
		}
		m := r.getBounded(s.Name, s.Labels, r.carriedLimit())
		if m == nil {
			dropped++
			continue
		}
		m.add(s.Value)
	}
	if dropped > 0 {
		return fmt.Errorf("stats: %d carried counter series left out: the registry holds %d series, the limit for series a peer adds (MaxCarriedSeries)", dropped, r.carriedLimit())
	}
	return nil
}

func (r *Registry) carriedLimit() int {
	if r.maxCarried > 0 {
		return r.maxCarried
	}
	return MaxCarriedSeries
}

// MaxCarriedSeries bounds the registry's size when a peer's counters add
// series to it (AddCounters): a series new to it is refused beyond this
// many, so that no peer grows our memory without bound.
const MaxCarriedSeries = 1 << 17

// getBounded is get for a counter, except that it creates no series once
// the registry holds limit of them (nil then).
func (r *Registry) getBounded(name string, labels []string, limit int) *metric {
	if len(labels)%2 != 0 {
		labels = append(labels, "")
	}
	key := seriesKey(name, labels)
	r.mu.RLock()
	m, n := r.series[key], len(r.series)
	r.mu.RUnlock()
	if m == nil && n >= limit {
		return nil
	}
	return r.get(name, "", KindCounter, labels)
}

// Delta returns, for each counter in now, how much it grew since base (by key).
// Series absent from base count from zero; shrunk ones are skipped.
func Delta(base, now []Sample) []Sample { return sample.Delta(base, now) }

// Help returns the help text registered for a metric name.
func (r *Registry) Help(name string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.help[name]
}

// WriteText writes every series as "name: value" lines, Envoy's /stats shape;
// labelled series read "name{key="value"}: value", and histograms (after the
// counters and gauges) "name{…}: count=N sum=S p50=… p90=… p99=…".
func (r *Registry) WriteText(w io.Writer) error {
	for _, s := range r.Exposed() {
		if _, err := fmt.Fprintf(w, "%s: %s\n", s.Key(), formatValue(s.Value)); err != nil {
			return fmt.Errorf("stats: write: %w", err)
		}
	}
	for _, h := range r.ExposedHistograms() {
		if _, err := fmt.Fprintf(w, "%s: %s\n", seriesKey(h.Name, h.Labels), HistogramSummary(h)); err != nil {
			return fmt.Errorf("stats: write: %w", err)
		}
	}
	return nil
}

func formatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%g", v)
}
