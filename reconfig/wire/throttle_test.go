package wire

import (
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	now := time.Unix(100, 0)
	th := &Throttle{Every: 10 * time.Second, Now: func() time.Time { return now }}
	if ok, n := th.Allow(); !ok || n != 0 {
		t.Fatalf("first: %v %d", ok, n)
	}
	for i := 0; i < 5; i++ {
		now = now.Add(time.Second)
		if ok, _ := th.Allow(); ok {
			t.Fatalf("let through %s after the last", now.Sub(time.Unix(100, 0)))
		}
	}
	now = now.Add(5 * time.Second)
	if ok, n := th.Allow(); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d held back, want 5", ok, n)
	}
}
