package envoy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// StatsAdder receives the parent's counter and histogram growth;
// *stats.Registry is one. AddHistograms validates what it is given.
type StatsAdder interface {
	AddCounters([]sample.Sample) error
	AddHistograms([]histsample.Histogram) error
}

// DefaultNoImportGauges are gauges that describe one process only, so a
// child never adds its parent's value to its own (server.live reads 1).
func DefaultNoImportGauges() []string {
	return []string{
		"server.live", "server.state", "server.uptime", "server.concurrency",
		"server.hot_restart_epoch", "server.version",
	}
}

// DefaultRetainedGauges keep the parent's contribution after the parent is
// gone, so server.hot_restart_generation reads 1, 2, 3 across epochs.
func DefaultRetainedGauges() []string {
	return []string{"server.hot_restart_generation"}
}

// StatMerger carries a parent's stats into the child, Envoy's way:
// counters and histograms continue (the parent's growth since the last merge
// is added to the child's registry), gauges include the parent's value while the parent lives
// (applied at read time by Overlay, since gauges are set by their owners),
// except no-import gauges; retained gauges keep the parent's last value after
// it is gone. It is safe for concurrent use.
type StatMerger struct {
	noImport map[string]bool
	retain   map[string]bool

	mu       sync.Mutex
	last     []sample.Sample          // parent's counters at the last merge
	lastH    []histsample.Histogram   // parent's histograms at the last merge
	refused  map[string]bool          // series already refused (named once), bounded
	gauges   map[string]sample.Sample // parent's gauges at the last merge, by key
	retained map[string]sample.Sample // retained gauges of parents gone
	gone     bool
}

// NewStatMerger returns a merger; nil lists mean the defaults above.
func NewStatMerger(noImport, retain []string) *StatMerger {
	if noImport == nil {
		noImport = DefaultNoImportGauges()
	}
	if retain == nil {
		retain = DefaultRetainedGauges()
	}
	m := &StatMerger{
		noImport: map[string]bool{},
		retain:   map[string]bool{},
		gauges:   map[string]sample.Sample{},
		retained: map[string]sample.Sample{},
		refused:  map[string]bool{},
	}
	for _, n := range noImport {
		m.noImport[n] = true
	}
	for _, n := range retain {
		m.retain[n] = true
	}
	return m
}

// Merge takes a parent snapshot and returns the counter growth since the
// previous one (all of it the first time), to add to the child's registry.
// After ParentGone it returns nothing.
func (m *StatMerger) Merge(parent []sample.Sample) []sample.Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone {
		return nil
	}
	var counters []sample.Sample
	gauges := map[string]sample.Sample{}
	for _, s := range parent {
		switch s.Kind {
		case sample.KindCounter:
			counters = append(counters, s)
		case sample.KindGauge:
			if !m.noImport[s.Name] {
				gauges[s.Key()] = s
			}
		}
	}
	delta := sample.Delta(m.last, counters)
	m.last, m.gauges = counters, gauges
	return delta
}

// maxRefusedNamed bounds the series a merger remembers having refused.
const maxRefusedNamed = 1024

// MergeHistograms takes the parent's histogram states and returns their
// growth since the previous merge (all of it the first time), to add to the
// child's registry. States that are not consistent histograms are left out
// (their series' growth is taken up again once the parent sends a good
// one); the error names them (bounded, see histsample.Check), the first time
// each is refused only. After ParentGone it returns nothing.
func (m *StatMerger) MergeHistograms(parent []histsample.Histogram) ([]histsample.Histogram, error) {
	ok, err := histsample.Check(parent)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone {
		return nil, nil
	}
	if err != nil {
		fresh := false
		good := make(map[string]bool, len(ok))
		for _, h := range ok {
			good[h.ID()] = true
		}
		for _, h := range parent {
			if id := h.ID(); !good[id] && !m.refused[id] && len(m.refused) < maxRefusedNamed {
				m.refused[id], fresh = true, true
			}
		}
		if !fresh {
			err = nil // said before
		}
		// A refused series keeps its last good state as the base.
		okIDs := good
		for _, h := range m.lastH {
			if !okIDs[h.ID()] {
				ok = append(ok, h)
			}
		}
	}
	delta := histsample.Delta(m.lastH, ok)
	m.lastH = ok
	if err != nil {
		return delta, fmt.Errorf("envoy: the parent's histograms: %w", err)
	}
	return delta, nil
}

