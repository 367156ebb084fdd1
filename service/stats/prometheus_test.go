package stats

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gather runs c through a private Prometheus registry and returns the text
// exposition and its parsed families.
func gather(t *testing.T, c prometheus.Collector) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	preg := prometheus.NewRegistry()
	if err := preg.Register(c); err != nil {
		t.Fatalf("register: %v", err)
	}
	mfs, err := preg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("encode: %v", err)
		}
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	parsed, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, buf.String())
	}
	return buf.String(), parsed
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func TestCollectorCountersAndGauges(t *testing.T) {
	r := New()
	r.Counter("listener.downstream_cx_total", "Connections accepted.", "listener", "x").Add(3)
	r.Counter("listener.downstream_cx_total", "", "listener", "y").Inc()
	r.Gauge("listener.downstream_cx_active", "Connections open.", "listener", "x").Set(2)
	r.Counter("upgrade.done_total", "").Add(5)

	text, fams := gather(t, r.Collector())

	cx := fams["mosnlite_listener_downstream_cx_total"]
	if cx == nil {
		t.Fatalf("no cx family in:\n%s", text)
	}
	if cx.GetType() != dto.MetricType_COUNTER {
		t.Errorf("cx type = %v, want counter", cx.GetType())
	}
	if cx.GetHelp() != "Connections accepted." {
		t.Errorf("cx help = %q", cx.GetHelp())
	}
	got := map[string]float64{}
	for _, m := range cx.GetMetric() {
		got[labelsOf(m)["listener"]] = m.GetCounter().GetValue()
	}
	if got["x"] != 3 || got["y"] != 1 || len(got) != 2 {
		t.Errorf("cx values = %v, want x=3 y=1", got)
	}

	act := fams["mosnlite_listener_downstream_cx_active"]
	if act == nil || act.GetType() != dto.MetricType_GAUGE || act.GetMetric()[0].GetGauge().GetValue() != 2 {
		t.Errorf("active family wrong: %v", act)
	}
	up := fams["mosnlite_upgrade_done_total"]
	if up == nil || up.GetMetric()[0].GetCounter().GetValue() != 5 {
		t.Errorf("upgrade family wrong: %v", up)
	}
	if !strings.Contains(up.GetHelp(), "upgrade.done_total") {
		t.Errorf("generic help should name the series, got %q", up.GetHelp())
	}
	if !strings.Contains(text, "# TYPE mosnlite_listener_downstream_cx_total counter\n") ||
		!strings.Contains(text, "# TYPE mosnlite_listener_downstream_cx_active gauge\n") {
		t.Errorf("TYPE lines missing:\n%s", text)
	}
}

func TestCollectorReadsCurrentValues(t *testing.T) {
	r := New()
	c := r.Counter("req_total", "")
	col := r.Collector()
	c.Inc()
	_, fams := gather(t, col)
	c.Add(4)
	_, fams2 := gather(t, col)
	if v := fams["mosnlite_req_total"].GetMetric()[0].GetCounter().GetValue(); v != 1 {
		t.Errorf("first scrape = %v, want 1", v)
	}
	if v := fams2["mosnlite_req_total"].GetMetric()[0].GetCounter().GetValue(); v != 5 {
		t.Errorf("second scrape = %v, want 5", v)
	}
}

func TestCollectorMixedLabelKeys(t *testing.T) {
	r := New()
	r.Counter("http.rq_total", "", "listener", "a", "cluster", "c1", "status", "2xx").Add(7)
	r.Counter("http.rq_total", "", "listener", "a", "status", "5xx").Add(2) // no cluster
	_, fams := gather(t, r.Collector())
	f := fams["mosnlite_http_rq_total"]
	if f == nil || len(f.GetMetric()) != 2 {
		t.Fatalf("want one family of two series, got %v", f)
	}
	for _, m := range f.GetMetric() {
		l := labelsOf(m)
		switch l["status"] {
		case "2xx":
			if l["cluster"] != "c1" || m.GetCounter().GetValue() != 7 {
				t.Errorf("2xx series wrong: %v", m)
			}
		case "5xx":
			// An empty value is how Prometheus spells an absent label.
			if l["cluster"] != "" || m.GetCounter().GetValue() != 2 {
				t.Errorf("5xx series should have an empty cluster label and value 2: %v", m)
			}
		default:
			t.Errorf("unexpected series %v", m)
		}
	}
}

func TestCollectorSanitizesAndEscapes(t *testing.T) {
	r := New()
	// A label value with quote, backslash and newline must be escaped;
	// a bad label key is rewritten; invalid UTF-8 is repaired.
	r.Gauge("weird-name.x", "", "bad.key", "a\"b\\c\nd", "0k", "\xff").Set(1)
	// Two keys that sanitise to one series are summed.
	r.Counter("dup_total", "", "a.b", "v").Add(1)
	r.Counter("dup_total", "", "a_b", "v").Add(2)
	// Two dotted names of one family: the help of either serves.
	r.Counter("help.x_total", "").Inc()
	r.Counter("help_x_total", "Shared help.", "k", "v").Inc()
	// A name registered as both kinds is exposed as a gauge.
	r.Counter("mixed", "", "k", "c").Add(1)
	r.Gauge("mixed", "", "k", "g").Set(-1)

	text, fams := gather(t, r.Collector())
	w := fams["mosnlite_weird_name_x"]
	if w == nil {
		t.Fatalf("sanitised name missing:\n%s", text)
	}
	l := labelsOf(w.GetMetric()[0])
	if l["bad_key"] != "a\"b\\c\nd" {
		t.Errorf("label value did not round-trip: %q", l["bad_key"])
	}
	if l["_0k"] != "\uFFFD" {
		t.Errorf("invalid UTF-8 not repaired: %q", l["_0k"])
	}
	if !strings.Contains(text, `bad_key="a\"b\\c\nd"`) {
		t.Errorf("label value not escaped in exposition:\n%s", text)
	}
	d := fams["mosnlite_dup_total"]
	if d == nil || len(d.GetMetric()) != 1 || d.GetMetric()[0].GetCounter().GetValue() != 3 {
		t.Errorf("colliding series should sum to 3: %v", d)
	}
	if h := fams["mosnlite_help_x_total"]; h == nil || h.GetHelp() != "Shared help." || len(h.GetMetric()) != 2 {
		t.Errorf("merged family should carry the registered help: %v", h)
	}
	m := fams["mosnlite_mixed"]
	if m == nil || m.GetType() != dto.MetricType_GAUGE || len(m.GetMetric()) != 2 {
		t.Errorf("mixed family should be a gauge of two series: %v", m)
	}
}

func TestPromLabelName(t *testing.T) {
	for in, want := range map[string]string{
		"listener": "listener",
		"a.b-c":    "a_b_c",
		"9x":       "_9x",
		"":         "label",
		"__name__": "x__name__",
	} {
		if got := promLabelName(in); got != want {
			t.Errorf("promLabelName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := PrometheusName("listener.downstream_cx_total"); got != "mosnlite_listener_downstream_cx_total" {
		t.Errorf("PrometheusName = %q", got)
	}
}
