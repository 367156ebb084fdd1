package systemd

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Environment of the watchdog (sd_watchdog_enabled(3)).
const (
	WatchdogUsecEnv = "WATCHDOG_USEC"
	WatchdogPIDEnv  = "WATCHDOG_PID"
)

// WatchdogTimeout returns the watchdog timeout the manager set for process
// pid, or 0 when none applies to it: WATCHDOG_USEC unset, or WATCHDOG_PID
// naming another process (the variables were meant for an ancestor). A
// value that is not a positive number is an error naming the variable.
func WatchdogTimeout(getenv func(string) string, pid int) (time.Duration, error) {
	us := getenv(WatchdogUsecEnv)
	if us == "" {
		return 0, nil
	}
	if p := getenv(WatchdogPIDEnv); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("systemd: %s=%q: not a process id", WatchdogPIDEnv, p)
		}
		if n != pid {
			return 0, nil
		}
	}
	n, err := strconv.ParseUint(us, 10, 63)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("systemd: %s=%q: want a positive number of microseconds", WatchdogUsecEnv, us)
	}
	if n > uint64(time.Duration(1<<63-1)/time.Microsecond) {
		return 0, fmt.Errorf("systemd: %s=%q: out of range", WatchdogUsecEnv, us)
	}
	return time.Duration(n) * time.Microsecond, nil
}

// Pinger sends one watchdog keep-alive; *Notifier is one.
type Pinger interface {
	Notify(assignments ...string) error
}

// Watchdog sends WATCHDOG=1 at half the manager's timeout, as
// sd_watchdog_enabled(3) recommends, so that one late ping is not fatal.
type Watchdog struct {
	Notifier Pinger
	Timeout  time.Duration // from WatchdogTimeout; Run returns at once if <= 0
	// After is the clock; time.After when nil.
	After func(time.Duration) <-chan time.Time
	// OnError, if set, hears of each failed ping (the next one is tried anyway).
	OnError func(error)
}

// Interval is how often Run pings.
func (w *Watchdog) Interval() time.Duration { return w.Timeout / 2 }

// Run pings at once and then every Interval until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	if w.Timeout <= 0 || w.Notifier == nil {
		return
	}
	after := w.After
	if after == nil {
		after = time.After
	}
	for {
		if err := w.Notifier.Notify(WatchdogPing); err != nil && w.OnError != nil {
			w.OnError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-after(w.Interval()):
		}
	}
}
