package test

import (
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Envoy's own hot-restart drill — epoch 0, then 1, then 2, with
// --parent-shutdown-time-s 3 and the default (gradual, 600 s) drain — under
// 8 closed-loop keep-alive clients: a parent told to drain moves its idle
// HTTP connections to the child, the rest close at request boundaries, and
// no request fails.
func TestEnvoyEpochsUnderKeepAliveLoad(t *testing.T) {
	e := &envoyEnv{upgradeEnv: newUpgradeEnv(t)}
	e.cfg = e.config("c.json", "v1", false, "5s")
	e.base = 3000 + os.Getpid()%50000
	p0 := e.epoch(0)
	e.waitGeneration(1)

	l := newLoad()
	l.run("http keep-alive", 8, keepAliveHTTP(addr(e.httpPort), "/"))
	defer l.finish()
	ka := l.byName["http keep-alive"]
	waitOK(t, ka, 200, 10*time.Second)

	p1 := e.epoch(1, "--parent-shutdown-time-s", "3")
	e.waitGeneration(2)
	waitOK(t, ka, 200, 10*time.Second)
	if code := p0.wait(15 * time.Second); code != 0 {
		t.Fatalf("epoch 0 exit %d", code)
	}
	p2 := e.epoch(2, "--parent-shutdown-time-s", "3")
	e.waitGeneration(3)
	if code := p1.wait(15 * time.Second); code != 0 {
		t.Fatalf("epoch 1 exit %d", code)
	}
	waitOK(t, ka, 500, 10*time.Second)
	l.finish()
	if ka.failed.Load() != 0 {
		t.Errorf("across epochs 0 → 1 → 2: %s", ka)
	}
	t.Logf("across epochs 0 → 1 → 2: %s", ka)
	moved, _ := strconv.Atoi(e.stat(`server.connections_migrated_total{listener="web",kind="http"}`))
	if moved < 8 {
		t.Errorf("connections moved across two hot restarts: %d, want every client's at least once", moved)
	}
	p2.signal(syscall.SIGTERM)
	if code := p2.wait(10 * time.Second); code != 0 {
		t.Fatalf("epoch 2 exit %d after SIGTERM", code)
	}
}
