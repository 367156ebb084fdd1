package proxy

import (
	"fmt"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/service/stats"
)

// What an HTTP request records in the metrics, and when:
//
//   - the downstream request: counted by cluster and status class when its
//     answer's head goes out (answered), timed from its first byte to the
//     last byte of the answer when it ends (observeRequest); the listener's
//     active-request gauge covers the same span;
//   - the upstream request, in the cluster's series: in flight from the
//     first attempt to send it until the upstream's answer is read whole or
//     the exchange with it failed; at the request's end counted by the
//     status class the client got, and timed for the host it was last sent
//     to, from that send to the end of the upstream's answer (or the
//     failure). One that was never sent (no healthy host, no host
//     connected) is counted without a time; one whose client went away
//     before any answer is not counted, as downstream. A 504 for a response
//     head that did not come in time counts a timeout too.
//
// Connect times and open upstream connections are the cluster's (see
// cluster.Conn).

// WithHTTPMetrics records the proxy's requests in m, built by the caller
// with the clusters RouteClusters lists; without it the proxy registers its
// own series.
func WithHTTPMetrics(m *stats.HTTPListenerMetrics) HTTPOption {
	return func(p *httpProxy) { p.metrics = m }
}

// RouteClusters lists the clusters router's routes lead to, sorted, each
// once: the cluster labels of an HTTP listener's series.
func RouteClusters(router *config.Router) ([]string, error) {
	routes, err := compileRoutes(router, nil)
	if err != nil {
		return nil, fmt.Errorf("proxy: router: %w", err)
	}
	return routes.clusters(), nil
}

// answered counts x's request as answered with status by clusterLabel.
func (p *httpProxy) answered(x *exchange, clusterLabel string, status int) {
	x.series = p.metrics.Answered(clusterLabel, status)
}

// toUpstream marks x's request as one for cluster cl (inFlight: about to be
// sent, counted in flight until upstreamDone).
func (x *exchange) toUpstream(cl *cluster.Cluster, inFlight bool) {
	x.upCl = cl
	if inFlight && !x.upActive {
		x.upActive = true
		cl.Metrics().ActiveRequests().Inc()
	}
}

// upstreamSent records an attempt to send x's request to host, now.
func (x *exchange) upstreamSent(host *cluster.Host, now time.Time) {
	x.upHost, x.upSent, x.upEnd = host, now, time.Time{}
}

// upstreamEnded records the end of the last attempt: the answer read
// whole, or the exchange with the upstream failed.
func (x *exchange) upstreamEnded() {
	if !x.upSent.IsZero() && x.upEnd.IsZero() {
		x.upEnd = x.reading()
	}
}

// upstreamDone ends the upstream request: not in flight any more.
func (x *exchange) upstreamDone() {
	x.upstreamEnded()
	if x.upActive {
		x.upActive = false
		x.upCl.Metrics().ActiveRequests().Dec()
	}
}

// observeRequest records x's request, which has ended, in the metrics.
func (p *httpProxy) observeRequest(x *exchange) {
	p.metrics.Active().Dec()
	if x.series != nil {
		x.series.Observe(x.info.Duration)
	}
	if x.upCl == nil {
		return
	}
	x.upstreamDone()
	status := x.info.Status
	if status == 0 {
		return // the client went away before any answer
	}
	m := x.upCl.Metrics()
	if x.upHost != nil {
		m.Response(x.upHost.Address(), status, x.upEnd.Sub(x.upSent))
	} else {
		m.NotSent(status)
	}
	if x.info.Flags&FlagUpstreamTimeout != 0 {
		m.Timeout()
	}
}
