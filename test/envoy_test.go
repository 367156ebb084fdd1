package test

import (
	"fmt"
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

// envoyEnv is a config plus the Envoy-style flags shared by every epoch.
type envoyEnv struct {
	*upgradeEnv
	cfg  string
	base int
}

func (e *envoyEnv) epoch(n int, extra ...string) *proc {
	e.t.Helper()
	args := append([]string{"-c", e.cfg, "--restart-epoch", strconv.Itoa(n), "--base-id", strconv.Itoa(e.base)}, extra...)
	return startProc(e.t, fmt.Sprintf("epoch%d", n), args...)
}

// serverInfo reads /server_info.
func (e *envoyEnv) serverInfo() map[string]interface{} {
	e.t.Helper()
	var info map[string]interface{}
	getJSON(e.t, e.p.adminURL("/server_info"), &info)
	return info
}

// waitGeneration polls admin until the process of generation gen serves it.
func (e *envoyEnv) waitGeneration(gen int) map[string]interface{} {
	e.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		info := map[string]interface{}{}
		code, body := getQuiet(e.p.adminURL("/server_info"))
		if code == 200 && jsonInto(body, &info) == nil && int(info["generation"].(float64)) == gen && info["state"] == "LIVE" {
			return info
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no generation %d on admin: %d %s", gen, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *envoyEnv) stat(name string) string {
	e.t.Helper()
	_, body := get(e.t, e.p.adminURL("/stats"))
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("/stats lacks %s:\n%s", name, body)
	}
	return m[1]
}

func TestEnvoyHotRestartEpochs(t *testing.T) {
	e := &envoyEnv{upgradeEnv: newUpgradeEnv(t)}
	e.cfg = e.config("c.json", "v1", false, "5s")

	// Validate mode, and the version on the command line.
	if out, err := exec.Command(binPath, "--mode", "validate", "-c", e.cfg).CombinedOutput(); err != nil {
		t.Fatalf("--mode validate: %v %s", err, out)
	}
	bad := filepath.Join(e.dir, "bad.json")
	os.WriteFile(bad, []byte(`{"servers":[]}`), 0o644)
	if out, err := exec.Command(binPath, "--mode", "validate", "-c", bad).CombinedOutput(); exitCode(err) != 1 {
		t.Fatalf("--mode validate on a bad config: %v %s", err, out)
	}
	out, err := exec.Command(binPath, "--hot-restart-version").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(out))
	if dis, _ := exec.Command(binPath, "--hot-restart-version", "--disable-hot-restart").CombinedOutput(); strings.TrimSpace(string(dis)) != "disabled" {
		t.Fatalf("--disable-hot-restart version: %q", dis)
	}
	if out, err := exec.Command(binPath, "-c", e.cfg, "--restart-epoch", "1", "--use-dynamic-base-id").CombinedOutput(); exitCode(err) != 1 || !strings.Contains(string(out), "dynamic") {
		t.Fatalf("dynamic base id with epoch 1: %v %s", err, out)
	}

	// Epoch 0 with a dynamic base id written to a file.
	idFile := filepath.Join(e.dir, "base-id")
	adminFile := filepath.Join(e.dir, "admin-address")
	p0 := startProc(t, "epoch0", "-c", e.cfg, "--restart-epoch", "0", "--use-dynamic-base-id", "--base-id-path", idFile,
		"--admin-address-path", adminFile, "--drain-time-s", "1", "--drain-strategy", "immediate")
	info := e.waitGeneration(1)
	b, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	e.base, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("base id file %q: %v", b, err)
	}
	if a, _ := os.ReadFile(adminFile); strings.TrimSpace(string(a)) != addr(e.p.admin) {
		t.Fatalf("--admin-address-path wrote %q, want %s", a, addr(e.p.admin))
	}
	if _, body := get(t, e.p.adminURL("/hot_restart_version")); strings.TrimSpace(body) != version {
		t.Fatalf("admin hot_restart_version %q, command line %q", body, version)
	}
	opts := info["command_line_options"].(map[string]interface{})
	if opts["base_id"] != strconv.Itoa(e.base) || opts["restart_epoch"].(float64) != 0 {
		t.Fatalf("command_line_options %v", opts)
	}
	if e.stat("server.hot_restart_generation") != "1" || e.stat("server.live") != "1" {
		t.Fatal("epoch 0 stats")
	}
	// A second process on the same base id is refused with a hint.
	if out, err := exec.Command(binPath, "-c", e.cfg, "--restart-epoch", "0", "--base-id", strconv.Itoa(e.base)).CombinedOutput(); exitCode(err) != 1 || !strings.Contains(string(out), "--base-id") {
		t.Fatalf("a clashing base id: %v %s", err, out)
	}

	// SIGUSR1 (log reopen) and SIGHUP are survived by the same pid.
	p0.signal(syscall.SIGUSR1)
	p0.signal(syscall.SIGHUP)
	p0.waitLog("SIGHUP ignored", 5*time.Second)
	if info := e.serverInfo(); int(info["pid"].(float64)) != p0.pid() || !p0.running() {
		t.Fatalf("after SIGUSR1 and SIGHUP: %v", info)
	}
	var before map[string]interface{}
	getJSON(t, e.p.adminURL("/listeners?format=json"), &before)

	l := newLoad()
	l.run("http keep-alive", 2, keepAliveHTTP(addr(e.httpPort), "/"))
	l.run("http conn-per-request", 1, connPerRequestHTTP(addr(e.httpPort), "/"))
	// TCP sessions are not drained the Envoy way: they run until their
	// process is terminated. Short streams run across the 0→1 restart and
	// end before epoch 2 terminates epoch 0.
	tl := newLoad()
	tl.run("tcp streams", 2, tcpStreams(addr(e.tcpPort), 20, time.Millisecond))

	// Epoch 1 inherits the listeners: addresses unchanged, generation 2.
	p1 := e.epoch(1, "--drain-time-s", "1", "--drain-strategy", "immediate", "--parent-shutdown-time-s", "60")
	info = e.waitGeneration(2)
	if int(info["pid"].(float64)) != p1.pid() {
		t.Fatalf("generation 2 pid %v, want %d", info["pid"], p1.pid())
	}
	var after map[string]interface{}
	getJSON(t, e.p.adminURL("/listeners?format=json"), &after)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("listeners changed across the hot restart:\n%v\n%v", before, after)
	}
	if e.stat("server.hot_restart_generation") != "2" || e.stat("server.live") != "1" {
		t.Fatal("epoch 1 stats")
	}
	if !p0.running() {
		t.Fatal("epoch 0 exited before its parent-shutdown time")
	}
	// Counters continue across epochs.
	if n, _ := strconv.Atoi(e.stat(`listener.downstream_cx_total{listener="web"}`)); n == 0 {
		t.Fatal("downstream_cx_total restarted from zero")
	}

	tl.finish()
	if tt := tl.byName["tcp streams"]; tt.failed.Load() != 0 || tt.ok.Load() == 0 {
		t.Errorf("tcp streams across epoch 0→1: %s", tt)
	}
	// The gauge includes epoch 0's sessions while it lives: wait until none is left.
	deadline := time.Now().Add(10 * time.Second)
	for e.stat(`listener.downstream_cx_active{listener="tcp"}`) != "0" {
		if time.Now().After(deadline) {
			t.Fatal("TCP sessions still open 10 s after the streams ended")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Epoch 2 with --parent-shutdown-time-s 3: epoch 0 ends at once, epoch 1 after about 3 s.
	start := time.Now()
	p2 := e.epoch(2, "--drain-time-s", "1", "--drain-strategy", "immediate", "--parent-shutdown-time-s", "3")
	if code := p0.wait(5 * time.Second); code != 0 {
		t.Fatalf("epoch 0 exit %d", code)
	}
	t0 := time.Since(start)
	e.waitGeneration(3)
	if code := p1.wait(10 * time.Second); code != 0 {
		t.Fatalf("epoch 1 exit %d", code)
	}
	t1 := time.Since(start)
	if t0 > 2*time.Second || t1 < 2500*time.Millisecond || t1 > 6*time.Second {
		t.Fatalf("epoch 0 ended after %s (want at once), epoch 1 after %s (want about 3s)", t0, t1)
	}
	if e.stat("server.hot_restart_generation") != "3" || e.stat("server.live") != "1" {
		t.Fatal("epoch 2 stats")
	}
	l.finish()
	for _, name := range l.order {
		if tl := l.byName[name]; tl.failed.Load() != 0 || tl.ok.Load() == 0 {
			t.Errorf("%s across the epochs: %s", name, tl)
		}
	}
	p2.signal(syscall.SIGTERM)
	if code := p2.wait(10 * time.Second); code != 0 {
		t.Fatalf("epoch 2 exit %d after SIGTERM", code)
	}
}

func TestEnvoyFilesystemSocketPath(t *testing.T) {
	e := &envoyEnv{upgradeEnv: newUpgradeEnv(t)}
	e.cfg = e.config("c.json", "v1", false, "5s")
	e.base = 1000 + os.Getpid()%50000
	sock := filepath.Join(e.dir, "hr")
	flags := []string{"--socket-path", sock, "--socket-mode", "640", "--drain-time-s", "1", "--parent-shutdown-time-s", "1"}
	p0 := e.epoch(0, flags...)
	e.waitGeneration(1)
	name := fmt.Sprintf("%s_parent_%d", sock, e.base*10)
	st, err := os.Stat(name)
	if err != nil || st.Mode().Perm() != 0o640 || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s: %v %v, want a 0640 socket", name, st, err)
	}
	p1 := e.epoch(1, flags...)
	e.waitGeneration(2)
	if code := p0.wait(10 * time.Second); code != 0 {
		t.Fatalf("epoch 0 exit %d", code)
	}
	e.assertServes("v1")
	child := fmt.Sprintf("%s_parent_%d", sock, e.base*10+1)
	if st, err := os.Stat(child); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("%s: %v %v", child, st, err)
	}
	p1.signal(syscall.SIGTERM)
	p1.wait(10 * time.Second)
}

