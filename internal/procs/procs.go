// Package procs fits the number of processors that run Go code at once
// (GOMAXPROCS) to the load, between one and every CPU the process may use.
//
// Go's scheduler pays for each processor beyond the first when the load is
// light: a goroutine the network poller makes ready while another runs
// wakes a second thread (a futex wake), which soon finds nothing to do and
// sleeps again (a futex wait and a context switch). At a moderate request
// rate that costs a proxy more CPU per request than the request itself
// takes in user space; one processor serves the same load with fewer
// wake-ups. Under a heavy load every CPU is needed. The Governor samples
// the process's CPU time and the runtime's scheduling latencies and moves
// between the two: up as soon as the processors it has are nearly all
// busy, or goroutines wait long to run on them, down only after a load
// that would fit in fewer has lasted a while.
package procs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// The governor's rules. The thresholds leave a gap between them, so that a
// steady load does not move it back and forth: a load that keeps one
// processor upBusy busy takes, on two, more than downBusy of one (the
// second processor's wake-ups cost CPU).
const (
	// DefaultInterval is how often the load is sampled.
	DefaultInterval = 50 * time.Millisecond
	// upBusy: the share of the processors' time in use above which the
	// governor doubles them, once upSamples samples in a row were above it.
	upBusy    = 0.75
	upSamples = 2
	// A processor can also be short when other processes keep its thread
	// off the CPU: then goroutines wait long to run (the runtime's
	// scheduling latencies) while the CPU time used stays low. More than
	// upSlowShare of the waits sampled lasting slowWait or longer, with at
	// least minWaits of them and more than minQueuedCPUs CPUs in use (of
	// any number of processors: a nearly idle process has nothing to queue),
	// counts as above upBusy, and keeps any processor from being taken away.
	slowWait      = 200 * time.Microsecond
	upSlowShare   = 0.5
	minWaits      = 10
	minQueuedCPUs = 0.25
	// The threads are starved when, with more than minQueuedCPUs CPUs in
	// use, they waited in the kernel's run queue for
	// a CPU longer than they ran on one. Then the CPU time used says
	// nothing of the load: it is what the other processes leave. The
	// governor adds a processor as for long waits to run, and takes none
	// away while it lasts.
	starvedShare = 1.0
	// downBusy: the share of one processor fewer below which the governor
	// takes one away, once the samples below it in a row cover downAfter
	// (a second at first).
	downBusy  = 0.65
	downAfter = time.Second
	// An up within flapWindow of a down doubles the time a down must wait,
	// up to maxDownAfter; a level held for calmAfter (longer than the
	// longest wait) resets it.
	flapWindow   = time.Second
	maxDownAfter = time.Minute
	calmAfter    = 2 * time.Minute
)

// Reading is a sample of the process's load, its counts since the process
// started.
type Reading struct {
	CPU   time.Duration // CPU time used, user and system
	Waits uint64        // goroutine waits to run that the runtime sampled
	Slow  uint64        // of them, those of slowWait or longer
}

// Options configure a Governor. Read, Set and Tick are the process's side
// effects, passed in so that the rules can be tested on fakes.
type Options struct {
	// Max is the most processors: Go's default (every CPU the process may
	// use, its CPU quota included). At least 1.
	Max int
	// Interval is the sampling period; DefaultInterval if zero.
	Interval time.Duration
	// Read samples the load (a Sampler's Read).
	Read func() (Reading, error)
	// RunQueue returns the time the process's threads have run on a CPU
	// and waited in the kernel's run queue for one, so far (a Sampler's
	// RunQueue). Nil: the starved rule is off.
	RunQueue func() (run, wait time.Duration, err error)
	// Set sets the number of processors (runtime.GOMAXPROCS).
	Set func(n int)
	// Tick starts a ticker of period d; stop stops it.
	Tick func(d time.Duration) (c <-chan time.Time, stop func())
	Log  *logrus.Entry
}

