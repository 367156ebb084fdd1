package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
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

// startContainer starts one "container" running config cfgDir/mosn.json.
func startContainer(t *testing.T, name, cfgDir, shared string) *proc {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child",
		"sh", "-c", containerScript, "container", filepath.Dir(binPath), cfgDir, shared)
	return startCmd(t, name, cmd)
}

// TestTwoContainerTakeover is the SidecarSet pattern: each generation
// starts in a fresh container and takes over from the previous one through
// the shared uds_dir alone.
func TestTwoContainerTakeover(t *testing.T) {
	if why := canUnshare(); why != "" {
		t.Fatal("cannot run the two-container test: " + why)
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
	cur := startContainer(t, "container1", config(1), shared)
	waitHTTP(t, p.adminURL("/ready"), 200, readyTimeout)

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
		next := startContainer(t, fmt.Sprintf("container%d", gen), config(gen), shared)
		waitReady(next, gen)
		if code := cur.wait(15 * time.Second); code != 0 {
			t.Fatalf("container %d exited %d after handing over", gen-1, code)
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
		var info struct{ PID, Generation int }
		getJSON(t, p.adminURL("/server_info"), &info)
		// Each generation is PID 1 of its own PID namespace: they never saw each other.
		if info.Generation != gen || info.PID != 1 {
			t.Fatalf("after takeover %d: server_info pid %d generation %d, want pid 1 (own namespace) and %d", gen-1, info.PID, info.Generation, gen)
		}
		st.waitProgress(t, nStreams, before, 64<<10, 10*time.Second)
	}
	l.finish()
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
