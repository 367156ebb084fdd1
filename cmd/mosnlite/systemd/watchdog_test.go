package systemd

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWatchdogTimeout(t *testing.T) {
	const pid = 4711
	for _, c := range []struct {
		env  env
		want time.Duration
		err  string
	}{
		{env{}, 0, ""},
		{env{"WATCHDOG_USEC": "30000000"}, 30 * time.Second, ""},
		{env{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4711"}, 30 * time.Second, ""},
		// Set for the process systemd started; a child it spawned is not it.
		{env{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "99"}, 0, ""},
		{env{"WATCHDOG_PID": "4711"}, 0, ""},
		{env{"WATCHDOG_USEC": "0"}, 0, "WATCHDOG_USEC"},
		{env{"WATCHDOG_USEC": "-5"}, 0, "WATCHDOG_USEC"},
		{env{"WATCHDOG_USEC": "30s"}, 0, "WATCHDOG_USEC"},
		{env{"WATCHDOG_USEC": "99999999999999999999"}, 0, "WATCHDOG_USEC"},
		{env{"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "x"}, 0, "WATCHDOG_PID"},
	} {
		got, err := WatchdogTimeout(c.env.get, pid)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want one naming %s", c.env, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%v: %v, %v; want %v", c.env, got, err, c.want)
		}
	}
}

// fakeClock hands out timers that fire only when the test says.
type fakeClock struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{asked: make(chan time.Duration, 16), fire: make(chan time.Time)}
}

func (c *fakeClock) after(d time.Duration) <-chan time.Time {
	c.asked <- d
	return c.fire
}

type pings struct {
	mu   sync.Mutex
	sent [][]string
	fail error
	got  chan struct{}
}

func (p *pings) Notify(a ...string) error {
	p.mu.Lock()
	p.sent = append(p.sent, a)
	p.mu.Unlock()
	p.got <- struct{}{}
	return p.fail
}

func TestWatchdogPingsAtHalfTheTimeout(t *testing.T) {
	clk := newFakeClock()
	p := &pings{got: make(chan struct{}, 16)}
	w := &Watchdog{Notifier: p, Timeout: 20 * time.Second, After: clk.after}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	for i := 0; i < 3; i++ {
		<-p.got // a ping, then a wait of half the timeout
		if d := <-clk.asked; d != 10*time.Second {
			t.Fatalf("ping %d: waits %v, want 10s", i, d)
		}
		if i < 2 {
			clk.fire <- time.Time{}
		}
	}
	cancel()
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	want := [][]string{{"WATCHDOG=1"}, {"WATCHDOG=1"}, {"WATCHDOG=1"}}
	if !reflect.DeepEqual(p.sent, want) {
		t.Errorf("sent %q", p.sent)
	}
}

func TestWatchdogReportsFailedPingsAndGoesOn(t *testing.T) {
	clk := newFakeClock()
	p := &pings{got: make(chan struct{}, 16), fail: errors.New("manager gone")}
	var errs []error
	var mu sync.Mutex
	w := &Watchdog{Notifier: p, Timeout: 2 * time.Second, After: clk.after, OnError: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	<-p.got
	<-clk.asked
	clk.fire <- time.Time{}
	<-p.got
	<-clk.asked
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 2 {
		t.Errorf("OnError heard %d failures, want 2", len(errs))
	}
}

func TestWatchdogOffWithoutTimeout(t *testing.T) {
	p := &pings{got: make(chan struct{}, 1)}
	(&Watchdog{Notifier: p}).Run(context.Background()) // returns at once
	if len(p.sent) != 0 {
		t.Errorf("pinged %q with no timeout", p.sent)
	}
}

// The real thing: pings reach a manager socket from a Notifier.
func TestWatchdogOverTheSocket(t *testing.T) {
	m := newManagerSocket(t, true)
	clk := newFakeClock()
	w := &Watchdog{Notifier: notifierFor(t, m), Timeout: time.Second, After: clk.after}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	for i := 0; i < 2; i++ {
		if got := m.next(wait); !reflect.DeepEqual(got.fields, []string{"WATCHDOG=1"}) {
			t.Fatalf("ping %d: %q", i, got.fields)
		}
		if d := <-clk.asked; d != 500*time.Millisecond {
			t.Fatalf("interval %v", d)
		}
		clk.fire <- time.Time{}
	}
}