// Governor moves GOMAXPROCS between 1 and Max by the process's load. Its
// state is touched by Run's goroutine only.
type Governor struct {
	o         Options
	procs     int
	last      Reading
	lastAt    time.Time
	hot       int           // samples in a row above the up rule
	coldFor   time.Duration // time in a row below the down rule
	downAfter time.Duration // how long a down waits now
	lastDown  time.Time
	changedAt time.Time
	lastUsed  float64 // CPUs in use in the last sample, for the log
	// The last RunQueue reading; starved compares with it.
	rqRun, rqWait time.Duration
	rqOK          bool
	rqFailed      bool // logged once
}

// New returns a Governor that starts at Max processors (a successor in an
// upgrade takes its predecessor's load at once).
func New(o Options) (*Governor, error) {
	if o.Max < 1 {
		return nil, fmt.Errorf("procs: max %d processors: at least 1", o.Max)
	}
	if o.Read == nil || o.Set == nil || o.Tick == nil || o.Log == nil {
		return nil, fmt.Errorf("procs: Read, Set, Tick and Log are all needed")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	return &Governor{o: o, procs: o.Max, downAfter: downAfter}, nil
}

// Procs is the number of processors the governor last set.
func (g *Governor) Procs() int { return g.procs }

// Run samples every Interval until ctx ends. It sets Max processors first.
// With Max 1 there is nothing to govern and it returns at once.
func (g *Governor) Run(ctx context.Context) {
	g.o.Set(g.procs)
	if g.o.Max == 1 {
		return
	}
	c, stop := g.o.Tick(g.o.Interval)
	defer stop()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case at := <-c:
			r, err := g.o.Read()
			if err != nil {
				if !failed { // once: the same error would come every tick
					g.o.Log.WithError(err).Warn("processor governor: cannot sample the load; the processors stay as they are")
					failed = true
				}
				g.lastAt = time.Time{}
				continue
			}
			failed = false
			if n, changed := g.observe(at, r); changed {
				g.o.Set(n)
				g.o.Log.WithFields(logrus.Fields{"procs": n, "cpus_used": fmt.Sprintf("%.2f", g.lastUsed)}).Debug("processor governor: GOMAXPROCS changed")
			}
		}
	}
}

// observe takes one sample and returns the processors to have, and whether
// that is a change.
func (g *Governor) observe(at time.Time, r Reading) (int, bool) {
	prev, prevAt := g.last, g.lastAt
	g.last, g.lastAt = r, at
	wall := at.Sub(prevAt)
	if prevAt.IsZero() || wall <= 0 || r.CPU < prev.CPU || r.Waits < prev.Waits || r.Slow < prev.Slow {
		return g.procs, false // a first sample, or a new baseline
	}
	used := float64(r.CPU-prev.CPU) / float64(wall) / float64(g.procs) // share of the processors' time
	g.lastUsed = used * float64(g.procs)
	waits, slow := r.Waits-prev.Waits, r.Slow-prev.Slow
	queued := used*float64(g.procs) > minQueuedCPUs && (waits >= minWaits && float64(slow) > upSlowShare*float64(waits) || g.starved())
	if g.downAfter > downAfter && at.Sub(g.changedAt) >= calmAfter {
		g.downAfter = downAfter
	}
	switch {
	case g.procs < g.o.Max && (used > upBusy || queued):
		g.coldFor = 0
		if g.hot++; g.hot < upSamples {
			return g.procs, false
		}
		g.hot = 0
		if !g.lastDown.IsZero() && at.Sub(g.lastDown) < flapWindow {
			g.downAfter = min(2*g.downAfter, maxDownAfter)
		}
		g.changedAt = at
		g.procs = min(g.o.Max, 2*g.procs)
		return g.procs, true
	case g.procs > 1 && !queued && used*float64(g.procs) < downBusy*float64(g.procs-1):
		g.hot = 0
		if g.coldFor += wall; g.coldFor < g.downAfter {
			return g.procs, false
		}
		g.coldFor = 0
		g.lastDown, g.changedAt = at, at
		g.procs--
		return g.procs, true
	}
	g.hot, g.coldFor = 0, 0
	return g.procs, false
}

