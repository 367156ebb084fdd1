package server

import (
	"context"
	"time"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/server/tlsconf"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// The lifecycle (lifecycle.go, handover.go) is one, whatever the handoff
// style; the styles differ only behind this seam. On the new side a style
// finds the predecessor and gives back a predecessor; on the old side it
// makes the process reachable (an endpoint) and calls the successorHooks
// when a successor arrives. One adapter per style: style_mosn.go
// (reconfig.sock), envoy.go (Envoy's restart epochs).

// handoffStyle is one way processes hand over to each other.
type handoffStyle interface {
	// begin looks for a predecessor and takes its sockets. A fresh start
	// has a nil predecessor.
	begin(ctx context.Context) (lineage, predecessor, error)
	// opened is told the real address of every listener once all are open
	// (Envoy: --admin-address-path).
	opened(specs []ident.Spec) error
	// listen makes this process reachable for a successor: at once after a
	// fresh start, after the ack otherwise.
	listen(h successorHooks) (endpoint, error)
	// policy is how this process hands over to its successor.
	policy() handoverPolicy
}

// lineage is what a process inherits, or starts with.
type lineage struct {
	generation  int       // this process's: 1 for a fresh start
	firstStart  time.Time // of generation 1 (zero: now)
	counters    []sample.Sample
	histograms  []histsample.Histogram // with observations (validated on arrival)
	drainBound  time.Duration          // the longest the predecessor drains (0: ours)
	ackBy       time.Time              // the predecessor stops waiting for our ack then (zero: no limit)
	drainingPID int
	// drainingElsewhere: the predecessor is in another PID namespace;
	// drainingPID is the pid it reports there.
	drainingElsewhere bool
	env               map[string]string   // Manifest.Env (MOSN style)
	ticketKeys        []tlsconf.TicketKey // TLS session ticket keys (secret)
}

// predecessor is the process this one takes over from, seen from the new side.
type predecessor interface {
	pid() int
	// pidLabel is pid for logs: the pid it reports, marked, when it runs in
	// another PID namespace (see wire.PIDLabel).
	pidLabel() any
	// gone reports, after ack failed, whether it went away before reading
	// the ack (then this process, already serving, carries on alone) rather
	// than giving up on us (then this process undoes its start).
	gone() bool
	// sockets are its listening sockets, owned by the predecessor until
	// ack, fail or orphan closes them: take copies (listener.Set) first.
	sockets() []ident.Socket
	// ack says we serve: it stops accepting and drains, moving the
	// connections of targets to h.
	ack(ctx context.Context, targets []reconfig.MigrationTarget, h reconfig.ConnHandler) error
	// dropListeners names, before ack, the sockets it handed over that we
	// do not serve (closed here): it closes them at the ack.
	dropListeners(specs []ident.Spec)
	// fail says we give up before the ack: it carries on.
	fail(err error)
	// orphan says it went away before it read our ack: we carry on alone.
	orphan()
	// follow adds in what it counts while it drains, until it is gone (see
	// followHooks).
	follow(ctx context.Context, h followHooks) error
	// stop is this process stopping for good: a predecessor watching us
	// must not serve again (MOSN), one still draining is terminated (Envoy).
	stop(ctx context.Context)
}

// followHooks are what a predecessor's follow calls.
type followHooks struct {
	// counts adds a push of what it counted; the first complete one
	// (possibly empty, More false) says it has stopped serving its service
	// ports, and that everything it showed there is in.
	counts func(reconfig.Counts)
	// migrated: its connection migration is over (it may not say so).
	migrated func(reconfig.MigrationDone)
	// gone runs as soon as it is gone for good (before it can exit, where
	// the style allows).
	gone func()
}

// endpoint is where successors reach this process.
type endpoint interface {
	// close stops being reachable. Safe to call more than once.
	close() error
	// handedOff reports whether a successor acked (its drain is under way).
	handedOff() bool
}

// successorHooks are what a style calls when a successor arrives.
type successorHooks struct {
	// export calls send with the identity and descriptor of every listener,
	// open while send runs.
	export func(send func([]ident.Spec, []int) error) error
	// manifest is what a MOSN-style manifest carries besides the sockets;
	// sent records what a sent manifest carried: what the successor has
	// before the pushes after its ack.
	manifest func() lineage
	sent     func(lineage)
	// freeze makes the service ports show the counters and histograms as
	// they are now, until a revert (see stats.Registry.Freeze).
	freeze func()
	// onAck: the successor serves; hand over to it (succ is never nil).
	onAck func(succ successor)
	// onFail: a handoff failed before the ack; nothing was stopped.
	onFail func(pid int, err error)
	// onRequest: a successor asks; an error refuses it (MOSN style).
	onRequest func(pid int) error
	// Envoy: the child takes admin over (pause it, return the first start),
	// asks for the stats (with the view applied), terminates us.
	pauseAdmin func() time.Time
	stats      func() []sample.Sample
	histograms func() []histsample.Histogram
	ticketKeys func() []tlsconf.TicketKey
	terminate  func()
}

// successor is the drain stream to the process that took over
// (*reconfig.Successor), seen from the old side.
type successor interface {
	PID() int
	ReportedPID() int // as it reports itself (0: unknown)
	MigrationTargets() []reconfig.MigrationTarget
	// Dropped: the sockets we handed over that it does not serve.
	Dropped() []ident.Spec
	Migrate(offers []reconfig.ConnOffer) (reconfig.MigrationResult, error)
	SendCounters(c reconfig.Counts) error
	MigrationDone(m reconfig.MigrationDone) error
	Bye() error
	// Watchable: its death can be told from its exit (see Released, Gone).
	Watchable() bool
	Released() <-chan struct{}
	Gone() <-chan struct{}
	Close() error
}

// handoverPolicy is what differs between the styles on the old side.
type handoverPolicy struct {
	// pushCounters: send the successor what we count while draining (MOSN);
	// the Envoy child pulls our stats instead.
	pushCounters bool
	// exitWhenDrained: exit once nothing is left (MOSN); an Envoy parent
	// waits to be terminated by its child.
	exitWhenDrained bool
	// watch is how long after the ack we keep our sockets and take over
	// again if the successor dies (upgrade_watch_period; 0: off).
	watch time.Duration
	// reclaim makes this process reachable again after such a takeover.
	reclaim func(ctx context.Context, h successorHooks) (endpoint, error)
	// drainTime and gradual say how what cannot move is asked to finish:
	// at once (MOSN, Envoy immediate), or each HTTP connection with a
	// probability growing over drainTime (Envoy gradual).
	drainTime time.Duration
	gradual   bool
}

// noSuccessor stands in when a successor sent no drain stream: nothing
// moves, nothing is watched.
type noSuccessor struct{ pid int }

func (n noSuccessor) PID() int                                   { return n.pid }
func (noSuccessor) ReportedPID() int                             { return 0 }
func (noSuccessor) MigrationTargets() []reconfig.MigrationTarget { return nil }
func (noSuccessor) Dropped() []ident.Spec                        { return nil }
func (noSuccessor) SendCounters(reconfig.Counts) error           { return nil }
func (noSuccessor) MigrationDone(reconfig.MigrationDone) error   { return nil }
func (noSuccessor) Bye() error                                   { return nil }
func (noSuccessor) Watchable() bool                              { return false }
func (noSuccessor) Released() <-chan struct{}                    { return nil }
func (noSuccessor) Gone() <-chan struct{}                        { return nil }
func (noSuccessor) Close() error                                 { return nil }
func (noSuccessor) Migrate([]reconfig.ConnOffer) (reconfig.MigrationResult, error) {
	return reconfig.MigrationResult{}, errNoStream
}
