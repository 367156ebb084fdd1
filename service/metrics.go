package service

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mosnlite/mosnlite/service/stats"
)

// NewMetricsHandler serves /metrics in the Prometheus exposition format from
// a private Prometheus registry: Go runtime and process metrics plus every
// series of reg. A collection error leaves out the failing metric and serves
// the rest; nothing is logged. "/" answers with a pointer to /metrics.
func NewMetricsHandler(reg *stats.Registry) (http.Handler, error) {
	if reg == nil {
		return nil, fmt.Errorf("service: metrics: nil stats registry")
	}
	preg := prometheus.NewRegistry()
	for _, c := range []struct {
		name string
		c    prometheus.Collector
	}{
		{"go", collectors.NewGoCollector()},
		{"process", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
		{"mosnlite", reg.Collector()},
	} {
		if err := preg.Register(c.c); err != nil {
			return nil, fmt.Errorf("service: metrics: register %s collector: %w", c.name, err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(preg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		// Counts failed scrapes as promhttp_metric_handler_errors_total.
		Registry: preg,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("metrics are at /metrics\n"))
	})
	return mux, nil
}
