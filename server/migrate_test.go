package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/server/proxy"
	"github.com/mosnlite/mosnlite/service/stats"
)

// fakeSender answers batches as told and records them.
type fakeSender struct {
	mu      sync.Mutex
	batches [][]reconfig.ConnOffer
	answer  func([]reconfig.ConnOffer) (reconfig.MigrationResult, error)
}

func (f *fakeSender) Migrate(offers []reconfig.ConnOffer) (reconfig.MigrationResult, error) {
	f.mu.Lock()
	f.batches = append(f.batches, offers)
	f.mu.Unlock()
	return f.answer(offers)
}

// fakeMigrator is a proxy whose connections park when asked.
type fakeMigrator struct {
	kind  string
	conns []*proxy.Parked
	asked chan func(*proxy.Parked)
	drain chan struct{}
}

func (m *fakeMigrator) Serve(net.Listener) error         { return nil }
func (m *fakeMigrator) Drain()                           { close(m.drain) }
func (m *fakeMigrator) CloseAll()                        {}
func (m *fakeMigrator) Wait(context.Context) error       { return nil }
func (m *fakeMigrator) Active() int                      { return len(m.conns) }
func (m *fakeMigrator) Kind() string                     { return m.kind }
func (m *fakeMigrator) Migrate(park func(*proxy.Parked)) { m.asked <- park }
func (m *fakeMigrator) Adopt(proxy.Handover) (proxy.Held, error) {
	return nil, errors.New("not here")
}

// parkedConn is a connection that records the decision about it.
func parkedConn(listener, kind string, pending int) (*proxy.Parked, chan bool) {
	d := make(chan bool, 1)
	return proxy.NewParked(proxy.Handover{Listener: listener, Kind: kind, StartedAt: time.Now(), Buffered: make([]byte, pending)},
		func(moved bool) { d <- moved }), d
}

func decided(t *testing.T, d chan bool) bool {
	t.Helper()
	select {
	case moved := <-d:
		return moved
	case <-time.After(5 * time.Second):
		t.Fatal("no decision")
		return false
	}
}

func testServer(t *testing.T) (*Server, *test.Hook) {
	t.Helper()
	l, hook := test.NewNullLogger()
	l.SetOutput(io.Discard)
	return &Server{reg: stats.New(), log: logrus.NewEntry(l)}, hook
}

func part1(name string, m *fakeMigrator, noMigration bool) *part {
	return &part{spec: listener.Spec{Name: name}, proxy: m, noMigration: noMigration}
}