// ParentGone drops the parent's gauge contributions, keeping retained ones.
func (m *StatMerger) ParentGone() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone {
		return
	}
	m.gone = true
	for k, s := range m.gauges {
		if m.retain[s.Name] {
			m.retained[k] = s
		}
	}
	m.gauges, m.last, m.lastH = map[string]sample.Sample{}, nil, nil
}

// Overlay returns own (a registry snapshot) with the parent's gauges added:
// a gauge both have reads the sum; one only the parent has appears with the
// parent's value. Counters pass unchanged. The result is sorted by key.
func (m *StatMerger) Overlay(own []sample.Sample) []sample.Sample {
	m.mu.Lock()
	extra := make(map[string]sample.Sample, len(m.gauges)+len(m.retained))
	for k, s := range m.retained {
		extra[k] = s
	}
	for k, s := range m.gauges {
		if r, ok := extra[k]; ok {
			s.Value += r.Value
		}
		extra[k] = s
	}
	m.mu.Unlock()

	out := make([]sample.Sample, 0, len(own)+len(extra))
	for _, s := range own {
		if s.Kind == sample.KindGauge && !m.noImport[s.Name] {
			if p, ok := extra[s.Key()]; ok {
				s.Value += p.Value
				delete(extra, s.Key())
			}
		}
		out = append(out, s)
	}
	for _, s := range extra {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// AttachStats makes this process merge its parent's stats into m and into
// into (the child's registry): SyncParentStats and RunStatsSync use them, a final
// sync precedes TerminateParent, and m learns ParentGone whenever the parent
// is terminated or lost.
func (h *HotRestart) AttachStats(m *StatMerger, into StatsAdder) {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	h.merger, h.counters = m, into
	if h.conn == nil || h.parentTerminated {
		m.ParentGone()
	}
}

// SyncParentStats pulls the parent's stats once and merges them (see
// AttachStats). Refused parent histograms are named in the error (once
// each); everything else is merged all the same.
func (h *HotRestart) SyncParentStats(ctx context.Context) error {
	h.cmu.Lock()
	m, into := h.merger, h.counters
	h.cmu.Unlock()
	if m == nil {
		return fmt.Errorf("envoy: sync parent stats: AttachStats was not called")
	}
	st, err := h.ParentStats(ctx)
	if err != nil {
		return err
	}
	var cerr error
	if st.Samples != nil {
		cerr = into.AddCounters(m.Merge(st.Samples))
	}
	d, herr := m.MergeHistograms(st.Histograms)
	if err := into.AddHistograms(d); err != nil && herr == nil {
		herr = err // not reached: the merger's deltas are consistent
	}
	return errors.Join(cerr, herr)
}

// RunStatsSync calls SyncParentStats every interval on the Config clock until
// the parent is gone or ctx ends. Errors are logged; a broken connection ends it.
func (h *HotRestart) RunStatsSync(ctx context.Context, every time.Duration) {
	gone := h.ParentGone()
	for h.HasParent() {
		select {
		case <-ctx.Done():
			return
		case <-gone:
			return
		case <-h.cfg.After(every):
		}
		if err := h.SyncParentStats(ctx); err != nil {
			h.log.WithError(err).Warn("could not merge the parent's stats")
		}
	}
}

// parentGoneLocked records that the parent is gone (terminated or lost) and
// tells the attached merger; called with cmu held.
func (h *HotRestart) parentGoneLocked() {
	h.goneOnce.Do(func() { close(h.gone) })
	if h.merger != nil {
		h.merger.ParentGone()
	}
}
