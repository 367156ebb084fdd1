package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// upgradeEnv is one test's backends, ports and config variants.
type upgradeEnv struct {
	t        *testing.T
	dir, uds string
	p        ports
	web      *httpBackend
	echo     *echoBackend
	httpPort int
	tcpPort  int
	extra    int // a listener some configs add
}

func newUpgradeEnv(t *testing.T) *upgradeEnv {
	dir := t.TempDir()
	ps := freePorts(t, 6) // distinct: service ports and listeners
	return &upgradeEnv{
		t: t, dir: dir, uds: filepath.Join(dir, "uds"), p: ports{admin: ps[0], pprof: ps[1], metrics: ps[2]},
		web: newHTTPBackend(t, "web"), echo: newEchoBackend(t),
		httpPort: ps[3], tcpPort: ps[4], extra: ps[5],
	}
}

// config writes a config: version names the answer of /version; withExtra
// adds the "extra" listener.
func (e *upgradeEnv) config(name, version string, withExtra bool, graceful string) string {
	listeners := []obj{httpListener("web", addr(e.httpPort), "r"), tcpListener("tcp", addr(e.tcpPort), "echo")}
	if withExtra {
		listeners = append(listeners, httpListener("extra", addr(e.extra), "r"))
	}
	cfg := mosnConfig(e.uds, e.p, graceful, listeners,
		[]obj{router("r", "web", directRoute("/version", 200, version))},
		[]obj{cluster("web", e.web.addr()), cluster("echo", e.echo.addr())})
	cfg["handoff_timeout"] = "5s"
	return writeJSON(e.t, e.dir, name, cfg)
}

func waitReady(p *proc, generation int) {
	p.waitLog(fmt.Sprintf(`msg=ready .*generation=%d\b`, generation), readyTimeout)
}

func TestUpgradeUnderLoad(t *testing.T) {
	e := newUpgradeEnv(t)
	first := e.config("c1.json", "v1", false, "10s")
	cur := startMosn(t, "gen1", first, e.p)
	web, tcp := addr(e.httpPort), addr(e.tcpPort)

	l := newLoad()
	l.run("http keep-alive", 4, keepAliveHTTP(web, "/"))
	l.run("http conn-per-request", 2, connPerRequestHTTP(web, "/"))
	l.run("tcp streams", 4, tcpStreams(tcp, 30, 2*time.Millisecond))
	l.run("service ports", 2, serviceProbe(e.p))
	defer l.finish()

	type genFDs struct{ nonSocket, listening int }
	var fds []genFDs
	for i := 2; i <= 11; i++ {
		version := "v1"
		if i >= 8 {
			version = "v2" // a changed route
		}
		withExtra := i >= 4 && i <= 6 // a listener added, then removed
		cfg := e.config(fmt.Sprintf("c%d.json", i), version, withExtra, "10s")
		next := startProc(t, fmt.Sprintf("gen%d", i), "start", "-c", cfg)
		waitReady(next, i)
		if code := cur.wait(15 * time.Second); code != 0 {
			t.Fatalf("generation %d exited %d after handing off", i-1, code)
		}
		cur = next
		if code, body := get(t, "http://"+web+"/version"); code != 200 || body != version {
			t.Fatalf("after upgrade %d: /version = %d %q, want %q", i-1, code, body, version)
		}
		if withExtra {
			if code, _ := get(t, "http://"+addr(e.extra)+"/version"); code != 200 {
				t.Fatalf("after upgrade %d: added listener answers %d", i-1, code)
			}
		} else if conn, err := dialQuick(addr(e.extra)); err == nil {
			conn.Close()
			t.Fatalf("after upgrade %d: removed listener %s still accepts", i-1, addr(e.extra))
		}
		var info map[string]interface{}
		getJSON(t, e.p.adminURL("/server_info"), &info)
		if int(info["generation"].(float64)) != i || int(info["pid"].(float64)) != cur.pid() || info["state"] != "running" {
			t.Fatalf("after upgrade %d: server_info %v", i-1, info)
		}
		// The predecessor has exited: nothing drains any more, and uptime
		// counts from the first generation.
		if dp := int(info["draining_pid"].(float64)); dp != 0 {
			t.Fatalf("after upgrade %d: draining_pid %d though the old process exited", i-1, dp)
		}
		if all, own := info["uptime_all_epochs_seconds"].(float64), info["uptime_seconds"].(float64); all <= own {
			t.Fatalf("after upgrade %d: uptime across generations %v <= own uptime %v", i-1, all, own)
		}
		ns, ls := fdCounts(t, cur.pid())
		fds = append(fds, genFDs{ns, ls})
		wantListening := 3 + 2 + 1 // services, web+tcp, reconfig.sock
		if withExtra {
			wantListening++
		}
		if ls != wantListening {
			t.Errorf("generation %d holds %d listening sockets, want %d", i, ls, wantListening)
		}
	}
	time.Sleep(200 * time.Millisecond) // let the load run on the last generation a little
	l.finish()
	report := l.report()
	t.Logf("load:\n%s", report)
	for _, name := range l.order {
		tl := l.byName[name]
		if tl.failed.Load() != 0 || tl.ok.Load() == 0 {
			t.Errorf("%s: %s", name, tl)
		}
	}
	for i := 1; i < len(fds); i++ {
		if fds[i].nonSocket > fds[0].nonSocket {
			t.Errorf("non-socket fds grew across upgrades: %v", fds)
			break
		}
	}
	// Counters carried over: the last generation counted at least every
	// request the load saw.
	_, page := get(t, e.p.metricsURL())
	total := 0.0
	for k, v := range parseCounters(page) {
		if strings.HasPrefix(k, `mosnlite_http_downstream_rq_total{`) && strings.Contains(k, `listener="web"`) {
			total += v
		}
	}
	seen := float64(l.byName["http keep-alive"].ok.Load() + l.byName["http conn-per-request"].ok.Load())
	if total < seen {
		t.Errorf("requests counted across 10 upgrades = %v, but clients saw %v answered", total, seen)
	}
	c := parseCounters(page)
	if c["mosnlite_server_upgrades_total"] != 10 || c["mosnlite_server_upgrades_failed_total"] != 0 {
		t.Errorf("upgrade counters: done %v failed %v, want 10 and 0", c["mosnlite_server_upgrades_total"], c["mosnlite_server_upgrades_failed_total"])
	}
	for _, g := range []string{"mosnlite_server_last_handoff_duration_seconds ", "mosnlite_server_listeners_inherited 5", "mosnlite_server_hot_restart_generation 11"} {
		if !strings.Contains(page, "\n"+g) {
			t.Errorf("/metrics lacks %q", g)
		}
	}
}

