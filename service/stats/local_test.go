package stats

import (
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestLocalGaugesBypassTheView: an Envoy-style parent's gauges are added to
// the child's by the view, but the child's build, start times and upgrade
// record are its own, and a parent's series of those names (another
// version's build info) never appear.
func TestLocalGaugesBypassTheView(t *testing.T) {
	start := time.Unix(1700000000, 250_000_000)
	reg := New()
	RegisterProcess(reg, Build{Version: "2.0", Commit: "c2", GoVersion: "go"}, func() time.Time { return start }, func() time.Time { return start.Add(-time.Hour) })
	reg.Gauge("listener.downstream_cx_active", "", "listener", "l").Set(1)
	parent := []Sample{
		{Name: BuildInfo, Labels: []string{"version", "1.0", "commit", "c1", "go_version", "go"}, Kind: KindGauge, Value: 1},
		{Name: GenerationStartTime, Kind: KindGauge, Value: 1600000000},
		{Name: "listener.downstream_cx_active", Labels: []string{"listener", "l"}, Kind: KindGauge, Value: 5},
	}
	reg.SetView(func(own []Sample) []Sample {
		byKey := map[string]Sample{}
		for _, s := range own {
			byKey[s.Key()] = s
		}
		for _, p := range parent {
			s, ok := byKey[p.Key()]
			if !ok {
				s = p
				s.Value = 0
			}
			s.Value += p.Value
			byKey[p.Key()] = s
		}
		var out []Sample
		for _, s := range byKey {
			out = append(out, s)
		}
		return out
	})
	got := map[string]float64{}
	for _, s := range reg.Exposed() {
		got[s.Key()] = s.Value
	}
	if got[`build_info{version="2.0",commit="c2",go_version="go"}`] != 1 {
		t.Errorf("own build info: %v", got)
	}
	if _, ok := got[`build_info{version="1.0",commit="c1",go_version="go"}`]; ok {
		t.Errorf("the parent's build info is exposed: %v", got)
	}
	if got[GenerationStartTime] != 1700000000.25 || got[ServiceStartTime] != 1700000000.25-3600 {
		t.Errorf("start times: %v", got)
	}
	if got[`listener.downstream_cx_active{listener="l"}`] != 6 {
		t.Errorf("ordinary gauges still go through the view: %v", got)
	}
	// Process-local gauges are not counters: no handoff carries them.
	if c := reg.Counters(); len(c) != 0 {
		t.Errorf("Counters = %v", c)
	}
}

func TestSetInfoReplacesTheSeries(t *testing.T) {
	reg := New()
	SetUpgrade(reg, Upgrade{Generation: 2, Started: time.Unix(100, 0), Handoff: 4321 * time.Microsecond, Migrated: 3})
	SetUpgrade(reg, Upgrade{Generation: 3, Started: time.Unix(200, 0), Handoff: 12 * time.Millisecond, Migrated: 0})
	_, fams := gather(t, reg.Collector())
	f := fams["mosnlite_server_upgrade_info"]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("want one upgrade_info series: %v", f)
	}
	m := f.GetMetric()[0]
	l := labelsOf(m)
	if l["generation"] != "3" || l["handoff_ms"] != "12.0" || l["migrated_connections"] != "0" || m.GetGauge().GetValue() != 200 {
		t.Fatalf("upgrade_info: %v = %v", l, m.GetGauge().GetValue())
	}
}

