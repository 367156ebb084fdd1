package main

import (
	"fmt"
	"io"
	"math"
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

// row is one metric measured on every target.
type row struct {
	metric string
	vals   [numCols]float64
	format func(float64) string
	better string // "higher" or "lower"; "" for rows without a ratio
}

func fmtRate(v float64) string    { return fmt.Sprintf("%.0f", v) }
func fmtMBps(v float64) string    { return fmt.Sprintf("%.1f", v) }
func fmtCount(v float64) string   { return fmt.Sprintf("%.0f", v) }
func fmtLatency(v float64) string { return time.Duration(v).Round(time.Microsecond).String() }

// ratio is mosnlite ÷ nginx, "-" when it has no meaning.
func (r row) ratio() string {
	n := r.vals[colNginx]
	if r.better == "" || n == 0 || math.IsNaN(n) {
		return "-"
	}
	return fmt.Sprintf("%.2f", r.vals[colMosnlite]/n)
}

func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tdirect backend\tmosnlite\tnginx\tmosnlite/nginx\tbetter")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.metric,
			r.format(r.vals[colDirect]), r.format(r.vals[colMosnlite]), r.format(r.vals[colNginx]),
			r.ratio(), r.better)
	}
	return tw.Flush()
}

// resultRows turns per-target results into the table's rows.
func resultRows(h [numCols]httpResult, t [numCols]tcpResult) []row {
	var rps, p50, p99, herr, mbps, terr row
	rps = row{metric: "HTTP keep-alive req/s", format: fmtRate, better: "higher"}
	p50 = row{metric: "HTTP p50 latency", format: fmtLatency, better: "lower"}
	p99 = row{metric: "HTTP p99 latency", format: fmtLatency, better: "lower"}
	herr = row{metric: "HTTP errors", format: fmtCount}
	mbps = row{metric: "TCP throughput MB/s", format: fmtMBps, better: "higher"}
	terr = row{metric: "TCP errors", format: fmtCount}
	for i := range numCols {
		rps.vals[i] = h[i].ReqPerSec
		p50.vals[i] = float64(h[i].P50)
		p99.vals[i] = float64(h[i].P99)
		herr.vals[i] = float64(h[i].Errors)
		mbps.vals[i] = t[i].MBps
		terr.vals[i] = float64(t[i].Errors)
	}
	return []row{rps, p50, p99, herr, mbps, terr}
}
