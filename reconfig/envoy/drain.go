package envoy

import "time"

// DrainSchedule is the drain a parent runs when its child tells it to:
// it lasts Duration from Start, and Strategy says how connections leave.
// With "immediate" every connection is asked to close at once; with
// "gradual" the chance that a connection is asked grows linearly from 0 at
// Start to 1 at the deadline, so that load moves to the child smoothly.
type DrainSchedule struct {
	Start    time.Time
	Duration time.Duration
	Strategy string // DrainGradual or DrainImmediate
}

// NewDrainSchedule starts a drain at start with the options' time and strategy.
func NewDrainSchedule(start time.Time, o Options) DrainSchedule {
	return DrainSchedule{Start: start, Duration: o.DrainTime, Strategy: o.DrainStrategy}
}

// Deadline is when the drain ends: whatever remains may be closed.
func (d DrainSchedule) Deadline() time.Time { return d.Start.Add(d.Duration) }

// ShouldClose says whether a connection should be closed now (an HTTP
// connection: "Connection: close" on its next response), given a random r.
// Immediate, a zero duration or a passed deadline: always. Gradual: with
// probability elapsed/Duration.
func (d DrainSchedule) ShouldClose(now time.Time, r uint64) bool {
	if d.Strategy == DrainImmediate || d.Duration <= 0 || !now.Before(d.Deadline()) {
		return true
	}
	elapsed := now.Sub(d.Start)
	if elapsed <= 0 {
		return false
	}
	return uint64(elapsed) > r%uint64(d.Duration)
}