func TestHotRestarterWrapper(t *testing.T) {
	e := &envoyEnv{upgradeEnv: newUpgradeEnv(t)}
	e.cfg = e.config("c.json", "v1", false, "5s")
	e.base = 2000 + os.Getpid()%50000
	script := filepath.Join(e.dir, "start.sh")
	os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
exec %s -c %s --restart-epoch "$RESTART_EPOCH" --base-id %d --drain-time-s 1 --parent-shutdown-time-s 2
`, binPath, e.cfg, e.base)), 0o755)

	w := startProc(t, "hot-restarter", "hot-restarter", script)
	e.waitGeneration(1)
	w.signal(syscall.SIGUSR1) // forwarded: the child reopens its logs and lives on
	w.waitLog("log files reopened", 5*time.Second)
	w.signal(syscall.SIGHUP)
	e.waitGeneration(2)
	e.assertServes("v1")
	w.signal(syscall.SIGTERM)
	if code := w.wait(40 * time.Second); code != 0 {
		t.Fatalf("wrapper exit %d after SIGTERM, want 0", code)
	}
	if c, err := dialQuick(addr(e.httpPort)); err == nil {
		c.Close()
		t.Fatal("a child still serves after the wrapper exited")
	}

	// PR_SET_PDEATHSIG: a child ends when the wrapper that started it is
	// killed outright, instead of living on unsupervised.
	w3 := startProc(t, "hot-restarter-killed", "hot-restarter", script)
	child := int(e.waitGeneration(1)["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	w3.signal(syscall.SIGKILL)
	w3.wait(5 * time.Second)
	waitGone(t, child, 10*time.Second)

	// A child that fails takes the wrapper down with exit 1.
	bad := filepath.Join(e.dir, "bad.sh")
	os.WriteFile(bad, []byte("#!/bin/sh\nexit 3\n"), 0o755)
	w2 := startProc(t, "hot-restarter-bad", "hot-restarter", bad)
	if code := w2.wait(10 * time.Second); code != 1 {
		t.Fatalf("wrapper exit %d after a child exited 3, want 1", code)
	}
}
