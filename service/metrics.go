package service

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mosnlite/mosnlite/service/stats"
)

// MetricsOptions shape the metrics service (MOSN's prometheus sink
// settings). The zero value serves /metrics with every collector.
type MetricsOptions struct {
	// Path is where the exposition is served; empty means /metrics.
	Path string
	// NoGoCollector and NoProcessCollector leave out the Go runtime and the
	// process metrics (MOSN's disable_collect_go and disable_collect_process).
	NoGoCollector, NoProcessCollector bool
}

// NewMetricsHandler serves /metrics in the Prometheus exposition format from
// a private Prometheus registry: Go runtime and process metrics plus every
// series of reg, named as reg's Exposition says. The format follows the
// scraper's Accept header: the text format by default, OpenMetrics for
// application/openmetrics-text, protobuf (the one that carries native
// histograms) for application/vnd.google.protobuf. A collection error leaves
// out the failing metric and serves the rest; nothing is logged. "/" answers
// with a pointer to /metrics.
func NewMetricsHandler(reg *stats.Registry) (http.Handler, error) {
	return NewMetricsHandlerWith(reg, MetricsOptions{})
}

// NewMetricsHandlerWith is NewMetricsHandler with options.
func NewMetricsHandlerWith(reg *stats.Registry, o MetricsOptions) (http.Handler, error) {
	if reg == nil {
		return nil, fmt.Errorf("service: metrics: nil stats registry")
	}
	path := o.Path
	if path == "" {
		path = "/metrics"
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("service: metrics: path %q does not start with /", path)
	}
	type collector struct {
		name string
		c    prometheus.Collector
	}
	cs := []collector{{"mosnlite", reg.Collector()}}
	if !o.NoGoCollector {
		cs = append(cs, collector{"go", collectors.NewGoCollector()})
	}
	if !o.NoProcessCollector {
		cs = append(cs, collector{"process", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})})
	}
	preg := prometheus.NewRegistry()
	for _, c := range cs {
		if err := preg.Register(c.c); err != nil {
			return nil, fmt.Errorf("service: metrics: register %s collector: %w", c.name, err)
		}
	}
	mux := http.NewServeMux()
	// promhttp_metric_handler_errors_total counts failed scrapes.
	mux.Handle("GET "+path, exposition(preg, preg))
	if path != "/" {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("metrics are at " + path + "\n"))
		})
	}
	return mux, nil
}

// exposition serves what g gathers in the format the scraper asks for:
// OpenMetrics when its Accept header prefers it, else the Prometheus text
// (or protobuf) format. Failed scrapes are counted in reg if not nil.
func exposition(g prometheus.Gatherer, reg prometheus.Registerer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          reg,
		EnableOpenMetrics: true,
	})
}
