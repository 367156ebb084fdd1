package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"
	"time"
)

// Columns of the result table, in order.
const (
	colDirect = iota
	colMosnlite
	colNginx
	numCols
)

// row is one metric measured on every target; NaN where a target has none
// (the backend's own CPU and memory are not measured).
type row struct {
	metric string
	vals   [numCols]float64
	format func(float64) string
	better string // "higher" or "lower"; "" for rows without a ratio
}

func fmtRate(v float64) string    { return fmt.Sprintf("%.0f", v) }
func fmtMBps(v float64) string    { return fmt.Sprintf("%.1f", v) }
func fmtCount(v float64) string   { return fmt.Sprintf("%.0f", v) }
func fmtMB(v float64) string      { return fmt.Sprintf("%.1f", v/(1<<20)) }
func fmtLatency(v float64) string { return time.Duration(v).Round(time.Microsecond).String() }
func fmtMicros(v float64) string  { return fmt.Sprintf("%.1f", v/1e3) }

// ratio is mosnlite ÷ nginx, "-" when it has no meaning.
func (r row) ratio() string {
	n, m := r.vals[colNginx], r.vals[colMosnlite]
	if r.better == "" || n == 0 || math.IsNaN(n) || math.IsNaN(m) {
		return "-"
	}
	return fmt.Sprintf("%.2f", m/n)
}

func (r row) cell(i int) string {
	if math.IsNaN(r.vals[i]) {
		return "-"
	}
	return r.format(r.vals[i])
}

func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tdirect backend\tmosnlite\tnginx\tmosnlite/nginx\tbetter")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.metric,
			r.cell(colDirect), r.cell(colMosnlite), r.cell(colNginx), r.ratio(), r.better)
	}
	return tw.Flush()
}

// resultRows turns one run's per-target results into the table's rows.
func resultRows(res [numCols]result, o options) []row {
	rows := []row{
		{metric: "HTTP keep-alive req/s", format: fmtRate, better: "higher"},
		{metric: "HTTP keep-alive p50 latency", format: fmtLatency, better: "lower"},
		{metric: "HTTP keep-alive p99 latency", format: fmtLatency, better: "lower"},
		{metric: "  proxy CPU µs per request in it", format: fmtMicros, better: "lower"},
		{metric: "  backend CPU µs per request in it", format: fmtMicros},
		{metric: "HTTP conn-per-request req/s", format: fmtRate, better: "higher"},
		{metric: "HTTPS keep-alive req/s", format: fmtRate, better: "higher"},
		{metric: "HTTPS keep-alive p99 latency", format: fmtLatency, better: "lower"},
		{metric: "HTTPS full handshakes/s (conn per request)", format: fmtRate, better: "higher"},
		{metric: "HTTPS errors", format: fmtCount},
		{metric: fmt.Sprintf("CPU µs per request at %.0f req/s", o.rate), format: fmtMicros, better: "lower"},
		{metric: "  req/s answered in that test", format: fmtRate},
		{metric: "  p50 latency in that test", format: fmtLatency, better: "lower"},
		{metric: "  p99 latency in that test", format: fmtLatency, better: "lower"},
		{metric: fmt.Sprintf("RSS bytes per idle conn (%d idle)", o.idleConns), format: fmtCount, better: "lower"},
		{metric: "  RSS MB before them", format: fmtMB},
		{metric: "  RSS MB with them", format: fmtMB},
		{metric: "  RSS MB after they closed", format: fmtMB, better: "lower"},
		{metric: "HTTP errors", format: fmtCount},
		{metric: "h2c req/s", format: fmtRate, better: "higher"},
		{metric: "h2c p99 latency", format: fmtLatency, better: "lower"},
		{metric: "gRPC unary calls/s", format: fmtRate, better: "higher"},
		{metric: "gRPC unary p99 latency", format: fmtLatency, better: "lower"},
		{metric: "h2c and gRPC errors", format: fmtCount},
		{metric: "TCP throughput MB/s", format: fmtMBps, better: "higher"},
		{metric: "TCP errors", format: fmtCount},
	}
	// The step each row comes from, for -only.
	from := []string{"keepalive", "keepalive", "keepalive", "keepalive", "keepalive", "connclose", "tlskeepalive", "tlskeepalive", "handshakes", "",
		"cpu", "cpu", "cpu", "cpu", "idle", "idle", "idle", "idle", "", "h2c", "h2c", "grpc", "grpc", "", "tcp", "tcp"}
	for i, r := range res {
		proxy := i != colDirect
		cells := []float64{
			r.keepAlive.ReqPerSec,
			float64(r.keepAlive.P50),
			float64(r.keepAlive.P99),
			proxyOnly(proxy && r.keepAlive.ProxyCPU > 0, float64(r.keepAlive.perRequest(r.keepAlive.ProxyCPU))),
			proxyOnly(r.keepAlive.BackendCPU > 0, float64(r.keepAlive.perRequest(r.keepAlive.BackendCPU))),
			r.connClose.ReqPerSec,
			proxyOnly(proxy, r.tlsKeepAlive.ReqPerSec),
			proxyOnly(proxy, float64(r.tlsKeepAlive.P99)),
			proxyOnly(proxy, r.handshakes.ReqPerSec),
			proxyOnly(proxy, float64(r.tlsKeepAlive.Errors+r.handshakes.Errors)),
			proxyOnly(proxy, float64(r.cpu.PerRequest)),
			proxyOnly(proxy, r.cpu.Achieved),
			proxyOnly(proxy, float64(r.cpu.P50)),
			proxyOnly(proxy, float64(r.cpu.P99)),
			proxyOnly(proxy, r.idle.PerConn),
			proxyOnly(proxy, float64(r.idle.Start)),
			proxyOnly(proxy, float64(r.idle.Idle)),
			proxyOnly(proxy, float64(r.idle.After)),
			float64(r.keepAlive.Errors + r.connClose.Errors),
			r.h2c.ReqPerSec,
			float64(r.h2c.P99),
			r.grpc.ReqPerSec,
			float64(r.grpc.P99),
			float64(r.h2c.Errors + r.grpc.Errors),
			r.tcp.MBps,
			float64(r.tcp.Errors),
		}
		for j, v := range cells {
			if from[j] != "" && !o.measures(from[j]) {
				v = math.NaN()
			}
			rows[j].vals[i] = v
		}
	}
	return rows
}

func proxyOnly(proxy bool, v float64) float64 {
	if !proxy {
		return math.NaN()
	}
	return v
}

// medianRows is the table of each cell's median over the runs' tables,
// which all have the same rows.
func medianRows(tables [][]row) []row {
	out := append([]row(nil), tables[0]...)
	for j := range out {
		for i := range numCols {
			vs := make([]float64, 0, len(tables))
			for _, t := range tables {
				vs = append(vs, t[j].vals[i])
			}
			out[j].vals[i] = median(vs)
		}
	}
	return out
}

// median of vs (the mean of the middle two for an even count); NaN if any is NaN.
func median(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	for _, v := range s {
		if math.IsNaN(v) {
			return math.NaN()
		}
	}
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
