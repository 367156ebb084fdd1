// Package sample is the wire type of a metric's value: what a handoff
// carries from one process to the next (the counters in the MOSN-style
// manifest and drain, the stats an Envoy-style child pulls from its parent).
// It is a leaf: the handoff packages import it without pulling in the metric
// registry or the Prometheus client.
package sample

import (
	"fmt"
	"strings"
)

// Kind tells a counter from a gauge.
type Kind string

const (
	KindCounter Kind = "counter"
	KindGauge   Kind = "gauge"
)

// Sample is one metric's value at a moment, as carried across a handoff.
type Sample struct {
	Name   string   `json:"name"`
	Labels []string `json:"labels,omitempty"` // key, value, key, value …
	Kind   Kind     `json:"kind"`
	Value  float64  `json:"value"`
}

// Key identifies a sample's series: its name and labels.
func (s Sample) Key() string { return SeriesKey(s.Name, s.Labels) }

// SeriesKey is the key of the series name{labels}.
func SeriesKey(name string, labels []string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// Delta returns, for each counter in now, how much it grew since base (by key).
// Series absent from base count from zero; shrunk ones are skipped.
func Delta(base, now []Sample) []Sample {
	prev := make(map[string]float64, len(base))
	for _, s := range base {
		prev[s.Key()] = s.Value
	}
	var out []Sample
	for _, s := range now {
		if s.Kind != KindCounter {
			continue
		}
		if d := s.Value - prev[s.Key()]; d > 0 {
			s.Value = d
			out = append(out, s)
		}
	}
	return out
}
