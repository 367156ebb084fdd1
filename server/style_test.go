package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/reconfig/envoy"
	"github.com/mosnlite/mosnlite/service/stats"
)

func quiet() *logrus.Entry {
	l, _ := test.NewNullLogger()
	return logrus.NewEntry(l)
}

func start(t *testing.T, o Options) *Server {
	t.Helper()
	return startWith(t, o, defaultEffects(o))
}

func startWith(t *testing.T, o Options, fx effects) *Server {
	t.Helper()
	s, err := newServer(o, fx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// Two processes' lifecycles in one, over the real reconfig.sock handoff: the
// successor takes every socket, the predecessor drains into it and exits.
func TestMOSNStyleHandoff(t *testing.T) {
	e := newEnv(t, "", "")
	e.cfg.UpgradeWatchPeriod = &config.Duration{}
	gen1 := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid()})
	mustGet(t, e.web, "/", "v1")
	c, br := keepAlive(t, e.web)
	gen2 := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid()})
	waitDone(t, gen1)
	mustGet(t, e.web, "/", "v1")
	mustGet(t, e.admin, "/server_info", `"generation": 2`)
	// The idle keep-alive connection moved, and is served by gen2.
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("moved connection: %q %v", line, err)
	}
	if gen2.m.upgrades.Value() != 1 {
		t.Fatalf("upgrades %v", gen2.m.upgrades.Value())
	}
	assertUpgradeRecorded(t, gen2, 2, 1)
	if err := gen2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.UDSDir, "reconfig.sock")); !os.IsNotExist(err) {
		t.Fatalf("reconfig.sock left after the last process stopped: %v", err)
	}
}

// Envoy's epochs in one process: epoch 1 takes admin and the listeners from
// epoch 0, which moves its connections over the drain stream and is
// terminated after --parent-shutdown-time-s.
func TestEnvoyStyleEpochs(t *testing.T) {
	e := newEnv(t, "", "")
	o := envoy.DefaultOptions()
	o.SocketPath = "@mosnlite-server-test-" + filepath.Base(e.dir)
	o.BaseID = 1 + os.Getpid()%100000
	o.ParentShutdownTime = time.Second
	o.DrainStrategy = envoy.DrainImmediate
	o.AdminAddressPath = filepath.Join(e.dir, "admin")
	e0 := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid(), Envoy: &EnvoyOptions{Options: o}})
	if b, _ := os.ReadFile(o.AdminAddressPath); string(b) != e.admin {
		t.Fatalf("--admin-address-path wrote %q, want %s", b, e.admin)
	}
	c, br := keepAlive(t, e.web)
	o.RestartEpoch = 1
	e1 := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid(), Envoy: &EnvoyOptions{Options: o}})
	mustGet(t, e.admin, "/server_info", `"state": "LIVE"`)
	if e1.ServerInfo().Generation != 2 || e1.ServerInfo().BaseID != o.BaseID {
		t.Fatalf("epoch 1 info %+v", e1.ServerInfo())
	}
	waitDone(t, e0) // terminated after a second
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("moved connection: %q %v", line, err)
	}
	deadline := time.Now().Add(wait)
	for e1.ServerInfo().DrainingPID != 0 {
		if time.Now().After(deadline) {
			t.Fatal("draining pid not cleared after the parent was terminated")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if e1.HotRestartVersion() != envoy.Version(false) {
		t.Fatal(e1.HotRestartVersion())
	}
	assertUpgradeRecorded(t, e1, 2, 1)
}

// An Envoy parent whose child asked it to drain says so: its endpoint
// reports the handoff and its handover is under way by the time the child
// has its reply, so that a stop then finds the handover. (Before: the
// drain ran asynchronously and handedOff always said false.)
func TestEnvoyStyleParentIsHandedOffOnceDrained(t *testing.T) {
	e := newEnv(t, "", "")
	o := envoy.DefaultOptions()
	o.SocketPath = "@mosnlite-server-test-ho-" + filepath.Base(e.dir)
	o.BaseID = 1 + (os.Getpid()+7)%100000
	o.ParentShutdownTime = time.Minute
	o.DrainStrategy = envoy.DrainImmediate
	e0 := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid(), Envoy: &EnvoyOptions{Options: o}})
	o.RestartEpoch = 1
	start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid(), Envoy: &EnvoyOptions{Options: o}})
	e0.mu.Lock()
	ep, h := e0.endpoint, e0.handover
	e0.mu.Unlock()
	if ep == nil || !ep.handedOff() || h == nil {
		t.Fatalf("parent after its child's drain: handedOff=%v handover=%v", ep != nil && ep.handedOff(), h != nil)
	}
}

