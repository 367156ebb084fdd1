package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// histOf returns the state of series name in hs (zero if absent).
func histOf(hs []histsample.Histogram, name string) histsample.Histogram {
	for _, h := range hs {
		if h.Name == name {
			return h
		}
	}
	return histsample.Histogram{}
}

// observed returns a registry's state of one histogram after values.
func observed(name string, values ...float64) histsample.Histogram {
	r := stats.New()
	h := r.Histogram(name, "", nil)
	for _, v := range values {
		h.ObserveSeconds(v)
	}
	return h.Snapshot()
}

// The successor takes its predecessor's histograms from the manifest (a bad
// one refused with a warning naming it, the others kept), adds each part of
// a push as it comes, serves its service ports only once the push is
// complete, and times its own handoff from its exec to the ack.
func TestSuccessorContinuesHistogramsAndTimesItsHandoff(t *testing.T) {
	sock, _ := inherited(t, "web", ident.KindServer, "127.0.0.1:0")
	e := newEnv(t, sock.Spec.Address, "")
	bad := observed("http.downstream_rq_duration_seconds", 0.002)
	bad.Count++ // its buckets hold one fewer
	handoffs := observed(stats.HandoffDuration, 0.004, 0.02)
	pred := &fakePred{p: 77, socks: []ident.Socket{sock}, bye: make(chan struct{}),
		pushes: []reconfig.Counts{
			{Histograms: []histsample.Histogram{observed(stats.MigrationDuration, 0.01)}, More: true},
			{Histograms: []histsample.Histogram{observed(stats.MigrationDuration, 0.03)}},
		}}
	var s *Server
	part := 0
	pred.beforePush = func() {
		part++
		if part == 2 && s.getState() != StateStarting {
			t.Errorf("serving (%s) before the push was complete", s.getState())
		}
	}
	e.style.pred = pred
	e.style.lin = lineage{generation: 2, drainingPID: 77, histograms: []histsample.Histogram{handoffs, bad}}
	exec := time.Now().Add(-50 * time.Millisecond)
	s = e.server(func(o *Options) { o.ExecTime = exec })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := s.reg.Histograms()
	// Two inherited handoffs and its own.
	if h := histOf(hs, stats.HandoffDuration); h.Count != 3 || h.Sum < 0.024+0.05 {
		t.Fatalf("handoff histogram %+v", h)
	}
	if last := s.m.lastHandoffSeconds.Value(); last < 0.05 {
		t.Fatalf("last handoff %vs, measured from before the exec time", last)
	}
	if h := histOf(hs, stats.MigrationDuration); h.Count != 2 || h.Sum != 0.04 {
		t.Fatalf("migration histogram after a push in two parts: %+v", h)
	}
	if h := histOf(hs, "http.downstream_rq_duration_seconds"); h.Count != 0 {
		t.Fatalf("a bad state was taken: %+v", h)
	}
	found := false
	for _, en := range e.hook.AllEntries() {
		if err, _ := en.Data["error"].(error); err != nil && strings.Contains(err.Error(), "http.downstream_rq_duration_seconds") {
			found = en.Level.String() == "warning"
		}
	}
	if !found {
		t.Fatal("no warning naming the refused histogram")
	}
	if !s.ServerInfo().StartTime.Equal(exec) {
		t.Fatalf("generation start %v, want the exec time %v", s.ServerInfo().StartTime, exec)
	}
	close(pred.bye)
}

// The old side: the manifest carries the histograms that have
// observations; after the ack the first push carries what they observed
// since, the service ports show them frozen at what was pushed, and later
// observations go in later pushes.
func TestHandoverPushesHistogramDeltasAndFreezesThem(t *testing.T) {
	e := newEnv(t, "", "")
	s := startFresh(t, e)
	s.m.upgrade.Handoff(3 * time.Millisecond)
	h := e.style.successorHooks()
	lin := h.manifest()
	if got := histOf(lin.histograms, stats.HandoffDuration); got.Count != 1 || len(lin.histograms) != 1 {
		t.Fatalf("manifest histograms %+v (want only those with observations)", lin.histograms)
	}
	h.sent(lin)
	s.m.upgrade.Handoff(7 * time.Millisecond) // after the manifest
	succ := newFakeSucc(false)
	// After the ack's first push, before the handover's drain (which may
	// end, and push for the last time, at once with nothing to drain).
	succ.onFirstSend = func() { s.m.upgrade.Handoff(11 * time.Millisecond) }
	e.style.pol.exitWhenDrained = false // stay, so that the frozen view can be read
	h.onAck(succ)
	succ.mu.Lock()
	first := succ.counters[0]
	succ.mu.Unlock()
	if d := histOf(first.Histograms, stats.HandoffDuration); d.Count != 1 || d.Sum != 0.007 {
		t.Fatalf("first push %+v, want the one observation since the manifest", first.Histograms)
	}
	if got := histOf(s.reg.ExposedHistograms(), stats.HandoffDuration); got.Count != 2 {
		t.Fatalf("exposed after the ack: %d observations, want the 2 sent", got.Count)
	}
	if got := histOf(s.reg.Histograms(), stats.HandoffDuration); got.Count != 3 {
		t.Fatalf("the registry itself: %d, want 3", got.Count)
	}
	deadline := time.Now().Add(wait)
	for {
		succ.mu.Lock()
		var n uint64
		for _, c := range succ.counters[1:] {
			n += histOf(c.Histograms, stats.HandoffDuration).Count
		}
		succ.mu.Unlock()
		if n == 1 {
			break
		}
		if n > 1 || time.Now().After(deadline) {
			t.Fatalf("later pushes carried %d observations, want 1", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(succ.done) != 0 {
		t.Fatalf("migration done said with nothing to migrate: %+v", succ.done)
	}
	s.terminate()
	waitDone(t, s)
}

// An Envoy parent freezes what its service ports show when its child asks
// it to drain, before it answers, but gives the child its live series.
func TestEnvoyParentFreezesAtTheDrainRequest(t *testing.T) {
	e := newEnv(t, "", "")
	s := startFresh(t, e)
	s.m.upgrades.Inc()
	s.m.upgrade.Handoff(time.Millisecond)
	h := e.style.successorHooks()
	h.freeze()
	s.m.upgrades.Inc()
	s.m.upgrade.Handoff(time.Millisecond)
	exposed := map[string]float64{}
	for _, x := range s.reg.Exposed() {
		exposed[x.Key()] = x.Value
	}
	child := map[string]float64{}
	for _, x := range h.stats() {
		child[x.Key()] = x.Value
	}
	if exposed["server.upgrades_total"] != 1 || child["server.upgrades_total"] != 2 {
		t.Fatalf("exposed %v, to the child %v", exposed["server.upgrades_total"], child["server.upgrades_total"])
	}
	if got := histOf(s.reg.ExposedHistograms(), stats.HandoffDuration).Count; got != 1 {
		t.Fatalf("exposed histogram %d", got)
	}
	if got := histOf(h.histograms(), stats.HandoffDuration).Count; got != 2 {
		t.Fatalf("histogram to the child %d", got)
	}
}
