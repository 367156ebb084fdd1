package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// containerScript runs mosnlite as a pod's container runs it: in mount and
// PID namespaces of its own (unshare), the network namespace shared, and
// only the uds_dir shared with the other container, as an emptyDir is.
// /tmp is a private tmpfs and /proc shows only the container's processes,
// so nothing can pass through them. Arguments: the binary's directory, the
// container's own config directory, the shared directory.
const containerScript = `set -e
mount -t tmpfs -o mode=0755 tmpfs /mnt
mkdir /mnt/bin /mnt/etc /mnt/uds
mount --bind "$1" /mnt/bin
mount --bind "$2" /mnt/etc
mount --bind "$3" /mnt/uds
mount -t tmpfs tmpfs /tmp
exec /mnt/bin/mosnlite start -c /mnt/etc/mosn.json
`

// canUnshare reports why this machine cannot run the container test, or "".
func canUnshare() string {
	if os.Geteuid() != 0 {
		return "needs root for mount and PID namespaces"
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return "needs unshare (util-linux)"
	}
	if fi, err := os.Stat("/mnt"); err != nil || !fi.IsDir() {
		return "needs a /mnt directory to mount the container's files on"
	}
	return ""
}

// startContainer starts one "container" running config cfgDir/mosn.json,
// with env added to its environment (a slot's SIDECARSET_VERSION, say).
func startContainer(t *testing.T, name, cfgDir, shared string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child",
		"sh", "-c", containerScript, "container", filepath.Dir(binPath), cfgDir, shared)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, name, cmd)
}

// slotEnv is what Kruise gives a hot-upgrade slot: its version and the other's.
func slotEnv(version, alt int) []string {
	return []string{fmt.Sprintf("SIDECARSET_VERSION=%d", version), fmt.Sprintf("SIDECARSET_VERSION_ALT=%d", alt)}
}

