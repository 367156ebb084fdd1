package stats

import (
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
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
// emits each series as a constant metric named by PrometheusName.
//
// Series are grouped into one family per Prometheus name. Within a family:
//   - the label keys are the union of the keys of its series (sanitised by
//     promLabelName, sorted); a series lacking a key gets "" for it, which
//     Prometheus reads as the label being absent;
//   - series whose sanitised labels coincide are summed into one;
//   - the type is counter or gauge as registered, or gauge if the family mixes both;
//   - HELP is the help registered for any of its dotted names, or a generic
//     one naming the dotted name.
//
// Label values that are not valid UTF-8 have the bad bytes replaced.
// The collector describes nothing up front (series appear at run time), so a
// prometheus.Registry treats it as unchecked.
func (r *Registry) Collector() prometheus.Collector { return &collector{r: r} }

type collector struct{ r *Registry }

// Describe sends no descriptors: the collector is unchecked.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect emits every series of the registry.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.r.promFamilies() {
		desc := prometheus.NewDesc(f.name, f.help, f.keys, nil)
		vt := prometheus.CounterValue
		if f.kind != KindCounter {
			vt = prometheus.GaugeValue
		}
		for _, s := range f.series {
			m, err := prometheus.NewConstMetric(desc, vt, s.value, s.values...)
			if err != nil {
				m = prometheus.NewInvalidMetric(desc, err)
			}
			ch <- m
		}
	}
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
}

// pending is a series on its way into a family: its labels as a map.
type pending struct {
	labels map[string]string
	value  float64
}

// promFamilies groups a snapshot of r into families, sorted by name.
func (r *Registry) promFamilies() []*promFamily {
	type building struct {
		fam     *promFamily
		dotted  string // the first dotted name seen, for a generic help
		keys    map[string]bool
		pending []pending
	}
	byName := map[string]*building{}
	var names []string
	for _, s := range r.Exposed() {
		pname := PrometheusName(s.Name)
		b := byName[pname]
		if b == nil {
			b = &building{fam: &promFamily{name: pname, kind: s.Kind}, dotted: s.Name, keys: map[string]bool{}}
			byName[pname] = b
			names = append(names, pname)
		} else if b.fam.kind != s.Kind {
			b.fam.kind = KindGauge
		}
		if b.fam.help == "" {
			b.fam.help = r.Help(s.Name)
		}
		labels := make(map[string]string, len(s.Labels)/2)
		for i := 0; i+1 < len(s.Labels); i += 2 {
			k := promLabelName(s.Labels[i])
			if _, dup := labels[k]; dup {
				continue // the first of duplicate keys wins
			}
			labels[k] = strings.ToValidUTF8(s.Labels[i+1], string(utf8.RuneError))
			b.keys[k] = true
		}
		b.pending = append(b.pending, pending{labels: labels, value: s.Value})
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
				s.value += p.value
				continue
			}
			s := &promSeries{values: vals, value: p.value}
			seen[id] = s
			f.series = append(f.series, s)
		}
		out = append(out, f)
	}
	return out
}
