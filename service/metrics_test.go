package service

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mosnlite/mosnlite/service/stats"
)

func TestMetricsExposition(t *testing.T) {
	reg := stats.New()
	reg.Counter("listener.downstream_cx_total", "Connections accepted.", "listener", "x").Add(7)
	reg.Gauge("listener.downstream_cx_active", "Connections open.", "listener", "x").Set(2)
	h, err := NewMetricsHandler(reg)
	if err != nil {
		t.Fatal(err)
	}
	res, body := do(t, h, "GET", "/metrics")
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	cx := fams["mosnlite_listener_downstream_cx_total"]
	if cx == nil || cx.GetType() != dto.MetricType_COUNTER || len(cx.GetMetric()) != 1 {
		t.Fatalf("cx family: %v", cx)
	}
	m := cx.GetMetric()[0]
	if lp := m.GetLabel(); len(lp) != 1 || lp[0].GetName() != "listener" || lp[0].GetValue() != "x" || m.GetCounter().GetValue() != 7 {
		t.Errorf("cx series: %v", m)
	}
	if a := fams["mosnlite_listener_downstream_cx_active"]; a == nil || a.GetType() != dto.MetricType_GAUGE {
		t.Errorf("active family: %v", a)
	}
	for _, line := range []string{
		"# TYPE mosnlite_listener_downstream_cx_total counter",
		"# HELP mosnlite_listener_downstream_cx_total Connections accepted.",
		"# TYPE mosnlite_listener_downstream_cx_active gauge",
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("exposition lacks %q", line)
		}
	}
	if g := fams["go_goroutines"]; g == nil || g.GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Errorf("go_goroutines missing: %v", g)
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}

	// Values are read at scrape time.
	reg.Counter("listener.downstream_cx_total", "", "listener", "x").Inc()
	_, body = do(t, h, "GET", "/metrics")
	if !strings.Contains(body, "mosnlite_listener_downstream_cx_total{listener=\"x\"} 8\n") {
		t.Errorf("second scrape should read 8")
	}
}

func TestMetricsRouting(t *testing.T) {
	h, err := NewMetricsHandler(stats.New())
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := do(t, h, "GET", "/other"); res.StatusCode != 404 {
		t.Errorf("/other: %d, want 404", res.StatusCode)
	}
	if res, body := do(t, h, "GET", "/"); res.StatusCode != 200 || !strings.Contains(body, "/metrics") {
		t.Errorf("/: %d %q", res.StatusCode, body)
	}
	if _, err := NewMetricsHandler(nil); err == nil {
		t.Error("nil registry should be an error")
	}
}

func TestMetricsOptions(t *testing.T) {
	reg := stats.New()
	reg.Counter("listener.downstream_cx_total", "Connections accepted.", "listener", "x").Add(3)
	h, err := NewMetricsHandlerWith(reg, MetricsOptions{Path: "/stats/prometheus", NoGoCollector: true, NoProcessCollector: true})
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := do(t, h, "GET", "/metrics"); res.StatusCode != 404 {
		t.Errorf("/metrics answered %d with a custom path", res.StatusCode)
	}
	res, body := do(t, h, "GET", "/stats/prometheus")
	if res.StatusCode != 200 || !strings.Contains(body, "mosnlite_listener_downstream_cx_total{listener=\"x\"} 3\n") {
		t.Fatalf("custom path: %d\n%s", res.StatusCode, body)
	}
	for _, gone := range []string{"go_goroutines", "process_open_fds"} {
		if strings.Contains(body, gone) {
			t.Errorf("%s exported though its collector is off", gone)
		}
	}
	if _, body := do(t, h, "GET", "/"); !strings.Contains(body, "/stats/prometheus") {
		t.Errorf("/ does not point at the metrics path: %q", body)
	}
	if _, err := NewMetricsHandlerWith(reg, MetricsOptions{Path: "metrics"}); err == nil {
		t.Error("a path without a leading / was accepted")
	}
}