// await runs `mosnlite await` as a slot's postStart hook does: with the
// slot's environment (the admin port is the pod's, shared) and returns
// what it printed.
func await(t *testing.T, cfgDir string, env ...string) string {
	t.Helper()
	cmd := exec.Command(binPath, "await", "-c", filepath.Join(cfgDir, "mosn.json"), "--timeout", "20s")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mosnlite await: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// hostPID is the pid, as this test sees it, of the process a container
// runs as its PID 1: the only child of its unshare.
func hostPID(t *testing.T, c *proc) int {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", c.pid(), c.pid()))
		if f := strings.Fields(string(b)); len(f) == 1 {
			return atoi(f[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no single child of unshare (pid %d): %q", c.name, c.pid(), b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTwoContainerTakeover is the SidecarSet pattern: each generation
// starts in a fresh container and takes over from the previous one through
// the shared uds_dir alone, while a standby slot stands by.
func TestTwoContainerTakeover(t *testing.T) {
	if why := canUnshare(); why != "" {
		t.Skip("cannot run the two-container test: " + why)
	}
	dir := t.TempDir()
	shared := filepath.Join(dir, "emptydir")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	p := newPorts(t)
	web, echo := newHTTPBackend(t, "web"), newEchoBackend(t)
	httpPort, tcpPort := freePort(t), freePort(t)
	config := func(gen int) string {
		cfg := mosnConfig("/mnt/uds", p, "10s",
			[]obj{httpListener("web", addr(httpPort), "r"), tcpListener("tcp", addr(tcpPort), "echo")},
			[]obj{router("r", "web", directRoute("/version", 200, fmt.Sprintf("v%d", gen)))},
			[]obj{cluster("web", web.addr()), cluster("echo", echo.addr())})
		cfg["handoff_timeout"] = "5s"
		d := filepath.Join(dir, fmt.Sprintf("container%d", gen))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeJSON(t, d, "mosn.json", cfg)
		return d
	}
	// Kruise injects slot 1 (version 1, serving) and slot 2 (version 0,
	// the empty image: standby); versions then grow with each upgrade.
	cur := startContainer(t, "container1", config(1), shared, slotEnv(1, 0)...)
	waitHTTP(t, p.adminURL("/ready"), 200, readyTimeout)
	if out := await(t, filepath.Join(dir, "container1"), slotEnv(1, 0)...); !strings.Contains(out, "generation 1, instance \"sidecarset-version-1\") serves") {
		t.Fatalf("await in slot 1: %q", out)
	}
	standby := startContainer(t, "standby", filepath.Join(dir, "container1"), shared, slotEnv(0, 1)...)
	standby.waitLog(`standing by, serving nothing: SIDECARSET_VERSION=0`, readyTimeout)
	if out := await(t, filepath.Join(dir, "container1"), slotEnv(0, 1)...); !strings.Contains(out, "standby slot") {
		t.Fatalf("await in the standby slot: %q", out)
	}

	const nStreams, takeovers = 4, 5
	st := newStreams()
	l := newLoad()
	l.run("tcp streams", nStreams, st.worker(addr(tcpPort), time.Millisecond))
	l.run("http keep-alive", 2, keepAliveHTTP(addr(httpPort), "/"))
	l.run("http conn-per-request", 1, connPerRequestHTTP(addr(httpPort), "/"))
	l.run("service ports", 1, serviceProbe(p))
	defer l.finish()
	st.waitProgress(t, nStreams, nil, 1, 10*time.Second)

	moved := 0
	for gen := 2; gen <= takeovers+1; gen++ {
		before := st.progress()
		version := 100 * gen // Kruise's: the SidecarSet's resource version
		prev := 100 * (gen - 1)
		if gen == 2 {
			prev = 1
		}
		next := startContainer(t, fmt.Sprintf("container%d", gen), config(gen), shared, slotEnv(version, prev)...)
		// The postStart hook returns once this container's own process
		// serves, never on the old one's answers on the shared admin port.
		out := await(t, filepath.Join(dir, fmt.Sprintf("container%d", gen)), slotEnv(version, prev)...)
		if !strings.Contains(out, fmt.Sprintf("generation %d, instance \"sidecarset-version-%d\") serves", gen, version)) {
			t.Fatalf("await in container %d: %q", gen, out)
		}
		if code, _ := get(t, p.adminURL("/ready")); code != 200 {
			t.Fatalf("after takeover %d: /ready %d", gen-1, code)
		}
		waitReady(next, gen)
		// Pids across PID namespaces read 0: the logs name the other process
		// by the pid it reports, marked.
		next.waitLog(`msg="received manifest" .*old_pid="1 \(in another PID namespace\)"`, readyTimeout)
		if code := cur.wait(15 * time.Second); code != 0 {
			t.Fatalf("container %d exited %d after handing over", gen-1, code)
		}
		cur.waitLog(`msg="handoff: successor acked; stopping accepting and draining" .*new_pid="1 \(in another PID namespace\)"`, time.Second)
		if gen == 3 {
			// kubelet restarts the old slot before Kruise resets it: older
			// than the other, it stands by rather than take over back.
			again := startContainer(t, "restarted-old", config(100), shared, slotEnv(prev, version)...)
			again.waitLog(`standing by, serving nothing: SIDECARSET_VERSION=200 is older than the other slot's SIDECARSET_VERSION_ALT=300`, readyTimeout)
			syscall.Kill(hostPID(t, again), syscall.SIGTERM) // unshare itself ignores it
			if code := again.wait(10 * time.Second); code != 0 {
				t.Fatalf("standby exited %d", code)
			}
		}
		s := summary(t, cur)
		moved += s["moved_tcp"]
		if s["failed_tcp"] != 0 || s["drained_tcp"] != 0 {
			t.Errorf("takeover %d: migration summary %v", gen-1, s)
		}
		cur = next
		if code, body := get(t, "http://"+addr(httpPort)+"/version"); code != 200 || body != fmt.Sprintf("v%d", gen) {
			t.Fatalf("after takeover %d: /version = %d %q", gen-1, code, body)
		}
		var info struct {
			PID, Generation int
			Instance        string
		}
		getJSON(t, p.adminURL("/server_info"), &info)
		// Each generation is PID 1 of its own PID namespace: they never saw each other.
		if info.Generation != gen || info.PID != 1 || info.Instance != fmt.Sprintf("sidecarset-version-%d", version) {
			t.Fatalf("after takeover %d: server_info pid %d generation %d instance %q, want pid 1 (own namespace), %d and slot %d", gen-1, info.PID, info.Generation, info.Instance, gen, version)
		}
		st.waitProgress(t, nStreams, before, 64<<10, 10*time.Second)
	}
	l.finish()
	if !standby.running() {
		t.Fatal("the standby slot did not stand by")
	}
	t.Logf("%d takeovers across containers, %d TCP sessions moved:\n%s", takeovers, moved, l.report())
	for _, name := range l.order {
		if tl := l.byName[name]; tl.failed.Load() != 0 || tl.ok.Load() == 0 {
			t.Errorf("%s: %s", name, tl)
		}
	}
	if moved != nStreams*takeovers {
		t.Errorf("%d TCP sessions migrated across %d takeovers, want %d", moved, takeovers, nStreams*takeovers)
	}
	if got := metric(t, p, "mosnlite_server_connections_migrated_total", `kind="tcp"`); got != float64(moved) {
		t.Errorf("connections_migrated_total{kind=tcp} = %v, want %d (counted across all generations)", got, moved)
	}
	seen := float64(l.byName["http keep-alive"].ok.Load() + l.byName["http conn-per-request"].ok.Load())
	if got := metric(t, p, "mosnlite_http_downstream_rq_total", `listener="web"`); got < seen {
		t.Errorf("requests counted across the takeovers: %v, but clients saw %v answered", got, seen)
	}
	if got := metric(t, p, "mosnlite_server_upgrades_total"); got != takeovers {
		t.Errorf("upgrades_total %v, want %d", got, takeovers)
	}
	// The handoff went through the shared directory alone, and left in it
	// only what a running process keeps there.
	ents, _ := os.ReadDir(shared)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "reconfig.sock upgrade.lock" {
		t.Errorf("shared uds_dir holds %q", names)
	}
}

// mosnlite as PID 1 of its PID namespace (a container without an init):
// its successor would be in that namespace, which the kernel ends when PID
// 1 exits after the handover. It refuses a SIGHUP, and an upgrade asked by
// a process of its own namespace, saying why, and serves on; an upgrade
// from another container goes through.
func TestPID1RefusesSameNamespaceSuccessor(t *testing.T) {
	if why := canUnshare(); why != "" {
		t.Skip("cannot run the PID 1 test: " + why)
	}
	dir := t.TempDir()
	shared := filepath.Join(dir, "emptydir")
	os.Mkdir(shared, 0o755)
	p := newPorts(t)
	web := freePort(t)
	cfgDir := filepath.Join(dir, "c1")
	os.Mkdir(cfgDir, 0o755)
	cfg := mosnConfig("/mnt/uds", p, "5s", []obj{httpListener("web", addr(web), "r")},
		[]obj{{"router_config_name": "r", "virtual_hosts": []obj{{"name": "all", "domains": []string{"*"}, "routers": []obj{directRoute("/", 200, "c1")}}}}}, nil)
	writeJSON(t, cfgDir, "mosn.json", cfg)
	c := startContainer(t, "pid1", cfgDir, shared)
	waitHTTP(t, p.adminURL("/ready"), 200, readyTimeout)
	pid := hostPID(t, c)

	syscall.Kill(pid, syscall.SIGHUP)
	c.waitLog(`SIGHUP upgrade refused: this process is PID 1 of its PID namespace`, readyTimeout)

	// `mosnlite start` run inside the container (as `kubectl exec` would).
	in := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-p", "-m", "/mnt/bin/mosnlite", "start", "-c", "/mnt/etc/mosn.json")
	out, err := in.CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "refused the upgrade: this process is PID 1 of its PID namespace and pid") {
		t.Fatalf("a same-namespace successor: exit %d\n%s", exitCode(err), out)
	}
	c.waitLog(`msg="upgrade request refused"`, readyTimeout)
	if code, body := get(t, "http://"+addr(web)+"/"); code != 200 || body != "c1" {
		t.Fatalf("after the refusals: %d %q", code, body)
	}
	// From another container: welcome.
	next := startContainer(t, "pid1-next", cfgDir, shared)
	waitReady(next, 2)
	if code := c.wait(15 * time.Second); code != 0 {
		t.Fatalf("the old container exited %d", code)
	}
}
