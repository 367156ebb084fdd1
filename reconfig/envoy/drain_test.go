package envoy

import (
	"testing"
	"time"
)

func TestDrainScheduleImmediate(t *testing.T) {
	start := time.Unix(1000, 0)
	o := DefaultOptions()
	o.DrainStrategy = DrainImmediate
	d := NewDrainSchedule(start, o)
	if d.Deadline() != start.Add(600*time.Second) {
		t.Fatalf("deadline %v", d.Deadline())
	}
	if !d.ShouldClose(start, 12345) {
		t.Fatal("immediate drain must close everything at once")
	}
}

func TestDrainScheduleGradual(t *testing.T) {
	start := time.Unix(1000, 0)
	d := DrainSchedule{Start: start, Duration: 100 * time.Second, Strategy: DrainGradual}
	if d.ShouldClose(start, 0) {
		t.Fatal("nothing closes at the very start of a gradual drain")
	}
	// At 30% elapsed, draws below 30% close, draws above do not.
	at := start.Add(30 * time.Second)
	if !d.ShouldClose(at, uint64(29*time.Second)) || d.ShouldClose(at, uint64(31*time.Second)) {
		t.Fatal("closing chance is not elapsed/duration")
	}
	// The probability over evenly spread draws is about the elapsed fraction.
	closed := 0
	for i := 0; i < 1000; i++ {
		if d.ShouldClose(at, uint64(i)*uint64(100*time.Millisecond)) {
			closed++
		}
	}
	if closed < 290 || closed > 310 {
		t.Fatalf("%d of 1000 closed at 30%%", closed)
	}
	if !d.ShouldClose(start.Add(100*time.Second), ^uint64(0)) || !d.ShouldClose(start.Add(time.Hour), ^uint64(0)) {
		t.Fatal("everything closes at and after the deadline")
	}
	zero := DrainSchedule{Start: start, Strategy: DrainGradual}
	if !zero.ShouldClose(start, 7) {
		t.Fatal("a zero drain time closes at once")
	}
}
