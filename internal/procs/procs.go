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
// the process's CPU time, the runtime's scheduling latencies and its
// threads' run-queue times, and moves between the two: up as soon as the
// processors it has are nearly all busy, or goroutines queue for them,
// down only after a load that would fit in fewer has lasted a while.
package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/metrics"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// The governor's rules. The thresholds leave a gap between them, so that a
// steady load does not move it back and forth: a load that keeps one
// processor upBusy busy takes, on two, more than downBusy of one (the
// second processor's wake-ups cost CPU).
const (
	// DefaultInterval is how often the load is sampled while the process
	// works; DefaultIdleInterval while it idles on one processor (an idle
	// process wakes 10 times a second, not 20).
	DefaultInterval     = 50 * time.Millisecond
	DefaultIdleInterval = 100 * time.Millisecond
	// idleCPUs: a process using less is idle.
	idleCPUs = 0.1
	// upBusy: the share of the processors' time in use above which the
	// governor doubles them, once the samples above it in a row cover
	// upAfter.
	upBusy  = 0.75
	upAfter = 100 * time.Millisecond
	// A processor can also be short when other processes keep its thread
	// off the CPU: then goroutines wait long to run while the CPU time
	// used stays low, for it is what the others leave. With more than
	// minQueuedCPUs CPUs in use (a nearly idle process has nothing to
	// queue), goroutines queue when more than upSlowShare of the waits to
	// run that the runtime sampled (at least minWaits of them) lasted
	// slowWait or longer, or when the threads waited in the kernel's run
	// queue for a CPU starvedRatio times as long as they ran on one, and
	// the process's cgroup was not throttled meanwhile (under a CPU quota a
	// second thread gets no more CPU). On a machine two-thirds busy with
	// bursty wake-ups the threads wait about as long as they run; on a
	// crowded one, three times as long. That counts as above upBusy, and keeps any
	// processor from being taken away.
	minQueuedCPUs = 0.25
	slowWait      = 200 * time.Microsecond
	upSlowShare   = 0.5
	minWaits      = 10
	starvedRatio  = 2.5
	// downBusy: the share of one processor fewer below which the governor
	// takes one away: the CPUs in use on average over downAfter (a second
	// at first) of samples in a row with nothing queued and nothing over
	// the up rule.
	downBusy  = 0.65
	downAfter = time.Second
	// An up within flapWindow of a down doubles the time a down must wait,
	// up to maxDownAfter; a level held for calmAfter (longer than the
	// longest wait) resets it.
	flapWindow   = time.Second
	maxDownAfter = time.Minute
	calmAfter    = 2 * time.Minute
)

// Reading is a sample of the process's load: when it was taken, and its
// counts since the process started.
type Reading struct {
	At    time.Time     // when (monotonic)
	CPU   time.Duration // CPU time used, user and system
	Waits uint64        // goroutine waits to run that the runtime sampled
	Slow  uint64        // of them, those in buckets from slowWait up
}

// RunQueue is what the process's threads did so far: time on a CPU, time
// waiting in the kernel's run queue for one, and how many times its cgroup
// was throttled by a CPU quota (0 without one).
type RunQueue struct {
	Run, Wait time.Duration
	Throttled uint64
}

// Options configure a Governor. Read, RunQueue, Set and After are the
// process's side effects, passed in so that the rules can be tested on
// fakes.
type Options struct {
	// Max is the most processors: Go's default (every CPU the process may
	// use, its CPU quota included). At least 1.
	Max int
	// Interval and IdleInterval are the sampling periods;
	// DefaultInterval and DefaultIdleInterval if zero.
	Interval, IdleInterval time.Duration
	// Read samples the load (a Sampler's Read).
	Read func() (Reading, error)
	// RunQueue reads the threads' run-queue times (a Sampler's RunQueue),
	// on busy samples only. Nil: that rule is off.
	RunQueue func() (RunQueue, error)
	// Set sets the number of processors (runtime.GOMAXPROCS).
	Set func(n int)
	// After is time.After.
	After func(d time.Duration) <-chan time.Time
	Log   *logrus.Entry
}

// Governor moves GOMAXPROCS between 1 and Max by the process's load. Its
// state is touched by Run's goroutine only.
type Governor struct {
	o     Options
	procs int
	last  Reading
	// hot and cold are the readings at which the samples in a row above
	// the up rule, and those with nothing queued or over it, began (zero:
	// none).
	hot, cold Reading
	downAfter time.Duration // how long a down waits now
	lastDown  time.Time
	changedAt time.Time
	lastCPUs  float64 // CPUs in use in the last sample
	// The last RunQueue reading, of the sample before if it was busy.
	rq       RunQueue
	rqOK     bool
	rqFailed bool // logged once
}

