package procs

import (
	"cmp"
	"context"
	"errors"
	"io"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// feeder feeds a Governor samples 100 ms apart.
type feeder struct {
	g  *Governor
	at time.Time
	r  Reading
	// The threads' run-queue times: they wait waitRatio times as long as
	// they run. rqCalls counts the governor's readings of them.
	run, wait time.Duration
	waitRatio float64
	throttled uint64
	step      time.Duration // between samples: 100 ms if zero
	rqCalls   int
	rqErr     error
}

// load feeds samples in which the process used cpus CPUs on average and
// the runtime sampled waits goroutine waits, slow of them long; it returns
// the processors after each.
func (f *feeder) queued(cpus float64, waits, slow uint64, samples int) []int {
	var out []int
	for range samples {
		step := cmp.Or(f.step, 100*time.Millisecond)
		f.at = f.at.Add(step)
		f.r.CPU += time.Duration(cpus * float64(step))
		f.run += time.Duration(cpus * float64(step))
		f.wait += time.Duration(f.waitRatio * cpus * float64(step))
		f.r.Waits += waits
		f.r.Slow += slow
		f.r.At = f.at
		n, _ := f.g.observe(f.r)
		out = append(out, n)
	}
	return out
}

func (f *feeder) load(cpus float64, samples int) []int { return f.queued(cpus, 100, 0, samples) }

// samplesToDown feeds a light load until a processor is taken away, and
// returns how many samples that took (at most 10,000).
func (f *feeder) samplesToDown() int {
	p := f.g.procs
	n := 0
	for f.g.procs == p && n < 10000 {
		f.load(0.3, 1)
		n++
	}
	return n
}

// idle feeds a light load until the governor is at one processor.
func (f *feeder) toOne(t *testing.T) {
	t.Helper()
	for range 1000 {
		if f.g.procs == 1 {
			return
		}
		f.load(0.1, 1)
	}
	t.Fatalf("a light load left %d processors", f.g.procs)
}

func newFeeder(t *testing.T, max int) *feeder {
	t.Helper()
	f := &feeder{at: time.Unix(1000, 0)}
	// The samples are 100 ms apart (production takes them every 50 ms);
	// the rules count time, not samples.
	g, err := New(Options{Max: max, Read: NewSampler().Read, Set: func(int) {}, After: time.After, Log: quietLog(),
		RunQueue: func() (RunQueue, error) {
			f.rqCalls++
			return RunQueue{Run: f.run, Wait: f.wait, Throttled: f.throttled}, f.rqErr
		}})
	if err != nil {
		t.Fatal(err)
	}
	f.g = g
	f.load(0, 1) // the first sample only sets the baseline
	return f
}

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func last(s []int) int { return s[len(s)-1] }

func TestLightLoadComesDownToOneAfterASecond(t *testing.T) {
	f := newFeeder(t, 2)
	if got := f.g.procs; got != 2 {
		t.Fatalf("starts at %d processors, want Max (2)", got)
	}
	got := f.load(0.5, 10)
	if i := slices.Index(got, 1); i != 9 {
		t.Fatalf("a light load for a second (10 samples): processors %v; want the tenth to take one away", got)
	}
	if got := f.load(0.5, 50); last(got) != 1 || f.g.procs != 1 {
		t.Fatalf("a light load on one processor moved it: %v", got)
	}
}

// upSamples is how many of the feeder's 100 ms samples cover upAfter.
const upSamples = 1

// At production's 50 ms a sample, it takes two busy ones in a row.
func TestBusyOneProcessorDoublesAfterTwoSamples(t *testing.T) {
	f := newFeeder(t, 2)
	f.toOne(t)
	f.step = DefaultInterval
	// One busy sample between light ones is a blip, not a load.
	if got := f.load(0.95, 1); last(got) != 1 {
		t.Fatalf("one busy sample: %d processors", last(got))
	}
	f.load(0.3, 1)
	if got := f.load(0.95, 1); last(got) != 1 {
		t.Fatalf("busy samples not in a row: %d processors", last(got))
	}
	if got := f.load(0.95, 1); last(got) != 2 {
		t.Fatalf("two busy samples in a row: %d processors, want 2", last(got))
	}
}

// A load between the thresholds stays where it is: the gap is what keeps
// the governor from going back and forth.
func TestMiddleLoadStaysWhereItIs(t *testing.T) {
	f := newFeeder(t, 2)
	f.toOne(t)
	if got := f.load(0.7, 100); last(got) != 1 {
		t.Fatalf("0.7 CPUs on one processor: went to %d", last(got))
	}
	f.load(0.95, upSamples)
	if f.g.procs != 2 {
		t.Fatalf("setup: %d processors", f.g.procs)
	}
	// The same load on two processors costs more CPU (the wake-ups).
	if got := f.load(0.8, 100); last(got) != 2 {
		t.Fatalf("0.8 CPUs on two processors: went to %d", last(got))
	}
}

// Goroutines that wait long to run while little CPU is used: other
// processes keep the processor's thread off the CPU, and a second
// processor (a second thread) is wanted.
func TestLongWaitsToRunAddAProcessor(t *testing.T) {
	f := newFeeder(t, 2)
	f.toOne(t)
	if got := f.queued(0.4, 200, 90, 5); last(got) != 1 {
		t.Fatalf("under half of the waits long: %d processors", last(got))
	}
	if got := f.queued(0.4, 9, 9, 5); last(got) != 1 {
		t.Fatalf("too few waits to judge: %d processors", last(got))
	}
	if got := f.queued(0.2, 200, 190, 5); last(got) != 1 {
		t.Fatalf("long waits in a nearly idle process: %d processors", last(got))
	}
	if got := f.queued(0.4, 200, 150, 2); last(got) != 2 {
		t.Fatalf("long waits at 0.4 CPUs: %d processors, want 2", last(got))
	}
	// While they last, a low CPU use does not take the processor away.
	if got := f.queued(0.4, 200, 150, 30); last(got) != 2 {
		t.Fatalf("long waits on two processors: went to %d", last(got))
	}
}

// Threads that wait for a CPU longer than they run: other processes take
// the CPUs, and the CPU time used is what they leave. A second processor
// (a second thread) is wanted, and kept while it lasts.
func TestStarvedThreadsAddAProcessorAndKeepIt(t *testing.T) {
	f := newFeeder(t, 2)
	f.toOne(t)
	f.waitRatio = 0.8
	if got := f.load(0.4, 20); last(got) != 1 {
		t.Fatalf("threads waiting less than they run: %d processors", last(got))
	}
	f.waitRatio = 3
	calls := f.rqCalls
	if got := f.load(0.2, 20); last(got) != 1 || f.rqCalls != calls {
		t.Fatalf("a nearly idle process: %d processors, %d run-queue readings", last(got), f.rqCalls-calls)
	}
	f.load(0.4, 1) // its first reading covers the idle time too: not enough
	if got := f.load(0.4, 2); last(got) != 2 {
		t.Fatalf("starved threads at 0.4 CPUs: %d processors, want 2", last(got))
	}
	if got := f.load(0.4, 50); last(got) != 2 {
		t.Fatalf("still starved on two processors: went to %d", last(got))
	}
	f.waitRatio = 0.2
	if got := f.load(0.4, 10); last(got) != 1 {
		t.Fatalf("no longer starved, 0.4 CPUs: %d processors after a second, want 1", last(got))
	}
}

// A failing run-queue reading turns the starved rule off and is logged once.
func TestRunQueueErrorIsLoggedOnce(t *testing.T) {
	logger, hook := test.NewNullLogger()
	f := newFeeder(t, 2)
	f.g.o.Log = logrus.NewEntry(logger)
	f.toOne(t)
	f.waitRatio, f.rqErr = 3, errors.New("no schedstat")
	if got := f.load(0.4, 20); last(got) != 1 {
		t.Fatalf("with no run-queue times: %d processors", last(got))
	}
	if n := len(hook.AllEntries()); n != 1 {
		t.Fatalf("%d log entries for 20 failed readings, want 1", n)
	}
}

func TestManyProcessorsStepDownOneASecondAndDoubleUp(t *testing.T) {
	f := newFeeder(t, 8)
	if got := f.load(7.5, 20); last(got) != 8 {
		t.Fatalf("a heavy load: %d processors", last(got))
	}
	var steps []int
	for f.g.procs > 1 {
		if len(steps) > 20 {
			t.Fatalf("never came down to 1: %v", steps)
		}
		f.load(0.3, 10)
		steps = append(steps, f.g.procs)
	}
	if want := []int{7, 6, 5, 4, 3, 2, 1}; !slices.Equal(steps, want) {
		t.Fatalf("stepping down a second at a time: %v, want %v", steps, want)
	}
	var ups []int
	for range 3 {
		f.load(0.95*float64(f.g.procs), upSamples)
		ups = append(ups, f.g.procs)
	}
	if want := []int{2, 4, 8}; !slices.Equal(ups, want) {
		t.Fatalf("doubling up: %v, want %v", ups, want)
	}
	if f.load(7.9, 5); f.g.procs != 8 {
		t.Fatalf("beyond Max: %d", f.g.procs)
	}
}

// A load that goes up again soon after each down makes the downs wait
// longer, up to a minute; two calm minutes make them quick again.
func TestFlappingBacksOff(t *testing.T) {
	f := newFeeder(t, 2)
	var waited []int // samples of light load each down took
	for range 8 {
		waited = append(waited, f.samplesToDown())
		f.load(0.95, upSamples) // back up within the flap window
		if f.g.procs != 2 {
			t.Fatalf("setup: %d processors", f.g.procs)
		}
	}
	if want := []int{10, 20, 40, 80, 160, 320, 600, 600}; !slices.Equal(waited, want) {
		t.Fatalf("samples before each down: %v, want %v", waited, want)
	}
	f.load(1.0, 1200) // two minutes at the level
	if n := f.samplesToDown(); n != 10 {
		t.Fatalf("after two calm minutes a down took %d samples, want 10", n)
	}
	// A load that comes back seconds after a down (the next phase of a
	// workload) is not a flap.
	for range 3 {
		f.load(0, 30)
		f.load(0.95, upSamples)
		if n := f.samplesToDown(); n != 10 {
			t.Fatalf("a load back 3 s after a down: the next down took %d samples, want 10", n)
		}
	}
}

// A sample whose CPU time or wait counts went backwards is a new baseline,
// not a negative load; so is one taken at the same time.
func TestBackwardsSampleIsABaseline(t *testing.T) {
	f := newFeeder(t, 2)
	f.load(0.3, 9)
	f.r.CPU -= time.Second
	f.r.At = f.at.Add(100 * time.Millisecond)
	if n, changed := f.g.observe(f.r); changed || n != 2 {
		t.Fatalf("a CPU time that went back changed the processors: %d", n)
	}
	if n, changed := f.g.observe(f.r); changed || n != 2 {
		t.Fatalf("a sample at the same time changed the processors: %d", n)
	}
}

// One long sample over the up rule (the first after an idle spell, taken
// 250 ms after the one before) is enough: the rule counts time.
func TestALongBusySampleIsEnoughToGoUp(t *testing.T) {
	f := newFeeder(t, 2)
	f.toOne(t)
	f.at = f.at.Add(250 * time.Millisecond)
	f.r.CPU += 240 * time.Millisecond
	f.r.At = f.at
	if n, changed := f.g.observe(f.r); !changed || n != 2 {
		t.Fatalf("250 ms at 0.96 CPUs: %d processors, want 2", n)
	}
}

// A process idle on one processor is sampled less often; a working one, or
// one with more processors, at the ordinary interval.
func TestIdleOnOneIsSampledLessOften(t *testing.T) {
	f := newFeeder(t, 2)
	if got := f.g.interval(); got != DefaultInterval {
		t.Fatalf("on two processors: %v", got)
	}
	f.toOne(t)
	f.load(0.05, 1)
	if got := f.g.interval(); got != DefaultIdleInterval {
		t.Fatalf("idle on one: %v, want %v", got, DefaultIdleInterval)
	}
	f.load(0.3, 1)
	if got := f.g.interval(); got != DefaultInterval {
		t.Fatalf("working on one: %v", got)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	ok := Options{Max: 2, Read: NewSampler().Read, Set: func(int) {}, After: time.After, Log: quietLog()}
	for name, o := range map[string]Options{
		"max 0":    {Max: 0, Read: ok.Read, Set: ok.Set, After: ok.After, Log: ok.Log},
		"no Read":  {Max: 2, Set: ok.Set, After: ok.After, Log: ok.Log},
		"no Set":   {Max: 2, Read: ok.Read, After: ok.After, Log: ok.Log},
		"no After": {Max: 2, Read: ok.Read, Set: ok.Set, Log: ok.Log},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
}

// Run on fakes: it sets nothing until the rules change the processors,
// waits the interval the state calls for, applies the rules to the readings
// it takes, logs a failing reading once, and stops with ctx.
func TestRunOnFakes(t *testing.T) {
	ticks := make(chan time.Time)
	waits := make(chan time.Duration, 64)
	sets := make(chan int, 16)
	type reading struct {
		r   Reading
		err error
	}
	readings := make(chan reading, 1)
	logger, hook := test.NewNullLogger()
	g, err := New(Options{
		Max:   2,
		Read:  func() (Reading, error) { r := <-readings; return r.r, r.err },
		Set:   func(n int) { sets <- n },
		After: func(d time.Duration) <-chan time.Time { waits <- d; return ticks },
		Log:   logrus.NewEntry(logger),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	at, cpu := time.Unix(1000, 0), time.Duration(0)
	tick := func(r reading) {
		at = at.Add(100 * time.Millisecond)
		r.r.At = at
		readings <- r
		ticks <- at
	}
	for range 3 {
		tick(reading{err: errors.New("no rusage")})
	}
	for range 11 { // the first one is the baseline
		cpu += 20 * time.Millisecond // 0.2 CPUs
		tick(reading{r: Reading{CPU: cpu}})
	}
	select {
	case n := <-sets:
		if n != 1 {
			t.Fatalf("Set(%d) after a light load, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no Set after a light load")
	}
	// Idle on one processor: the next wait is the idle interval. Run asks
	// for a wait before each of the 15 samples and after the last.
	cpu += time.Millisecond
	tick(reading{r: Reading{CPU: cpu}})
	var asked []time.Duration
	for len(asked) < 16 {
		select {
		case d := <-waits:
			asked = append(asked, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("Run asked for %d waits, want 16", len(asked))
		}
	}
	if asked[0] != DefaultInterval || asked[14] != DefaultInterval || asked[15] != DefaultIdleInterval {
		t.Errorf("waits %v: want the interval, and the idle interval after an idle sample on one processor", asked)
	}
	cancel()
	<-done
	warned := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warned++
		}
	}
	if warned != 1 {
		t.Fatalf("%d warnings for 3 failed readings in a row, want 1", warned)
	}
	if len(sets) != 0 {
		t.Fatalf("more Sets than the rules call for: %d", len(sets))
	}
}

func TestRunWithOneProcessorReturns(t *testing.T) {
	g, err := New(Options{Max: 1, Read: NewSampler().Read, Set: func(n int) { t.Fatalf("Set(%d) with nothing to govern", n) },
		After: func(time.Duration) <-chan time.Time {
			t.Fatal("waited with nothing to govern")
			return nil
		}, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	g.Run(context.Background())
}

// The sampler's CPU time grows while the process spins, and its wait count
// while goroutines hand work to each other.
func TestSamplerReadsTheProcess(t *testing.T) {
	s := NewSampler()
	a, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	spinUntil(t, func() time.Duration {
		b, err := s.Read()
		if err != nil {
			t.Fatal(err)
		}
		return b.CPU - a.CPU
	})
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	for i := range 2000 {
		ping <- i
		<-pong
	}
	close(ping)
	b, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if b.Waits <= a.Waits {
		t.Errorf("4000 goroutine wake-ups: sampled waits %d → %d", a.Waits, b.Waits)
	}
	if b.Slow > b.Waits {
		t.Errorf("more slow waits (%d) than waits (%d)", b.Slow, b.Waits)
	}
}

// The run-queue times of a spinning process grow by about the time it spun.
func TestSamplerRunQueue(t *testing.T) {
	s := NewSampler()
	rq0, err := s.RunQueue()
	if err != nil {
		t.Fatal(err)
	}
	spinUntil(t, func() time.Duration {
		rq, err := s.RunQueue()
		if err != nil {
			t.Fatal(err)
		}
		if rq.Wait < rq0.Wait {
			t.Fatalf("wait went back: %v → %v", rq0.Wait, rq.Wait)
		}
		return rq.Run - rq0.Run
	})
}

// spinUntil spins until grown, a reading of the time spun, is 20 ms: on a
// shared machine that takes longer than 20 ms, but not 10 s.
func spinUntil(t *testing.T, grown func() time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		g := grown()
		if g >= 20*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s of spinning: the reading grew %v", g)
		}
		for x := 0; x < 1e6; x++ {
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	run, wait, err := parseSchedstat([]byte("278840596 59580611 568\n"))
	if err != nil || run != 278840596 || wait != 59580611 {
		t.Fatalf("got %v, %v, %v", run, wait, err)
	}
	for _, bad := range []string{"", "12", "12 x 3", "-1 2 3", "99999999999999999999 1 1", "12x 3 4"} {
		if _, _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestStatField(t *testing.T) {
	b := []byte("usage_usec 100\nnr_periods 7\nnr_throttled 3\nthrottled_usec 9\n")
	if got := statField(b, "nr_throttled"); got != 3 {
		t.Fatalf("nr_throttled %d", got)
	}
	if got := statField(b, "nr_bursts"); got != 0 {
		t.Fatalf("a missing field: %d", got)
	}
}

// Throttling by a CPU quota is not starving: a second thread would get no
// more CPU.
func TestThrottledIsNotStarved(t *testing.T) {
	f := newFeeder(t, 2)
	f.toOne(t)
	f.waitRatio = 3
	for range 20 {
		f.throttled++
		if got := f.load(0.4, 1); last(got) != 1 {
			t.Fatalf("throttled threads: %d processors", last(got))
		}
	}
}

func TestCountWaits(t *testing.T) {
	h := &metrics.Float64Histogram{
		Buckets: []float64{0, 100e-6, 200e-6, 400e-6, 1},
		Counts:  []uint64{5, 7, 3, 2},
	}
	if all, over := countWaits(h, 200e-6); all != 17 || over != 5 {
		t.Fatalf("countWaits: %d, %d; want 17, 5", all, over)
	}
}