func TestOutboundSettlesEveryConnection(t *testing.T) {
	s, hook := testServer(t)
	web := &fakeMigrator{kind: proxy.KindHTTP, asked: make(chan func(*proxy.Parked), 1), drain: make(chan struct{})}
	tcp := &fakeMigrator{kind: proxy.KindTCP, asked: make(chan func(*proxy.Parked), 1), drain: make(chan struct{})}
	pinned := &fakeMigrator{kind: proxy.KindTCP, asked: make(chan func(*proxy.Parked), 1), drain: make(chan struct{})}
	web.conns = make([]*proxy.Parked, 2)    // a and b below
	tcp.conns = make([]*proxy.Parked, 1)    // c below
	pinned.conns = make([]*proxy.Parked, 2) // two sessions that stay
	send := &fakeSender{answer: func(offers []reconfig.ConnOffer) (reconfig.MigrationResult, error) {
		r := reconfig.MigrationResult{Refused: map[uint64]string{}}
		for _, o := range offers {
			if o.Listener == "web" && len(o.Buffered) == 2 {
				r.Refused[o.ID] = "full"
			} else {
				r.Accepted = append(r.Accepted, o.ID)
			}
		}
		return r, nil
	}}
	batches := 0
	targets := []reconfig.MigrationTarget{{Listener: "web", Kind: "http"}, {Listener: "tcp", Kind: "tcp"}, {Listener: "pinned", Kind: "tcp"}}
	parts := []*part{part1("web", web, false), part1("tcp", tcp, false), part1("pinned", pinned, true)}
	o := s.startMigration(send, targets, parts, s.log, func() { batches++ })
	if !o.migrating(parts[0]) || !o.migrating(parts[1]) || o.migrating(parts[2]) {
		t.Fatal("wrong parts migrate: disable_migration must keep its connections")
	}
	parkWeb, parkTCP := <-web.asked, <-tcp.asked
	if len(pinned.asked) != 0 {
		t.Fatal("a listener with disable_migration was asked to move its connections")
	}
	a, da := parkedConn("web", "http", 1)
	b, db := parkedConn("web", "http", 2) // refused
	c, dc := parkedConn("tcp", "tcp", 0)
	parkWeb(a)
	parkWeb(b)
	parkTCP(c)
	if !decided(t, da) || decided(t, db) || !decided(t, dc) {
		t.Fatal("want a and c moved, b resumed")
	}
	o.finish(s.log)
	// Parked after the end: resumed at once.
	d, dd := parkedConn("tcp", "tcp", 0)
	parkTCP(d)
	if decided(t, dd) {
		t.Fatal("a connection parked after finish moved")
	}
	if batches == 0 {
		t.Fatal("no counter push after a batch")
	}
	for _, tc := range []struct {
		name, listener, kind string
		want                 float64
	}{
		{"server.connections_migrated_total", "web", "http", 1},
		{"server.connections_migrated_total", "tcp", "tcp", 1},
		{"server.connection_migrations_failed_total", "web", "http", 1},
		{"server.connection_migrations_failed_total", "tcp", "tcp", 1},
	} {
		if got := s.reg.Counter(tc.name, "", "listener", tc.listener, "kind", tc.kind).Value(); got != tc.want {
			t.Errorf("%s{%s,%s} = %v, want %v", tc.name, tc.listener, tc.kind, got, tc.want)
		}
	}
	e := hook.LastEntry()
	if e == nil || !strings.Contains(e.Message, "migration summary") || e.Data["moved_http"] != 1 || e.Data["failed_http"] != 1 ||
		e.Data["moved_tcp"] != 1 || e.Data["drained_tcp"] != 2 || e.Data["drained_http"] != 1 || e.Data["pending_bytes_moved"] != 1 {
		t.Fatalf("summary: %v", e)
	}
}

func TestOutboundBatchFailureResumesAllAndDrains(t *testing.T) {
	s, _ := testServer(t)
	web := &fakeMigrator{kind: proxy.KindHTTP, asked: make(chan func(*proxy.Parked), 1), drain: make(chan struct{})}
	send := &fakeSender{answer: func([]reconfig.ConnOffer) (reconfig.MigrationResult, error) {
		return reconfig.MigrationResult{}, errors.New("new process gone")
	}}
	o := s.startMigration(send, []reconfig.MigrationTarget{{Listener: "web", Kind: "http"}}, []*part{part1("web", web, false)}, s.log, func() {})
	park := <-web.asked
	a, da := parkedConn("web", "http", 0)
	park(a)
	if decided(t, da) {
		t.Fatal("moved although the batch failed")
	}
	select {
	case <-web.drain: // the rest (mid-request) drains as in a plain upgrade
	case <-time.After(5 * time.Second):
		t.Fatal("the listener was not drained after the failure")
	}
	b, db := parkedConn("web", "http", 0)
	park(b)
	if decided(t, db) {
		t.Fatal("moved after migration broke")
	}
	o.finish(s.log)
	if len(send.batches) != 1 {
		t.Fatalf("%d batches sent, want 1: nothing after a failure", len(send.batches))
	}
	if got := s.reg.Counter("server.connection_migrations_failed_total", "", "listener", "web", "kind", "http").Value(); got != 2 {
		t.Fatalf("failed = %v, want 2", got)
	}
}

