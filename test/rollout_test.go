package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fleet is N mosnlite instances on this machine, each its own uds_dir,
// config, HTTP port and admin port, as a fleet of hosts or pods would be.
type fleet struct {
	t     *testing.T
	dir   string
	insts []*instance
}

type instance struct {
	name      string
	uds       string
	http      int
	p         ports
	first     *proc // the generation the test started
	extraPort int   // a listener some configs add (0: none)
}

func newFleet(t *testing.T, n int) *fleet {
	f := &fleet{t: t, dir: t.TempDir()}
	for i := 0; i < n; i++ {
		f.insts = append(f.insts, &instance{
			name: fmt.Sprintf("i%02d", i+1), uds: filepath.Join(f.dir, fmt.Sprintf("i%02d", i+1), "uds"),
			http: freePort(t), p: ports{admin: freePort(t)},
		})
	}
	// The processes the rollouts start run detached (start --daemon): stop
	// whatever serves each instance at the end.
	t.Cleanup(func() {
		for _, in := range f.insts {
			var info struct{ PID int }
			if code, body := getQuiet(in.p.adminURL("/server_info")); code == 200 && jsonInto(body, &info) == nil && info.PID > 0 {
				syscall.Kill(info.PID, syscall.SIGTERM)
				waitGone(t, info.PID, 20*time.Second)
			}
		}
	})
	return f
}

// config writes instance in's config answering version; with extra, it also
// listens on extra (a port the test may hold to make the start fail).
func (f *fleet) config(in *instance, version string, extra int) string {
	listeners := []obj{httpListener("web", addr(in.http), "r")}
	if extra != 0 {
		listeners = append(listeners, httpListener("extra", addr(extra), "r"))
	}
	cfg := obj{
		"uds_dir":         in.uds,
		"handoff_timeout": "10s",
		"servers": []obj{{
			"server_name": in.name, "default_log_level": "info", "graceful_timeout": "10s",
			"listeners": listeners,
			"routers":   []obj{{"router_config_name": "r", "virtual_hosts": []obj{{"name": "all", "domains": []string{"*"}, "routers": []obj{directRoute("/", 200, version)}}}}},
		}},
		"admin": obj{"address": addr(in.p.admin)},
	}
	dir := filepath.Dir(in.uds)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return writeJSON(f.t, dir, version+".json", cfg)
}

func (f *fleet) configs(version string, extra int) []string {
	var cs []string
	for _, in := range f.insts {
		cs = append(cs, f.config(in, version, extra))
	}
	return cs
}

// generation reports instance in's generation and the version it answers.
func (f *fleet) state(in *instance) (int, string) {
	f.t.Helper()
	var info struct{ Generation int }
	getJSON(f.t, in.p.adminURL("/server_info"), &info)
	_, body := get(f.t, "http://"+addr(in.http)+"/")
	return info.Generation, body
}