// assertUpgradeRecorded checks what the successor s holds once its
// predecessor is gone: one handoff of its own and the predecessor's
// migration observed, and upgrade_info naming its generation and the
// connections it took.
func assertUpgradeRecorded(t *testing.T, s *Server, gen int, migrated int) {
	t.Helper()
	hs := s.reg.Histograms()
	if n := histOf(hs, stats.HandoffDuration).Count; n != 1 {
		t.Errorf("handoff histogram counts %d, want 1", n)
	}
	if n := histOf(hs, stats.MigrationDuration).Count; n != 1 {
		t.Errorf("migration histogram counts %d, want 1 (the predecessor's)", n)
	}
	var b strings.Builder
	if err := s.reg.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`server.upgrade_info{generation="%d",handoff_ms=`, gen)
	line := ""
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, want) {
			line = l
		}
	}
	if !strings.Contains(line, fmt.Sprintf(`migrated_connections="%d"}`, migrated)) {
		t.Errorf("upgrade_info: %q, want %s…, migrated_connections=%d", line, want, migrated)
	}
}

// A manifest too large with its histograms goes without them, and the first
// push after the ack carries them (in parts): the handoff succeeds and the
// successor holds every one.
func TestMOSNStyleHistogramsTooLargeForTheManifest(t *testing.T) {
	e := newEnv(t, "", "")
	e.cfg.UpgradeWatchPeriod = &config.Duration{}
	const limit = 16 << 10 // in place of 16 MiB
	small := func(o Options) *Server {
		t.Helper()
		fx := defaultEffects(o)
		fx.style = func(s *Server) handoffStyle { return &mosnStyle{s: s, frameLimit: limit} }
		return startWith(t, o, fx)
	}
	l, hook := test.NewNullLogger()
	gen1 := small(Options{Config: e.cfg, Log: logrus.NewEntry(l), PID: os.Getpid()})
	const series = 3
	for i := 0; i < series; i++ {
		big := strings.Repeat(string(rune('a'+i)), limit/2) // 3 halves: over the manifest's limit, each fits a frame
		gen1.reg.Histogram("big_seconds", "", nil, "k", big).ObserveSeconds(0.001 * float64(i+1))
	}
	gen2 := small(Options{Config: e.cfg, Log: quiet(), PID: os.Getpid()})
	waitDone(t, gen1)
	n := 0
	for _, h := range gen2.reg.Histograms() {
		if h.Name == "big_seconds" && h.Count == 1 {
			n++
		}
	}
	if n != series {
		t.Fatalf("the successor holds %d of the %d histograms", n, series)
	}
	warned := false
	for _, en := range hook.AllEntries() {
		warned = warned || strings.Contains(en.Message, "histograms left out of the manifest")
	}
	if !warned {
		t.Error("no warning that the histograms followed the ack")
	}
}

func TestEnvoyStyleDisabled(t *testing.T) {
	e := newEnv(t, "", "")
	o := envoy.DefaultOptions()
	o.DisableHotRestart = true
	s := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid(), Envoy: &EnvoyOptions{Options: o}})
	if s.HotRestartVersion() != "disabled" || s.ServerInfo().State != "LIVE" {
		t.Fatalf("%s %+v", s.HotRestartVersion(), s.ServerInfo())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	refused(t, e.web)
}

// A child stopping for good terminates a parent that still drains.
func TestEnvoyStyleStopTerminatesParent(t *testing.T) {
	e := newEnv(t, "", "")
	o := envoy.DefaultOptions()
	o.SocketPath = "@mosnlite-server-stop-" + filepath.Base(e.dir)
	o.BaseID = 1 + (os.Getpid()+7)%100000
	o.ParentShutdownTime = time.Hour
	e0 := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid(), Envoy: &EnvoyOptions{Options: o}})
	o.RestartEpoch = 1
	e1 := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid(), Envoy: &EnvoyOptions{Options: o}})
	notDone(t, e0)
	e1.Quit()
	<-e1.QuitRequested()
	if err := e1.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, e0)
	refused(t, e.web)
}

// A successor that fails before its ack tells the predecessor, which carries
// on serving, reachable for the next upgrade.
func TestMOSNStyleFailedSuccessor(t *testing.T) {
	e := newEnv(t, "", "")
	e.cfg.UpgradeWatchPeriod = &config.Duration{}
	gen1 := start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid()})
	if gen1.UDSDir() != e.cfg.UDSDir {
		t.Fatal(gen1.UDSDir())
	}
	bad := *e.cfg
	busy := freeAddr(t)
	hold, err := netListen(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	srvs := append([]config.Server(nil), bad.Servers...)
	srvs[0].Listeners = append(append([]config.Listener(nil), srvs[0].Listeners...), srvs[0].Listeners[0])
	srvs[0].Listeners[1].Name, srvs[0].Listeners[1].Address = "taken", busy
	bad.Servers = srvs
	gen2, err := New(Options{Config: &bad, Log: quiet(), PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if err := gen2.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("Start = %v", err)
	}
	deadline := time.Now().Add(wait)
	for gen1.m.upgradesFailed.Value() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the predecessor did not count the failed upgrade")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustGet(t, e.web, "/", "v1")
	start(t, Options{Config: e.cfg, Log: quiet(), PID: os.Getpid()})
	waitDone(t, gen1)
}