// New returns a Governor that starts at Max processors (a successor in an
// upgrade takes its predecessor's load at once).
func New(o Options) (*Governor, error) {
	if o.Max < 1 {
		return nil, fmt.Errorf("procs: max %d processors: at least 1", o.Max)
	}
	if o.Read == nil || o.Set == nil || o.After == nil || o.Log == nil {
		return nil, fmt.Errorf("procs: Read, Set, After and Log are all needed")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.IdleInterval <= 0 {
		o.IdleInterval = DefaultIdleInterval
	}
	return &Governor{o: o, procs: o.Max, downAfter: downAfter}, nil
}

// Run samples the load until ctx ends, and sets the processors when the
// rules change them (not before: the runtime follows a change of the CPU
// quota until GOMAXPROCS is first set). With Max 1 there is nothing to
// govern and it returns at once.
func (g *Governor) Run(ctx context.Context) {
	if g.o.Max == 1 {
		return
	}
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.o.After(g.interval()):
			r, err := g.o.Read()
			if err != nil {
				if !failed { // once: the same error would come every time
					g.o.Log.WithError(err).Warn("processor governor: cannot sample the load; the processors stay as they are")
					failed = true
				}
				g.last = Reading{}
				continue
			}
			failed = false
			if n, changed := g.observe(r); changed {
				g.o.Set(n)
				g.o.Log.WithFields(logrus.Fields{"procs": n, "cpus_used": fmt.Sprintf("%.2f", g.lastCPUs)}).Debug("processor governor: GOMAXPROCS changed")
			}
		}
	}
}

// interval is the wait before the next sample.
func (g *Governor) interval() time.Duration {
	if g.procs == 1 && g.lastCPUs < idleCPUs {
		return g.o.IdleInterval
	}
	return g.o.Interval
}

// observe takes one sample and returns the processors to have, and whether
// that is a change.
func (g *Governor) observe(r Reading) (int, bool) {
	prev := g.last
	g.last = r
	wall := r.At.Sub(prev.At)
	if prev.At.IsZero() || wall <= 0 || r.CPU < prev.CPU || r.Waits < prev.Waits || r.Slow < prev.Slow {
		g.rqOK, g.hot, g.cold = false, Reading{}, Reading{}
		return g.procs, false // a first sample, or a new baseline: new windows
	}
	cpus := float64(r.CPU-prev.CPU) / float64(wall)
	g.lastCPUs = cpus
	used := cpus / float64(g.procs) // share of the processors' time
	queued := false
	if cpus > minQueuedCPUs {
		waits, slow := r.Waits-prev.Waits, r.Slow-prev.Slow
		starved := g.starved() // read on every busy sample, so that its window is the sample's
		queued = waits >= minWaits && float64(slow) > upSlowShare*float64(waits) || starved
	} else {
		g.rqOK = false // the next busy sample starts a new window
	}
	if g.downAfter > downAfter && r.At.Sub(g.changedAt) >= calmAfter {
		g.downAfter = downAfter
	}
	switch {
	case g.procs < g.o.Max && (used > upBusy || queued):
		g.cold = Reading{}
		if g.hot.At.IsZero() {
			g.hot = prev
		}
		if r.At.Sub(g.hot.At) < upAfter {
			return g.procs, false
		}
		g.hot = Reading{}
		if !g.lastDown.IsZero() && r.At.Sub(g.lastDown) < flapWindow {
			g.downAfter = min(2*g.downAfter, maxDownAfter)
		}
		g.changedAt = r.At
		g.procs = min(g.o.Max, 2*g.procs)
		return g.procs, true
	case g.procs > 1 && !queued:
		g.hot = Reading{}
		if g.cold.At.IsZero() {
			g.cold = prev
		}
		span := r.At.Sub(g.cold.At)
		if span < g.downAfter {
			return g.procs, false
		}
		avg := float64(r.CPU-g.cold.CPU) / float64(span) // CPUs in use over it
		g.cold = Reading{}
		if avg >= downBusy*float64(g.procs-1) {
			return g.procs, false
		}
		g.lastDown, g.changedAt = r.At, r.At
		g.procs--
		return g.procs, true
	}
	g.hot, g.cold = Reading{}, Reading{}
	return g.procs, false
}

// starved reports whether the threads waited for a CPU starvedRatio times
// as long as they ran on one since the last busy sample, with no
// throttling by a CPU quota meanwhile.
func (g *Governor) starved() bool {
	if g.o.RunQueue == nil {
		return false
	}
	rq, err := g.o.RunQueue()
	if err != nil {
		if !g.rqFailed {
			g.o.Log.WithError(err).Warn("processor governor: cannot read the threads' run-queue times; other processes' load is not taken into account")
			g.rqFailed = true
		}
		g.rqOK = false
		return false
	}
	prev, ok := g.rq, g.rqOK
	g.rq, g.rqOK = rq, true
	if !ok || rq.Run <= prev.Run || rq.Wait < prev.Wait || rq.Throttled != prev.Throttled {
		return false // a first reading, a thread gone, or throttled
	}
	return float64(rq.Wait-prev.Wait) > starvedRatio*float64(rq.Run-prev.Run)
}

