package server

import (
	"context"
	"errors"
	"time"

	"github.com/mosnlite/mosnlite/reconfig/envoy"
	"github.com/mosnlite/mosnlite/server/conntrack"
)

// drainPlane waits until the plane's parts hold no connection, then closes
// what they hold and the plane's clusters. tick, if set, runs every
// counterPushInterval meanwhile. The connections of parts for which
// migrating reports true are moving to a successor; the wait covers them as
// they go. When ask ends (if not nil) every connection is asked to finish at
// its next request boundary, moving ones included; when cut ends, whatever
// remains is closed.
func (s *Server) drainPlane(cut context.Context, pl *plane, tick func(), migrating func(*part) bool, ask context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, p := range pl.parts {
			if err := p.wait(cut); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				s.log.WithError(err).WithField("listener", p.spec.Name).Warn("drain wait")
			}
		}
	}()
	var askDone <-chan struct{}
	if ask != nil {
		askDone = ask.Done()
	}
	for {
		select {
		case <-done:
			closePlane(pl)
			return
		case <-askDone:
			askDone = nil
			for _, p := range pl.parts {
				p.drain()
			}
		case <-cut.Done():
			left := 0
			for _, p := range pl.parts {
				left += p.active()
			}
			s.log.WithField("connections", left).Warn("graceful timeout: closing what remains")
			closePlane(pl)
			<-done
			return
		case <-s.fx.after(counterPushInterval):
			if tick != nil {
				tick()
			}
		}
	}
}

func closePlane(pl *plane) {
	for _, p := range pl.parts {
		p.closeAll()
	}
	pl.clusters.Close()
}

// drainGradually asks the connections of parts to finish (an HTTP
// connection: Connection: close on its next response) with a probability
// growing linearly over d, as Envoy's gradual drain strategy does, and all
// that remain at the end. It returns at the end or when ctx ends.
func (s *Server) drainGradually(ctx context.Context, parts []*part, d time.Duration) {
	sched := envoy.DrainSchedule{Start: s.fx.now(), Duration: d, Strategy: envoy.DrainGradual}
	tick := max(d/20, 100*time.Millisecond)
	asked := map[conntrack.Conn]bool{}
	for {
		now := s.fx.now()
		if !now.Before(sched.Deadline()) {
			for _, p := range parts {
				p.drain()
			}
			return
		}
		for _, p := range parts {
			tr, ok := p.proxy.(interface{ Tracker() *conntrack.Tracker })
			if !ok {
				continue
			}
			tr.Tracker().Range(func(c conntrack.Conn, _ conntrack.State) bool {
				if !asked[c] && sched.ShouldClose(now, s.fx.rand()) {
					asked[c] = true
					c.Drain()
				}
				return true
			})
		}
		select {
		case <-s.fx.after(tick):
		case <-ctx.Done():
			return
		}
	}
}