func TestNoTargetsNoMigration(t *testing.T) {
	s, _ := testServer(t)
	web := &fakeMigrator{kind: proxy.KindHTTP, asked: make(chan func(*proxy.Parked), 1), drain: make(chan struct{})}
	p := part1("web", web, false)
	o := s.startMigration(&fakeSender{}, nil, []*part{p}, s.log, func() {})
	if o.migrating(p) || len(web.asked) != 0 {
		t.Fatal("migrating with a successor that takes nothing")
	}
	o.finish(s.log)
}

func TestAdopterRoutesByListenerAndKind(t *testing.T) {
	s, _ := testServer(t)
	s.plane = &plane{parts: []*part{
		part1("web", &fakeMigrator{kind: proxy.KindHTTP}, false),
		part1("tcp", &fakeMigrator{kind: proxy.KindTCP}, false),
		part1("pinned", &fakeMigrator{kind: proxy.KindTCP}, true),
	}}
	targets, a := s.migrationTargets()
	want := []reconfig.MigrationTarget{{Listener: "web", Kind: "http"}, {Listener: "web", Kind: "http_tunnel"}, {Listener: "tcp", Kind: "tcp"}}
	if !slices.Equal(targets, want) {
		t.Fatalf("targets = %v, want %v", targets, want)
	}
	for _, tc := range []struct {
		o    reconfig.ConnOffer
		want string
	}{
		{reconfig.ConnOffer{ID: 1, Listener: "pinned", Kind: "tcp"}, `no listener "pinned"`},
		{reconfig.ConnOffer{ID: 2, Listener: "web", Kind: "tcp"}, "is http here"},
		{reconfig.ConnOffer{ID: 3, Listener: "tcp", Kind: "tcp"}, "not here"},
		{reconfig.ConnOffer{ID: 4, Listener: "web", Kind: "http_tunnel"}, "not here"}, // to the HTTP listener's Adopt
		{reconfig.ConnOffer{ID: 5, Listener: "tcp", Kind: "http_tunnel"}, "is tcp here"},
	} {
		if err := a.Hold(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Hold(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// A successor that takes an HTTP listener's connections but not its
// tunnels (an older version): a tunnel stays here, and the batch of the
// others goes on.
func TestOutboundKeepsKindsTheSuccessorDoesNotTake(t *testing.T) {
	s, hook := testServer(t)
	web := &fakeMigrator{kind: proxy.KindHTTP, asked: make(chan func(*proxy.Parked), 1), drain: make(chan struct{})}
	web.conns = make([]*proxy.Parked, 2)
	send := &fakeSender{answer: func(offers []reconfig.ConnOffer) (reconfig.MigrationResult, error) {
		r := reconfig.MigrationResult{}
		for _, o := range offers {
			if o.Kind != "http" {
				return reconfig.MigrationResult{}, fmt.Errorf("offered a %s connection", o.Kind)
			}
			r.Accepted = append(r.Accepted, o.ID)
		}
		return r, nil
	}}
	o := s.startMigration(send, []reconfig.MigrationTarget{{Listener: "web", Kind: "http"}}, []*part{part1("web", web, false)}, s.log, func() {})
	park := <-web.asked
	tun, dt := parkedConn("web", proxy.KindTunnel, 0)
	park(tun)
	if decided(t, dt) {
		t.Fatal("a tunnel moved to a successor that takes none")
	}
	a, da := parkedConn("web", "http", 0)
	park(a)
	if !decided(t, da) {
		t.Fatal("the http connection did not move")
	}
	o.finish(s.log)
	if got := s.reg.Counter("server.connection_migrations_failed_total", "", "listener", "web", "kind", "http_tunnel").Value(); got != 1 {
		t.Fatalf("failed tunnels = %v, want 1", got)
	}
	e := hook.LastEntry()
	if e == nil || e.Data["moved_http"] != 1 || e.Data["failed_http_tunnel"] != 1 || e.Data["drained_http"] != 1 {
		t.Fatalf("summary: %v", e)
	}
}
