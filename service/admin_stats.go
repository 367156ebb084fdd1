package service

import (
	"regexp"

	"github.com/mosnlite/mosnlite/service/stats"
)

// statsJSON is the body of /stats?format=json.
type statsJSON struct {
	Stats      []statJSON      `json:"stats"`
	Histograms []histogramJSON `json:"histograms"`
}

type statJSON struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// histogramJSON is one histogram: its count, sum and cumulative classic
// buckets (the +Inf bucket is the count).
type histogramJSON struct {
	Name    string       `json:"name"`
	Count   uint64       `json:"count"`
	Sum     float64      `json:"sum"`
	Buckets []bucketJSON `json:"buckets"`
}

type bucketJSON struct {
	LE    float64 `json:"le"`
	Count uint64  `json:"count"`
}

// newStatsJSON renders the registry's series whose key filter matches (all if nil).
func newStatsJSON(reg *stats.Registry, filter *regexp.Regexp) statsJSON {
	out := statsJSON{Stats: []statJSON{}, Histograms: []histogramJSON{}}
	for _, s := range reg.Exposed() {
		if filter == nil || filter.MatchString(s.Key()) {
			out.Stats = append(out.Stats, statJSON{Name: s.Key(), Value: s.Value})
		}
	}
	for _, h := range reg.ExposedHistograms() {
		name := stats.Sample{Name: h.Name, Labels: h.Labels}.Key()
		if filter != nil && !filter.MatchString(name) {
			continue
		}
		hj := histogramJSON{Name: name, Count: h.Count, Sum: h.Sum, Buckets: make([]bucketJSON, 0, len(h.Bounds))}
		for i, c := range h.Cumulative() {
			hj.Buckets = append(hj.Buckets, bucketJSON{LE: h.Bounds[i], Count: c})
		}
		out.Histograms = append(out.Histograms, hj)
	}
	return out
}