func TestGaugeFuncReadsAtEachScrape(t *testing.T) {
	reg := New()
	v := 1.0
	reg.GaugeFunc("x", "", func() float64 { return v })
	_, f1 := gather(t, reg.Collector())
	v = 2
	_, f2 := gather(t, reg.Collector())
	if f1["mosnlite_x"].GetMetric()[0].GetGauge().GetValue() != 1 || f2["mosnlite_x"].GetMetric()[0].GetGauge().GetValue() != 2 {
		t.Fatal("gauge func not read at scrape time")
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{100: "1xx", 200: "2xx", 204: "2xx", 302: "3xx", 404: "4xx", 503: "5xx", 599: "5xx", 0: "5xx", 600: "5xx", 99: "5xx"} {
		if got := StatusClass(code); got != want {
			t.Errorf("StatusClass(%d) = %s, want %s", code, got, want)
		}
	}
}

func TestHTTPListenerMetrics(t *testing.T) {
	reg := New()
	m := NewHTTPListenerMetrics(reg, "web", []string{"api", "api"})
	m.Request("api", 201, 2*time.Millisecond)
	m.Request("elsewhere", 502, time.Second) // unknown cluster: counted as none
	_, fams := gather(t, reg.Collector())
	rq := fams["mosnlite_http_downstream_rq_total"]
	if len(rq.GetMetric()) != 10 { // api and none × 5 classes, all from the start
		t.Fatalf("%d request counters, want 10", len(rq.GetMetric()))
	}
	counts := map[string]float64{}
	for _, s := range rq.GetMetric() {
		l := labelsOf(s)
		counts[l["cluster"]+"/"+l["status_class"]] = s.GetCounter().GetValue()
	}
	if counts["api/2xx"] != 1 || counts["none/5xx"] != 1 || counts["api/5xx"] != 0 {
		t.Errorf("counters: %v", counts)
	}
	// Histograms appear with their first request.
	d := fams["mosnlite_http_downstream_rq_duration_seconds"]
	if d == nil || len(d.GetMetric()) != 2 {
		t.Fatalf("duration series: %v", d)
	}
	for _, s := range d.GetMetric() {
		if s.GetHistogram().GetSampleCount() != 1 {
			t.Errorf("%v: count %d", labelsOf(s), s.GetHistogram().GetSampleCount())
		}
	}
}

// Answered counts at once; the duration goes in when the request ends.
// An upstream request that was never sent counts without a time.
func TestAnsweredThenObservedAndNotSent(t *testing.T) {
	reg := New()
	m := NewHTTPListenerMetrics(reg, "web", []string{"api"})
	rs := m.Answered("api", 200)
	count := reg.Counter(HTTPRequests, "", "listener", "web", "cluster", "api", "status_class", "2xx")
	if count.Value() != 1 || len(reg.Histograms()) != 0 {
		t.Fatalf("after Answered: count %v, %d histograms", count.Value(), len(reg.Histograms()))
	}
	rs.Observe(40 * time.Millisecond)
	if h := reg.Histogram(HTTPRequestDuration, "", nil, "listener", "web", "cluster", "api", "status_class", "2xx").Snapshot(); h.Count != 1 || h.Sum != 0.04 {
		t.Fatalf("after Observe: %+v", h)
	}
	c := NewClusterMetrics(reg, "api", []string{"10.0.0.1:80"})
	c.NotSent(503)
	c.Response("10.0.0.1:80", 200, time.Millisecond)
	for class, want := range map[string]float64{"2xx": 1, "5xx": 1} {
		if got := reg.Counter(ClusterRequests, "", "cluster", "api", "status_class", class).Value(); got != want {
			t.Errorf("upstream %s: %v, want %v", class, got, want)
		}
	}
	if h := reg.Histogram(ClusterResponseDuration, "", nil, "cluster", "api", "host", "10.0.0.1:80").Snapshot(); h.Count != 1 {
		t.Errorf("upstream time observed %d times, want only the response's", h.Count)
	}
}

func TestHistogramFamilyWinsOverScalarsOfTheSameName(t *testing.T) {
	reg := New()
	reg.Histogram("clash", "", nil).ObserveSeconds(1)
	reg.Counter("clash", "").Inc()
	_, fams := gather(t, reg.Collector())
	f := fams["mosnlite_clash"]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()) != 1 {
		t.Fatalf("clash family: %v", f)
	}
}

func TestHistogramSeriesMergeWhenLabelsCoincide(t *testing.T) {
	reg := New()
	reg.Histogram("m_seconds", "", nil, "a.b", "x").ObserveSeconds(0.001)
	reg.Histogram("m_seconds", "", nil, "a_b", "x").ObserveSeconds(0.002)
	text, fams := gather(t, reg.Collector())
	f := fams["mosnlite_m_seconds"]
	if f == nil || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetHistogram().GetSampleCount() != 2 {
		t.Fatalf("merged histogram: %v\n%s", f, text)
	}
	if !strings.Contains(text, `mosnlite_m_seconds_bucket{a_b="x",le="0.001"} 1`) {
		t.Errorf("bucket lines:\n%s", text)
	}
}
