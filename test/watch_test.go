package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// withWatch rewrites a config written by upgradeEnv.config with the given
// upgrade_watch_period (the fixture turns the watch off).
func withWatch(t *testing.T, path, watch string) string {
	t.Helper()
	return withTop(t, path, "upgrade_watch_period", watch)
}

// withTop sets a top-level field of the config at path.
func withTop(t *testing.T, path, key string, value interface{}) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]interface{}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg[key] = value
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitOK waits until the tally has counted n more successful requests.
func waitOK(t *testing.T, tl *tally, n int64, timeout time.Duration) {
	t.Helper()
	want := tl.ok.Load() + n
	deadline := time.Now().Add(timeout)
	for tl.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %s", tl)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A successor killed right after its ack: within upgrade_watch_period the
// old process serves again on every listener, takes reconfig.sock back, and
// can be upgraded at once. Only the connections the successor held die.
func TestWatchSuccessorKilledAtAck(t *testing.T) {
	e := newUpgradeEnv(t)
	c1 := withWatch(t, e.config("c1.json", "v1", false, "10s"), "5s")
	gen1 := startMosn(t, "gen1", c1, e.p)
	web := addr(e.httpPort)

	l := newLoad()
	l.run("http keep-alive", 8, keepAliveHTTP(web, "/"))
	l.run("http conn-per-request", 2, connPerRequestHTTP(web, "/"))
	defer l.finish()
	waitOK(t, l.byName["http keep-alive"], 200, 10*time.Second)

	gen2 := startProc(t, "gen2", "start", "-c", c1)
	gen2.waitLog("acked: old process stops accepting", readyTimeout)
	if err := gen2.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gen1.waitLog("successor died after the ack; serving again", 10*time.Second)
	gen2.wait(5 * time.Second)
	// Every connection opened from now on is served, by the old process.
	// Those the successor held may fail, and their failures may be
	// recorded later than this: they count apart (by dial time).
	for _, n := range l.order {
		l.byName[n].mark.Store(time.Now().UnixNano())
	}
	waitOK(t, l.byName["http keep-alive"], 500, 10*time.Second)
	waitOK(t, l.byName["http conn-per-request"], 50, 10*time.Second)
	var info map[string]interface{}
	getJSON(t, e.p.adminURL("/server_info"), &info)
	if int(info["pid"].(float64)) != gen1.pid() || info["state"] != "running" || int(info["generation"].(float64)) != 1 {
		t.Fatalf("after the successor died: server_info %v", info)
	}
	for _, n := range l.order {
		if f := l.byName[n].lateFailed.Load(); f != 0 {
			t.Errorf("%s: %d requests failed on connections opened after the old process served again", n, f)
		}
	}
	// What failed is what the dead successor held: each keep-alive client's
	// connection once, and connections it had accepted.
	t.Logf("requests failed around the successor's death: %s", l.report())
	if f := l.byName["http keep-alive"].failed.Load(); f > 8 {
		t.Errorf("%d keep-alive requests failed, want at most one per client (8)", f)
	}

	// Upgradable again at once: the old process took reconfig.sock back.
	gen3 := startProc(t, "gen3", "start", "-c", c1)
	waitReady(gen3, 2)
	if code := gen1.wait(20 * time.Second); code != 0 {
		t.Fatalf("gen1 exited %d after handing over to gen3", code)
	}
	waitOK(t, l.byName["http keep-alive"], 200, 10*time.Second)
	l.finish()
	_, page := get(t, e.p.metricsURL())
	if c := parseCounters(page); c["mosnlite_server_upgrades_reverted_total"] != 1 {
		t.Errorf("upgrades_reverted_total = %v, want 1", c["mosnlite_server_upgrades_reverted_total"])
	}
	if !strings.Contains(gen1.out.String(), "took reconfig.sock back") {
		t.Error("gen1 did not say it took reconfig.sock back")
	}
}

// Within the watch period the successor is upgraded again, or stopped: it
// releases its predecessor first, which exits and never serves again.
func TestWatchReleasedByTheNextUpgradeAndByStop(t *testing.T) {
	e := newUpgradeEnv(t)
	c := withWatch(t, e.config("c.json", "v1", false, "10s"), "30s")
	gen1 := startMosn(t, "gen1", c, e.p)
	gen2 := startProc(t, "gen2", "start", "-c", c)
	waitReady(gen2, 2)
	// An upgrade is refused while the previous generation still drains
	// into this one ("upgrade already in progress"): wait for its bye.
	gen2.waitLog("predecessor finished draining", readyTimeout)
	gen3 := startProc(t, "gen3", "start", "-c", c)
	waitReady(gen3, 3)
	// gen1 watched gen2 for 30s; gen2, upgraded, released it.
	if code := gen1.wait(10 * time.Second); code != 0 {
		t.Fatalf("gen1 exit %d", code)
	}
	// gen2 watches gen3; stopping gen3 releases it, and it exits.
	gen3.signal(syscall.SIGTERM)
	if code := gen3.wait(15 * time.Second); code != 0 {
		t.Fatalf("gen3 exit %d", code)
	}
	if code := gen2.wait(10 * time.Second); code != 0 {
		t.Fatalf("gen2 exit %d after gen3 stopped", code)
	}
	if strings.Contains(gen1.out.String()+gen2.out.String(), "serving again") {
		t.Fatal("a released predecessor served again")
	}
	if c, err := dialQuick(addr(e.httpPort)); err == nil {
		c.Close()
		t.Fatal("something still serves after the last process stopped")
	}
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// A successor that is stopped (SIGSTOP) right after its ack, while many idle
// keep-alive connections migrate to it, is slow, not dead: the old
// process's batch write times out, and that must not read as its death.
// The old one never serves again beside it; once the successor runs on it
// releases the old one, which drains and exits, and the successor serves
// alone. (Before: the old process closed the stream on its own write
// timeout, its watch took that for the successor's death, and it served
// again beside a live successor that owned reconfig.sock.)
func TestWatchStoppedSuccessorIsNotDead(t *testing.T) {
	e := newUpgradeEnv(t)
	c1 := withWatch(t, e.config("c1.json", "v1", false, "30s"), "10s")
	gen1 := startMosn(t, "gen1", c1, e.p)
	web := addr(e.httpPort)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 1500; i++ {
		c, err := net.Dial("tcp", web)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(readyTimeout))
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
	}
	gen2 := startProc(t, "gen2", "start", "-c", c1)
	gen2.waitLog("acked: old process stops accepting", readyTimeout)
	gen2.signal(syscall.SIGSTOP)
	// The old process's offers fill the stopped successor's socket: a batch
	// write times out (the migration's 2 s limit) and the rest drains here.
	gen1.waitLog("migration: batch (failed|unsettled)", readyTimeout)
	gen2.signal(syscall.SIGCONT)
	if code := gen1.wait(readyTimeout); code != 0 {
		t.Fatalf("gen1 exited %d", code)
	}
	if strings.Contains(gen1.out.String(), "serving again") {
		t.Fatal("gen1 served again while gen2 was only stopped")
	}
	if !gen2.running() {
		t.Fatal("gen2 is not running")
	}
	var info map[string]interface{}
	getJSON(t, e.p.adminURL("/server_info"), &info)
	if pid := int(info["pid"].(float64)); pid != gen2.pid() {
		t.Fatalf("admin answers from pid %d, want gen2 (%d)", pid, gen2.pid())
	}
}
