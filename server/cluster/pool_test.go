package cluster

import (
	"net"
	"testing"
	"time"
)

// deadlineConn records the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	reads []time.Time
}

func (d *deadlineConn) SetReadDeadline(t time.Time) error {
	d.reads = append(d.reads, t)
	return nil
}

func (d *deadlineConn) SetDeadline(t time.Time) error { return d.SetReadDeadline(t) }

func TestKeepReadDeadline(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	const timeout = 10 * time.Second
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		name string
		do   func(c *Conn)
		want []time.Time // the deadlines the socket gets
	}
	set := func(ts ...time.Time) []time.Time { return ts }
	steps := []step{
		{"the first exchange sets its deadline", func(c *Conn) { c.KeepReadDeadline(at(timeout), at(0)) }, set(at(timeout))},
		{"one 1 s later keeps it (9 s of its 10 left)", func(c *Conn) { c.KeepReadDeadline(at(time.Second+timeout), at(time.Second)) }, nil},
		{"one 5 s later still keeps it (exactly half left)", func(c *Conn) { c.KeepReadDeadline(at(5*time.Second+timeout), at(5*time.Second)) }, nil},
		{"one 5.1 s later sets its own", func(c *Conn) {
			c.KeepReadDeadline(at(5100*time.Millisecond+timeout), at(5100*time.Millisecond))
		}, set(at(5100*time.Millisecond + timeout))},
		{"a shorter timeout, which the kept one would outlast, sets its own", func(c *Conn) {
			c.KeepReadDeadline(at(6*time.Second+time.Second), at(6*time.Second))
		}, set(at(7 * time.Second))},
		{"the next with the long timeout sets its own (the kept one is too near)", func(c *Conn) {
			c.KeepReadDeadline(at(6500*time.Millisecond+timeout), at(6500*time.Millisecond))
		}, set(at(6500*time.Millisecond + timeout))},
		{"another deadline set meanwhile", func(c *Conn) { _ = c.SetReadDeadline(at(20 * time.Second)) }, set(at(20 * time.Second))},
		{"is not taken for the kept one", func(c *Conn) { c.KeepReadDeadline(at(7*time.Second+timeout), at(7*time.Second)) }, set(at(7*time.Second + timeout))},
		{"nor is one SetDeadline set", func(c *Conn) { _ = c.SetDeadline(time.Time{}) }, set(time.Time{})},
		{"which leaves none", func(c *Conn) { c.KeepReadDeadline(at(8*time.Second+timeout), at(8*time.Second)) }, set(at(8*time.Second + timeout))},
	}
	dc := &deadlineConn{}
	c := &Conn{Conn: dc}
	for _, s := range steps {
		before := len(dc.reads)
		s.do(c)
		if got := dc.reads[before:]; !equalTimes(got, s.want) {
			t.Errorf("%s: socket got %v, want %v", s.name, got, s.want)
		}
	}
}

func equalTimes(a, b []time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