// starved reports whether the threads waited for a CPU longer than they
// ran on one since the last time it was asked (the first time, since they
// started).
func (g *Governor) starved() bool {
	if g.o.RunQueue == nil {
		return false
	}
	run, wait, err := g.o.RunQueue()
	if err != nil {
		if !g.rqFailed {
			g.o.Log.WithError(err).Warn("processor governor: cannot read the threads' run-queue times; other processes' load is not taken into account")
			g.rqFailed = true
		}
		g.rqOK = false
		return false
	}
	prevRun, prevWait, ok := g.rqRun, g.rqWait, g.rqOK
	g.rqRun, g.rqWait, g.rqOK = run, wait, true
	if !ok || run < prevRun || wait < prevWait || run == prevRun {
		return false // a first reading, or a thread gone
	}
	return float64(wait-prevWait) > starvedShare*float64(run-prevRun)
}

// Sampler reads the load of the calling process: its CPU time
// (getrusage), the runtime's scheduling latencies (runtime/metrics) and
// its threads' run-queue times (/proc/self/task/*/schedstat).
// Its buffers are reused from one Read to the next; one goroutine at a time.
type Sampler struct {
	s     []metrics.Sample
	names []string
	buf   [128]byte
}

// NewSampler returns a Sampler.
func NewSampler() *Sampler {
	return &Sampler{s: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
}

// Read takes a Reading.
func (s *Sampler) Read() (Reading, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return Reading{}, fmt.Errorf("getrusage: %w", err)
	}
	r := Reading{CPU: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	metrics.Read(s.s)
	if s.s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return Reading{}, fmt.Errorf("runtime/metrics: %s is not a histogram", s.s[0].Name)
	}
	r.Waits, r.Slow = countWaits(s.s[0].Value.Float64Histogram(), slowWait.Seconds())
	return r, nil
}

// RunQueue returns the time the calling process's threads have spent
// running on a CPU and waiting in the kernel's run queue for one (the first
// two fields of /proc/self/task/*/schedstat), so far. A thread that has
// ended no longer counts.
func (s *Sampler) RunQueue() (run, wait time.Duration, err error) {
	dir, err := os.Open("/proc/self/task")
	if err != nil {
		return 0, 0, fmt.Errorf("threads: %w", err)
	}
	s.names, err = dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("threads: %w", err)
	}
	for _, tid := range s.names {
		path := "/proc/self/task/" + tid + "/schedstat"
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // it ended meanwhile
		}
		if err != nil {
			return 0, 0, err
		}
		n, err := f.Read(s.buf[:])
		f.Close()
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", path, err)
		}
		r, w, err := parseSchedstat(s.buf[:n], path)
		if err != nil {
			return 0, 0, err
		}
		run, wait = run+r, wait+w
	}
	return run, wait, nil
}

// parseSchedstat reads the first two numbers of a schedstat line: time on
// a CPU and time waiting for one, in nanoseconds.
func parseSchedstat(b []byte, path string) (run, wait time.Duration, err error) {
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("%s: %q: want at least two numbers", path, b)
	}
	r, err1 := strconv.ParseInt(f[0], 10, 64)
	w, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil || r < 0 || w < 0 {
		return 0, 0, fmt.Errorf("%s: %q: want two counts of nanoseconds", path, b)
	}
	return time.Duration(r), time.Duration(w), nil
}

// countWaits returns the observations of h, and those in buckets that
// start at slow or later.
func countWaits(h *metrics.Float64Histogram, slow float64) (all, over uint64) {
	for i, n := range h.Counts {
		all += n
		if h.Buckets[i] >= slow {
			over += n
		}
	}
	return all, over
}

// Ticker is a time.Ticker as an Options.Tick.
func Ticker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}
