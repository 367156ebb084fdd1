package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// row is one listener count's line of the table.
type row struct {
	listeners                    int
	runs                         int
	ackMed                       time.Duration
	readyMed, readyP90, readyMax time.Duration
	inProcMed                    time.Duration
	exitMed                      time.Duration
	fdsMin, fdsMax               int
}

func summarize(n int, ss []sample) row {
	ready := pick(ss, func(s sample) time.Duration { return s.startToReady })
	fds := make([]int, len(ss))
	for i, s := range ss {
		fds[i] = s.fds
	}
	r := row{
		listeners: n,
		runs:      len(ss),
		ackMed:    median(pick(ss, func(s sample) time.Duration { return s.startToAck })),
		readyMed:  median(ready),
		readyP90:  percentile(ready, 90),
		readyMax:  percentile(ready, 100),
		inProcMed: median(pick(ss, func(s sample) time.Duration { return s.inProcess })),
		exitMed:   median(pick(ss, func(s sample) time.Duration { return s.ackToExit })),
	}
	if len(fds) > 0 {
		r.fdsMin, r.fdsMax = slices.Min(fds), slices.Max(fds)
	}
	return r
}

// fmtMs writes d in milliseconds.
func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "listeners\truns\tstart→ack\tstart→ready\tp90 / max\tin-process handoff\tack→old exit\tfds passed\t")
	for _, r := range rows {
		fds := fmt.Sprint(r.fdsMin)
		if r.fdsMax != r.fdsMin {
			fds = fmt.Sprintf("%d-%d", r.fdsMin, r.fdsMax)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s / %s\t%s\t%s\t%s\t\n", r.listeners, r.runs,
			fmtMs(r.ackMed), fmtMs(r.readyMed), fmtMs(r.readyP90), fmtMs(r.readyMax),
			fmtMs(r.inProcMed), fmtMs(r.exitMed), fds)
	}
	return tw.Flush()
}