// rollout runs deploy/rollout.sh and returns its output and exit code.
func rollout(t *testing.T, args ...string) (string, int, time.Duration) {
	t.Helper()
	cmd := exec.Command("../deploy/rollout.sh", append([]string{"--mosnlite", binPath, "--wait-timeout", "30s"}, args...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	code := exitCode(err)
	t.Logf("rollout.sh exit %d in %s:\n%s", code, took.Round(time.Millisecond), out)
	return string(out), code, took
}

var okLine = regexp.MustCompile(`(?m)^  ok      (\S+) \(pid (\d+)\) in (\d+) ms$`)

func TestRolloutAcross20InstancesUnderLoad(t *testing.T) {
	const n = 20
	f := newFleet(t, n)
	for _, in := range f.insts {
		in.first = startMosn(t, in.name, f.config(in, "v1", 0), in.p)
	}
	l := newLoad()
	for _, in := range f.insts {
		l.run(in.name+" keep-alive", 1, keepAliveHTTP(addr(in.http), "/"))
	}
	for _, in := range f.insts[:4] {
		l.run(in.name+" conn-per-request", 1, connPerRequestHTTP(addr(in.http), "/"))
	}
	defer l.finish()

	out, code, took := rollout(t, append([]string{"--log-dir", filepath.Join(f.dir, "logs")}, f.configs("v2", 0)...)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("rollout done: %d of %d upgraded", n, n)) {
		t.Fatalf("rollout exit %d", code)
	}
	// Waves of 1, then 10% (2), then the rest (17), in that order.
	waves := regexp.MustCompile(`(?m)^wave (\d): (\d+) instance\(s\)$`).FindAllStringSubmatch(out, -1)
	if len(waves) != 3 || waves[0][2] != "1" || waves[1][2] != "2" || waves[2][2] != "17" {
		t.Fatalf("waves %v, want 1, 2, 17", waves)
	}
	oks := okLine.FindAllStringSubmatch(out, -1)
	if len(oks) != n {
		t.Fatalf("%d instances reported ok, want %d", len(oks), n)
	}
	var sum time.Duration
	for _, m := range oks {
		ms, _ := strconv.Atoi(m[3])
		sum += time.Duration(ms) * time.Millisecond
	}
	for _, in := range f.insts {
		if gen, body := f.state(in); gen != 2 || body != "v2" {
			t.Errorf("%s after the rollout: generation %d answering %q, want 2 and v2", in.name, gen, body)
		}
		if code := in.first.wait(20 * time.Second); code != 0 {
			t.Errorf("%s: the old process exited %d", in.name, code)
		}
	}
	time.Sleep(100 * time.Millisecond) // load on the new generation too
	l.finish()
	for _, name := range l.order {
		if tl := l.byName[name]; tl.failed.Load() != 0 || tl.ok.Load() == 0 {
			t.Errorf("%s: %s", name, tl)
		}
	}
	t.Logf("20 instances in %s of wall time; upgrades took %s in sum, %s on average", took.Round(time.Millisecond),
		sum.Round(time.Millisecond), (sum / n).Round(time.Millisecond))
	t.Log(fleetEstimate(out, 0))

	// Again with at most 2 upgrades at once (this machine's cores): the
	// wall time is then close to N × one handoff ÷ 2.
	l2 := newLoad()
	for _, in := range f.insts {
		l2.run(in.name+" keep-alive (2 at once)", 1, keepAliveHTTP(addr(in.http), "/"))
	}
	out, code, _ = rollout(t, append([]string{"--max-parallel", "2"}, f.configs("v2b", 0)...)...)
	l2.finish()
	if code != 0 {
		t.Fatalf("rollout --max-parallel 2: exit %d", code)
	}
	for _, name := range l2.order {
		if tl := l2.byName[name]; tl.failed.Load() != 0 {
			t.Errorf("%s: %s", name, tl)
		}
	}
	t.Log(fleetEstimate(out, 2))

	// A new config that validates but cannot start (its extra listener's
	// port is taken): the first wave fails, nothing else is touched, and
	// every instance serves on, the failed one included.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	out, code, _ = rollout(t, f.configs("v3", taken.Addr().(*net.TCPAddr).Port)...)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("rollout stopped: 0 upgraded, 1 failed, %d untouched", n-1)) {
		t.Fatalf("broken rollout: exit %d, want 1 and a stop after the first wave", code)
	}
	if strings.Contains(out, "wave 2") || !strings.Contains(out, "address already in use") {
		t.Fatalf("broken rollout went on past wave 1, or did not say why it failed")
	}
	if got := strings.Count(out, "\n  untouched "); got != n-1 {
		t.Fatalf("%d instances listed untouched, want %d", got, n-1)
	}
	// A config that does not validate: nothing is touched at all.
	bad := f.configs("v4", 0)
	os.WriteFile(bad[7], []byte(`{"servers": [`), 0o644)
	out, code, _ = rollout(t, bad...)
	if code != 1 || !strings.Contains(out, "no instance was touched") || !strings.Contains(out, bad[7]) || strings.Contains(out, "wave 1") {
		t.Fatalf("rollout with an invalid config: exit %d", code)
	}
	for _, in := range f.insts {
		if gen, body := f.state(in); gen != 3 || body != "v2b" {
			t.Errorf("%s after the failed rollouts: generation %d answering %q, want 3 and v2b", in.name, gen, body)
		}
	}
}

var waveLine = regexp.MustCompile(`(?m)^wave (\d) done in (\d+) ms$`)

// fleetEstimate compares a rollout's wall time with N × one handoff ÷ the
// wave width: one handoff is the first wave's (one instance alone), and
// each wave of n instances, width at a time (0: all), costs ⌈n/width⌉ of it.
func fleetEstimate(out string, width int) string {
	oks := okLine.FindAllStringSubmatch(out, -1)
	waves := waveLine.FindAllStringSubmatch(out, -1)
	sizes := regexp.MustCompile(`(?m)^wave \d: (\d+) instance\(s\)$`).FindAllStringSubmatch(out, -1)
	if len(oks) == 0 || len(waves) != len(sizes) {
		return "no estimate: " + out
	}
	one := time.Duration(atoi(oks[0][3])) * time.Millisecond
	var est, wall time.Duration
	var parts []string
	for i := range waves {
		n, w := atoi(sizes[i][1]), width
		if w == 0 || w > n {
			w = n
		}
		est += time.Duration((n+w-1)/w) * one
		ms := time.Duration(atoi(waves[i][2])) * time.Millisecond
		wall += ms
		parts = append(parts, fmt.Sprintf("wave %d: %d at %d at once, %s", i+1, n, w, ms))
	}
	return fmt.Sprintf("wall time %s (%s) against N × handoff ÷ width = %s (one handoff: %s)",
		wall, strings.Join(parts, "; "), est, one)
}
