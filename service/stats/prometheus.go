package stats

import (
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// promPrefix starts every Prometheus name that comes from a Registry.
const promPrefix = "mosnlite_"

// PrometheusName maps a dotted series name to its Prometheus name:
// "listener.downstream_cx_total" → "mosnlite_listener_downstream_cx_total".
// Any character outside [a-zA-Z0-9_:] becomes "_".
func PrometheusName(name string) string {
	var b strings.Builder
	b.Grow(len(promPrefix) + len(name))
	b.WriteString(promPrefix)
	for _, c := range name {
		if c == '_' || c == ':' || isAlnum(c) {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// promLabelName makes a label key a valid, non-reserved Prometheus label name:
// invalid characters become "_", a leading digit gets a "_" before it, an
// empty key reads "label", and a key starting with "__" (reserved) gets "x".
func promLabelName(key string) string {
	if key == "" {
		return "label"
	}
	var b strings.Builder
	for i, c := range key {
		switch {
		case c == '_' || isAlnum(c):
			if i == 0 && c >= '0' && c <= '9' {
				b.WriteByte('_')
			}
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if strings.HasPrefix(s, "__") {
		s = "x" + s
	}
	return s
}

func isAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Collector returns a prometheus.Collector that reads r at every scrape and
// emits each series named as the registry's Exposition says (PrometheusName
// by default, see EnvoyNames for Envoy's).
//
// Series are grouped into one family per Prometheus name. Within a family:
//   - the label keys are the union of the keys of its series (sanitised by
//     promLabelName, sorted); a series lacking a key gets "" for it, which
//     Prometheus reads as the label being absent;
//   - series whose sanitised labels coincide are summed into one (histograms
//     are merged);
//   - the type is counter, gauge or histogram as registered; gauge if the
//     family mixes counters and gauges; a histogram family leaves out
//     counters and gauges of the same name;
//   - HELP is the help registered for any of its dotted names, or a generic
//     one naming the dotted name.
//
// Histograms carry classic buckets, and native buckets too when the
// Exposition asks for them. Label values that are not valid UTF-8 have the
// bad bytes replaced. The collector describes nothing up front (series
// appear at run time), so a prometheus.Registry treats it as unchecked.
func (r *Registry) Collector() prometheus.Collector { return &collector{r: r} }

type collector struct{ r *Registry }

// Describe sends no descriptors: the collector is unchecked.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect emits every series of the registry.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := c.r.Exposition()
	for _, f := range groupFamilies(c.r.outSeries(e)) {
		desc := prometheus.NewDesc(f.name, f.help, f.keys, nil)
		for _, s := range f.series {
			ch <- f.metric(desc, s, e.NativeHistograms)
		}
	}
}

// kindHistogram is a family's kind when its series are histograms.
const kindHistogram Kind = "histogram"

// outSeries is one series named for Prometheus, before grouping.
type outSeries struct {
	name   string // the Prometheus name
	dotted string // the registry's name, for a generic help
	help   string
	kind   Kind
	labels []string // key, value pairs as registered
	value  float64
	hist   *histsample.Histogram // kind histogram
}

// outSeries names every exposed series as e says.
func (r *Registry) outSeries(e Exposition) []outSeries {
	samples, hists := r.Exposed(), r.ExposedHistograms()
	if e.Naming == NamingEnvoy {
		return newEnvoyNamer(r, e).name(samples, hists)
	}
	out := make([]outSeries, 0, len(samples)+len(hists))
	for _, s := range samples {
		out = append(out, r.mosnliteSeries(s))
	}
	for i := range hists {
		out = append(out, r.mosnliteHistogram(&hists[i]))
	}
	return out
}

func (r *Registry) mosnliteSeries(s Sample) outSeries {
	return outSeries{name: PrometheusName(s.Name), dotted: s.Name, help: r.Help(s.Name), kind: s.Kind, labels: s.Labels, value: s.Value}
}

func (r *Registry) mosnliteHistogram(h *histsample.Histogram) outSeries {
	return outSeries{name: PrometheusName(h.Name), dotted: h.Name, help: r.Help(h.Name), kind: kindHistogram, labels: h.Labels, hist: h}
}

// promFamily is every series of one Prometheus name, ready to emit.
type promFamily struct {
	name   string
	help   string
	kind   Kind
	keys   []string
	series []*promSeries
}

type promSeries struct {
	values []string // in the order of promFamily.keys
	value  float64
	hist   *histsample.Histogram
}

func (f *promFamily) metric(desc *prometheus.Desc, s *promSeries, native bool) prometheus.Metric {
	if f.kind == kindHistogram {
		return &histMetric{desc: desc, labels: prometheus.MakeLabelPairs(desc, s.values), h: s.hist, native: native}
	}
	vt := prometheus.CounterValue
	if f.kind != KindCounter {
		vt = prometheus.GaugeValue
	}
	m, err := prometheus.NewConstMetric(desc, vt, s.value, s.values...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return m
}

// groupFamilies groups series into families, sorted by name.
func groupFamilies(in []outSeries) []*promFamily {
	type pending struct {
		labels map[string]string
		value  float64
		hist   *histsample.Histogram
	}
	type building struct {
		fam     *promFamily
		dotted  string // the first dotted name seen, for a generic help
		keys    map[string]bool
		pending []pending
	}
	byName := map[string]*building{}
	var names []string
	for _, s := range in {
		b := byName[s.name]
		switch {
		case b == nil:
			b = &building{fam: &promFamily{name: s.name, kind: s.kind}, dotted: s.dotted, keys: map[string]bool{}}
			byName[s.name] = b
			names = append(names, s.name)
		case b.fam.kind == s.kind:
		case s.kind == kindHistogram: // a histogram family leaves the scalars out
			b.fam.kind, b.keys, b.pending = kindHistogram, map[string]bool{}, nil
		case b.fam.kind == kindHistogram:
			continue
		default:
			b.fam.kind = KindGauge
		}
		if b.fam.help == "" {
			b.fam.help = s.help
		}
		labels := make(map[string]string, len(s.labels)/2)
		for i := 0; i+1 < len(s.labels); i += 2 {
			k := promLabelName(s.labels[i])
			if _, dup := labels[k]; dup {
				continue // the first of duplicate keys wins
			}
			labels[k] = strings.ToValidUTF8(s.labels[i+1], string(utf8.RuneError))
			b.keys[k] = true
		}
		b.pending = append(b.pending, pending{labels: labels, value: s.value, hist: s.hist})
	}
	sort.Strings(names)

	out := make([]*promFamily, 0, len(names))
	for _, n := range names {
		b := byName[n]
		f := b.fam
		if f.help == "" {
			f.help = "mosnlite metric " + b.dotted + "."
		}
		for k := range b.keys {
			f.keys = append(f.keys, k)
		}
		sort.Strings(f.keys)
		seen := map[string]*promSeries{}
		for _, p := range b.pending {
			vals := make([]string, len(f.keys))
			for i, k := range f.keys {
				vals[i] = p.labels[k]
			}
			id := strings.Join(vals, "\xff")
			if s := seen[id]; s != nil {
				if s.hist != nil && p.hist != nil {
					sum := histsample.Add(*s.hist, *p.hist)
					s.hist = &sum
				} else {
					s.value += p.value
				}
				continue
			}
			s := &promSeries{values: vals, value: p.value, hist: p.hist}
			seen[id] = s
			f.series = append(f.series, s)
		}
		out = append(out, f)
	}
	return out
}

// histMetric is one histogram series as the Prometheus client emits it.
type histMetric struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	h      *histsample.Histogram
	native bool
}

func (m *histMetric) Desc() *prometheus.Desc { return m.desc }

// Write fills out with the classic buckets (cumulative, the +Inf bucket
// implied by the count) and, if native, the native buckets as spans of
// consecutive indexes with delta-encoded counts, Prometheus' wire form.
func (m *histMetric) Write(out *dto.Metric) error {
	h := m.h
	d := &dto.Histogram{SampleCount: new(h.Count), SampleSum: new(h.Sum)}
	for i, c := range h.Cumulative() {
		d.Bucket = append(d.Bucket, &dto.Bucket{UpperBound: new(h.Bounds[i]), CumulativeCount: new(c)})
	}
	if m.native {
		d.Schema = new(h.Schema)
		d.ZeroThreshold = new(h.ZeroThreshold)
		d.ZeroCount = new(h.ZeroCount)
		d.PositiveSpan, d.PositiveDelta = nativeSpans(h.Native)
		if len(d.PositiveSpan) == 0 && h.ZeroCount == 0 {
			// An empty span marks a histogram without observations as native.
			d.PositiveSpan = []*dto.BucketSpan{{Offset: new(int32(0)), Length: new(uint32(0))}}
		}
	}
	out.Label = m.labels
	out.Histogram = d
	return nil
}

// nativeSpans encodes sorted buckets as spans (an offset from the end of the
// previous span, a length) and deltas (each count minus the previous one).
func nativeSpans(bs []histsample.Bucket) ([]*dto.BucketSpan, []int64) {
	var spans []*dto.BucketSpan
	deltas := make([]int64, 0, len(bs))
	var next int32 // the index right after the previous span
	var prev int64
	for i, b := range bs {
		if i == 0 || b.Index != next {
			spans = append(spans, &dto.BucketSpan{Offset: new(b.Index - next), Length: new(uint32(0))})
		}
		*spans[len(spans)-1].Length++
		deltas = append(deltas, int64(b.Count)-prev)
		prev = int64(b.Count)
		next = b.Index + 1
	}
	return spans, deltas
}