// Sampler reads the load of the calling process: its CPU time
// (getrusage), the runtime's scheduling latencies (runtime/metrics), its
// threads' run-queue times (/proc/self/task/*/schedstat) and its cgroup's
// throttling (cpu.stat). Its buffers are reused from one read to the next;
// one goroutine at a time.
type Sampler struct {
	s     []metrics.Sample
	paths []string // of the threads' schedstat files
	calls int
	buf   [256]byte
	// cpuStat is the cgroup's cpu.stat ("" if it has none).
	cpuStat string
}

// NewSampler returns a Sampler.
func NewSampler() *Sampler {
	return &Sampler{s: []metrics.Sample{{Name: "/sched/latencies:seconds"}}, cpuStat: cgroupCPUStat()}
}

// Read takes a Reading.
func (s *Sampler) Read() (Reading, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return Reading{}, fmt.Errorf("getrusage: %w", err)
	}
	r := Reading{At: time.Now(), CPU: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	metrics.Read(s.s)
	if s.s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return Reading{}, fmt.Errorf("runtime/metrics: %s is not a histogram", s.s[0].Name)
	}
	r.Waits, r.Slow = countWaits(s.s[0].Value.Float64Histogram(), slowWait.Seconds())
	return r, nil
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

// RunQueue reads the threads' time on a CPU and waiting for one (the first
// two fields of /proc/self/task/*/schedstat) and the cgroup's nr_throttled.
// The list of threads is read again every 20 calls, or when one has ended.
func (s *Sampler) RunQueue() (RunQueue, error) {
	if s.calls%20 == 0 || s.paths == nil {
		if err := s.listThreads(); err != nil {
			return RunQueue{}, err
		}
	}
	s.calls++
	var rq RunQueue
	read := 0
	for _, path := range s.paths {
		b, err := s.readFile(path)
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
			s.calls = 0 // it ended: list them again next time
			continue
		}
		if err != nil {
			return RunQueue{}, fmt.Errorf("%s: %w", path, err)
		}
		run, wait, err := parseSchedstat(b)
		if err != nil {
			return RunQueue{}, fmt.Errorf("%s: %w", path, err)
		}
		rq.Run, rq.Wait = rq.Run+run, rq.Wait+wait
		read++
	}
	if read == 0 {
		return RunQueue{}, errors.New("/proc/self/task/*/schedstat: none could be read")
	}
	if s.cpuStat != "" {
		if b, err := s.readFile(s.cpuStat); err == nil {
			rq.Throttled = statField(b, "nr_throttled")
		}
	}
	return rq, nil
}

func (s *Sampler) listThreads() error {
	dir, err := os.Open("/proc/self/task")
	if err != nil {
		return fmt.Errorf("threads: %w", err)
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return fmt.Errorf("threads: %w", err)
	}
	s.paths = s.paths[:0]
	for _, tid := range names {
		s.paths = append(s.paths, "/proc/self/task/"+tid+"/schedstat")
	}
	return nil
}

// readFile reads a small file into the sampler's buffer.
func (s *Sampler) readFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	n, err := syscall.Read(fd, s.buf[:])
	syscall.Close(fd)
	if err != nil {
		return nil, err
	}
	return s.buf[:max(n, 0)], nil
}

// parseSchedstat reads the first two numbers of a schedstat line: time on
// a CPU and time waiting for one, in nanoseconds.
func parseSchedstat(b []byte) (run, wait time.Duration, err error) {
	r, rest, ok1 := number(b)
	w, _, ok2 := number(rest)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%q: want two counts of nanoseconds", b)
	}
	return time.Duration(r), time.Duration(w), nil
}

// number reads a decimal number of at most 18 digits after spaces, and
// what follows it.
func number(b []byte) (n int64, rest []byte, ok bool) {
	b = bytes.TrimLeft(b, " \t")
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if i == 18 {
			return 0, nil, false
		}
		n = n*10 + int64(b[i]-'0')
	}
	if i == 0 || i < len(b) && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' {
		return 0, nil, false
	}
	return n, b[i:], true
}

// statField is the value of a "name value" line of a cgroup stat file
// (0 if it has none).
func statField(b []byte, name string) uint64 {
	for line := range bytes.Lines(b) {
		if k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(" ")); ok && string(k) == name {
			if n, _, ok := number(v); ok {
				return uint64(n)
			}
		}
	}
	return 0
}

// cgroupCPUStat is the path of the calling process's cgroup v2 cpu.stat,
// or "" when it has none (cgroup v1, or no cpu controller).
func cgroupCPUStat() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("0::")); ok {
			path := "/sys/fs/cgroup" + string(rest) + "/cpu.stat"
			if _, err := os.Stat(path); err == nil {
				return path
			}
			if _, err := os.Stat("/sys/fs/cgroup/cpu.stat"); err == nil {
				return "/sys/fs/cgroup/cpu.stat" // a namespaced view
			}
		}
	}
	return ""
}