// fdCounts returns how many of pid's fds are not sockets (nor transient
// /proc files), and how many are listening sockets (TCP LISTEN or unix
// SO_ACCEPTCON).
func fdCounts(t *testing.T, pid int) (nonSocket, listening int) {
	t.Helper()
	listen := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 9 && fs[3] == "0A" {
				listen[fs[9]] = true
			}
		}
	}
	b, _ := os.ReadFile("/proc/net/unix")
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fs := strings.Fields(line)
		if len(fs) > 6 {
			if flags, err := strconv.ParseUint(fs[3], 16, 32); err == nil && flags&0x10000 != 0 {
				listen[fs[6]] = true
			}
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	epolls := 0
	for _, en := range ents {
		target, err := os.Readlink(filepath.Join(dir, en.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(target, "/proc/") {
			continue // the process collector reads /proc/self/* during a scrape
		}
		if target == "anon_inode:[eventpoll]" {
			// The Go runtime's, and the HTTP engine's idle poller's, made
			// when a first keep-alive connection idles (so there or not at
			// a given moment, by the load's timing): more would be a leak.
			if epolls++; epolls <= 2 {
				continue
			}
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			if listen[strings.TrimSuffix(ino, "]")] {
				listening++
			}
			continue
		}
		nonSocket++
	}
	return nonSocket, listening
}

// A listener the new config drops is closed by the old process at the ack:
// its clients are refused at once rather than queued, unanswered, while
// the old process drains and watches its successor. (Before: it stayed
// open, paused, until the old process exited.)
func TestUpgradeDroppedListenerRefusedAtTheAck(t *testing.T) {
	e := newUpgradeEnv(t)
	gen1 := startMosn(t, "gen1", withWatch(t, e.config("c1.json", "v1", true, "10s"), "10s"), e.p)
	if code, _ := get(t, "http://"+addr(e.extra)+"/version"); code != 200 {
		t.Fatalf("extra listener answers %d", code)
	}
	gen2 := startProc(t, "gen2", "start", "-c", withWatch(t, e.config("c2.json", "v1", false, "10s"), "10s"))
	gen2.waitLog(`msg=ready`, readyTimeout)
	gen1.waitLog("listener dropped by the successor's config: closed", readyTimeout)
	if !gen1.running() {
		t.Fatal("gen1 exited before the check: the watch should keep it")
	}
	if conn, err := dialQuick(addr(e.extra)); err == nil {
		conn.Close()
		t.Fatalf("dropped listener %s still accepts while gen1 watches", addr(e.extra))
	}
}
