package server

import (
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/server/proxy"
	"github.com/mosnlite/mosnlite/service/stats"
)

// Batching of connections that park for a move: a batch goes out once no
// connection has parked for batchQuiet, batchMaxWait after its first one, or
// at batchMaxSize connections.
const (
	batchQuiet   = 5 * time.Millisecond
	batchMaxWait = 100 * time.Millisecond
	batchMaxSize = 1024
)

// migrationSender is what the outbound migration needs of reconfig.Server.
type migrationSender interface {
	Migrate(offers []reconfig.ConnOffer) (reconfig.MigrationResult, error)
}

// outbound moves the connections of a draining process to its successor:
// connections park themselves at safe points (see proxy.Migrator), and a
// goroutine sends them in batches. Connections the successor refuses, and
// every one after a batch failed, resume and drain here.
type outbound struct {
	send  migrationSender
	reg   *stats.Registry
	log   *logrus.Entry
	parts []*part // the parts whose connections move
	// takes is what the successor takes, by listener and kind: a
	// connection of another kind (a tunnel, for a successor that takes
	// none) stays here, without failing the batch of the others.
	takes    map[reconfig.MigrationTarget]bool
	onBatch  func() // after each batch (pushes the counters)
	onBroken func() // once, when migration failed for good

	wake chan struct{} // a connection parked
	stop chan struct{}
	done chan struct{} // the batching goroutine returned

	mu      sync.Mutex
	queue   []*proxy.Parked
	closed  bool
	broken  bool
	nextID  uint64
	moved   map[string]int // by kind
	failed  map[string]int
	carried int            // bytes handed over with moved connections (read, not yet written)
	atStart map[string]int // connections held at the start, by kind
	last    time.Time      // when the last batch was answered (zero: none yet)
	// now and after are the clock and timers batching runs on (the
	// server's effects; tests may pass fakes).
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

func newOutbound(send migrationSender, reg *stats.Registry, log *logrus.Entry, onBatch, onBroken func()) *outbound {
	return &outbound{
		send: send, reg: reg, log: log, onBatch: onBatch, onBroken: onBroken,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		moved: map[string]int{}, failed: map[string]int{}, atStart: map[string]int{},
		now: time.Now, after: time.After,
	}
}

// startMigration decides which parts' connections move (a proxy listener
// without disable_migration that the successor takes, by name and kind),
// and asks them to. Every other part is left to the drain.
func (s *Server) startMigration(send migrationSender, targets []reconfig.MigrationTarget, parts []*part, log *logrus.Entry, onBatch func()) *outbound {
	want := map[reconfig.MigrationTarget]bool{}
	for _, t := range targets {
		want[t] = true
	}
	var o *outbound
	o = newOutbound(send, s.reg, log, onBatch, func() {
		// Connections that were to move at their next request boundary
		// close there instead, as in a plain drain.
		for _, p := range o.parts {
			p.drain()
		}
	})
	if s.fx.now != nil {
		o.now = s.fx.now
	}
	o.takes = want
	for _, p := range parts {
		m, ok := p.proxy.(proxy.Migrator)
		if !ok {
			continue
		}
		o.atStart[m.Kind()] += p.active()
		if p.noMigration || !want[reconfig.MigrationTarget{Listener: p.spec.Name, Kind: m.Kind()}] {
			continue
		}
		o.parts = append(o.parts, p)
		o.counter(true, p.spec.Name, m.Kind())
		o.counter(false, p.spec.Name, m.Kind())
	}
	if len(o.parts) == 0 {
		close(o.done)
		return o
	}
	go o.run()
	for _, p := range o.parts {
		p.proxy.(proxy.Migrator).Migrate(o.enqueue)
	}
	return o
}

// migrating reports whether p's connections move rather than drain.
func (o *outbound) migrating(p *part) bool {
	for _, q := range o.parts {
		if q == p {
			return true
		}
	}
	return false
}

func (o *outbound) counter(moved bool, listener, kind string) *stats.Counter {
	ok, failed := stats.MigrationCounters(o.reg, listener, kind)
	if moved {
		return ok
	}
	return failed
}

// enqueue is where connections park; it never blocks.
func (o *outbound) enqueue(pk *proxy.Parked) {
	o.mu.Lock()
	if o.closed || o.broken || o.takes != nil && !o.takes[reconfig.MigrationTarget{Listener: pk.Listener, Kind: pk.Kind}] {
		o.mu.Unlock()
		o.fail(pk)
		return
	}
	o.queue = append(o.queue, pk)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// fail counts a connection that does not move and lets it carry on here.
func (o *outbound) fail(pk *proxy.Parked) {
	o.counter(false, pk.Listener, pk.Kind).Inc()
	o.mu.Lock()
	o.failed[pk.Kind]++
	o.mu.Unlock()
	pk.Resume()
}

func (o *outbound) run() {
	defer close(o.done)
	for {
		select {
		case <-o.wake:
		case <-o.stop:
			return
		}
		for {
			batch := o.collect()
			if len(batch) == 0 {
				break
			}
			o.sendBatch(batch)
		}
	}
}

// collect waits for the batch to fill (see batchQuiet) and takes it.
func (o *outbound) collect() []*proxy.Parked {
	limit := o.after(batchMaxWait)
	quiet := o.after(batchQuiet)
wait:
	for o.queued() < batchMaxSize {
		select {
		case <-o.wake:
			quiet = o.after(batchQuiet)
		case <-quiet:
			break wait
		case <-limit:
			break wait
		case <-o.stop:
			break wait
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := min(len(o.queue), batchMaxSize)
	batch := o.queue[:n:n]
	o.queue = o.queue[n:]
	return batch
}

func (o *outbound) queued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// sendBatch offers a batch and settles every connection in it.
func (o *outbound) sendBatch(batch []*proxy.Parked) {
	offers := make([]reconfig.ConnOffer, len(batch))
	byID := make(map[uint64]*proxy.Parked, len(batch))
	o.mu.Lock()
	for i, pk := range batch {
		o.nextID++
		started := pk.StartedAt
		if started.IsZero() {
			started = o.now()
		}
		offers[i] = reconfig.ConnOffer{
			ID: o.nextID, Listener: pk.Listener, Kind: pk.Kind, StartedAt: started,
			ToUpstream: pk.ToUpstream, ToDownstream: pk.ToDownstream,
			Buffered: pk.Buffered, Requests: pk.Requests, Files: pk.Files,
		}
		byID[o.nextID] = pk
	}
	o.mu.Unlock()

	res, err := o.send.Migrate(offers)
	if errors.Is(err, reconfig.ErrMigrationUnsettled) {
		// The successor, alive but silent, may serve any of them: resuming
		// one here would have two processes serve it. Our copies close.
		o.log.WithError(err).WithField("connections", len(batch)).Warn("migration: batch unsettled; its connections are left to the successor, all that remain drain here")
		for _, pk := range batch {
			o.counter(false, pk.Listener, pk.Kind).Inc()
			o.mu.Lock()
			o.failed[pk.Kind]++
			o.mu.Unlock()
			pk.Moved()
		}
		o.breakDown()
		o.answered()
		o.onBatch()
		return
	}
	if err != nil {
		o.log.WithError(err).WithField("connections", len(batch)).Warn("migration: batch failed; its connections, and all that remain, drain here")
		for _, pk := range batch {
			o.fail(pk)
		}
		o.breakDown()
		o.answered()
		o.onBatch()
		return
	}
	for _, id := range res.Accepted {
		pk := byID[id]
		// Counted before the connection lets go: the drain may end right after.
		o.counter(true, pk.Listener, pk.Kind).Inc()
		o.mu.Lock()
		o.moved[pk.Kind]++
		o.carried += pk.PendingBytes()
		o.mu.Unlock()
		pk.Moved()
	}
	var why string
	for id, reason := range res.Refused {
		pk := byID[id]
		o.log.WithFields(logrus.Fields{"listener": pk.Listener, "kind": pk.Kind, "reason": reason}).Debug("migration: successor refused a connection")
		why = reason
		o.fail(pk)
	}
	if len(res.Refused) > 0 {
		o.log.WithFields(logrus.Fields{"refused": len(res.Refused), "moved": len(res.Accepted), "reason": why}).Warn("migration: successor refused connections; they drain here")
	}
	o.answered()
	o.onBatch()
}

// answered records that a batch was settled now.
func (o *outbound) answered() {
	t := o.now()
	o.mu.Lock()
	o.last = t
	o.mu.Unlock()
}

// settled returns when the last batch was answered (zero if none was sent)
// and how many connections moved and failed to, so far.
func (o *outbound) settled() (last time.Time, moved, failed int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range o.moved {
		moved += n
	}
	for _, n := range o.failed {
		failed += n
	}
	return o.last, moved, failed
}

// breakDown stops migrating: whatever is queued, and whatever parks later,
// stays here.
func (o *outbound) breakDown() {
	o.mu.Lock()
	if o.broken {
		o.mu.Unlock()
		return
	}
	o.broken = true
	q := o.queue
	o.queue = nil
	o.mu.Unlock()
	for _, pk := range q {
		o.fail(pk)
	}
	o.onBroken()
}

// finish stops the batching (waiting for a batch in flight) and logs what
// moved, what failed to, and what drained here.
func (o *outbound) finish(log *logrus.Entry) {
	o.mu.Lock()
	already := o.closed
	o.closed = true
	q := o.queue
	o.queue = nil
	o.mu.Unlock()
	if already {
		return
	}
	close(o.stop)
	<-o.done
	for _, pk := range q {
		o.fail(pk)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	f := logrus.Fields{"pending_bytes_moved": o.carried}
	for _, kind := range []string{proxy.KindTCP, proxy.KindHTTP, proxy.KindTunnel} {
		f["moved_"+kind] = o.moved[kind]
		f["failed_"+kind] = o.failed[kind]
	}
	// An HTTP listener's connections were counted at the start as http,
	// tunnels among them.
	f["drained_"+proxy.KindTCP] = max(0, o.atStart[proxy.KindTCP]-o.moved[proxy.KindTCP])
	f["drained_"+proxy.KindHTTP] = max(0, o.atStart[proxy.KindHTTP]-o.moved[proxy.KindHTTP]-o.moved[proxy.KindTunnel])
	log.WithFields(f).Info("handoff: connection migration summary")
}
