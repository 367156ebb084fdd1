package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// activatedSocket is a socket as a .socket unit makes it: bound and
// listening before the service runs, held by the manager all along.
func activatedSocket(t *testing.T, address string) (*net.TCPListener, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File() // a blocking copy, as systemd passes it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ln.(*net.TCPListener), f
}

// startActivated runs `mosnlite start -c cfg` as systemd runs a socket-
// activated service: the sockets on fd 3 on, LISTEN_FDS and LISTEN_FDNAMES
// set, and LISTEN_PID set to the service's pid after the fork (a shell
// that exports its own pid and execs the binary, which keeps that pid).
func startActivated(t *testing.T, name, cfg string, names []string, files []*os.File, extraEnv ...string) *proc {
	t.Helper()
	cmd := exec.Command("sh", "-c", `export LISTEN_PID=$$; exec "$@"`, "sh", binPath, "start", "-c", cfg)
	cmd.ExtraFiles = files
	cmd.Env = append(os.Environ(), fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	cmd.Env = append(cmd.Env, extraEnv...)
	return startCmd(t, name, cmd)
}

// A socket-activated start adopts each socket for the listener of its name
// or address — the very socket, so connections made before the process ran
// are served — and binds the rest; an upgrade hands them over like any.
func TestSocketActivation(t *testing.T) {
	e := newUpgradeEnv(t)
	cfg := e.config("c1.json", "v1", false, "5s")
	webLn, webFile := activatedSocket(t, addr(e.httpPort))
	_, tcpFile := activatedSocket(t, addr(e.tcpPort))
	// Before the service runs: the connection waits in the accept queue.
	early, err := net.Dial("tcp", webLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	fmt.Fprintf(early, "GET /version HTTP/1.1\r\nHost: x\r\n\r\n")

	// "web" by its FileDescriptorName; the tcp socket has the socket unit's
	// default name, and is matched by its address.
	gen1 := startActivated(t, "gen1", cfg, []string{"web", "mosnlite.socket"}, []*os.File{webFile, tcpFile})
	waitHTTP(t, e.p.adminURL("/ready"), 200, readyTimeout)
	gen1.waitLog(`msg="socket activation: adopting the sockets the process manager passed" .*sockets=2`, readyTimeout)
	gen1.waitLog(`msg="adopted inherited listener" .*listener="server web tcp://`+addr(e.httpPort), readyTimeout)
	gen1.waitLog(`msg="adopted inherited listener" .*listener="server tcp tcp://`+addr(e.tcpPort), readyTimeout)
	gen1.waitLog(`msg="bound listener" .*listener="service admin`, readyTimeout)
	early.SetReadDeadline(time.Now().Add(10 * time.Second))
	st, _, err := readHeaders(bufio.NewReader(early))
	if err != nil || st != "HTTP/1.1 200 OK" {
		t.Fatalf("the connection queued before the start: %q %v", st, err)
	}

	// The next generation gets no LISTEN_FDS (ExecReload's process does not):
	// the activated sockets come in the handoff, the same kernel sockets.
	cfg2 := e.config("c2.json", "v2", false, "5s")
	gen2 := startProc(t, "gen2", "start", "-c", cfg2)
	waitReady(gen2, 2)
	gen2.waitLog(`msg="adopted inherited listener" .*listener="server web tcp://`+addr(e.httpPort), readyTimeout)
	if code := gen1.wait(15 * time.Second); code != 0 {
		t.Fatalf("gen1 exited %d", code)
	}
	if code, body := get(t, "http://"+addr(e.httpPort)+"/version"); code != 200 || body != "v2" {
		t.Fatalf("after the upgrade: %d %q", code, body)
	}
	// The manager's own copy is the same socket: a connection made on it
	// reaches the new generation.
	c, err := net.Dial("tcp", webLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestSocketActivationRefusals(t *testing.T) {
	e := newUpgradeEnv(t)
	cfg := e.config("c1.json", "v1", false, "5s")
	t.Run("a socket no listener has", func(t *testing.T) {
		other := freePort(t)
		_, f := activatedSocket(t, addr(other))
		p := startActivated(t, "stray", cfg, []string{"metrics-old"}, []*os.File{f})
		if code := p.wait(readyTimeout); code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		p.waitLog(fmt.Sprintf(`socket activation: socket \\?"metrics-old\\?" \(LISTEN_FDS fd 3\), bound to tcp4 127\.0\.0\.1:%d, matches no configured listener by name or address`, other), time.Second)
	})
	t.Run("a name and another address", func(t *testing.T) {
		other := freePort(t)
		_, f := activatedSocket(t, addr(other))
		p := startActivated(t, "misbound", cfg, []string{"web"}, []*os.File{f})
		if code := p.wait(readyTimeout); code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		p.waitLog(`has the name of listener server web tcp://`+addr(e.httpPort)+` but fd is bound to port`, time.Second)
	})
	t.Run("LISTEN_PID of another process", func(t *testing.T) {
		_, f := activatedSocket(t, addr(e.httpPort))
		cmd := exec.Command(binPath, "start", "-c", cfg)
		cmd.ExtraFiles = []*os.File{f}
		cmd.Env = append(os.Environ(), "LISTEN_PID=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=web")
		p := startCmd(t, "other-pid", cmd)
		// Not ours: ignored, said so; the port is taken by the socket we
		// hold, so the fresh bind fails, naming it.
		if code := p.wait(readyTimeout); code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		p.waitLog(`socket activation: LISTEN_PID=1 names another process`, time.Second)
		p.waitLog(`address already in use`, time.Second)
	})
}

// The shipped mosnlite.socket belongs to the shipped config: its
// FileDescriptorName= is the name of a listener whose address is its
// ListenStream=, and that config starts with such a socket.
func TestShippedSocketUnitMatchesConfig(t *testing.T) {
	u := unitSettings(t, filepath.Join(systemdDir, "mosnlite.socket"))
	name, listen := u["FileDescriptorName"], u["ListenStream"]
	b, err := os.ReadFile(filepath.Join(systemdDir, "mosn.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg obj
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var found obj
	for _, s := range cfg["servers"].([]interface{}) {
		for _, l := range s.(obj)["listeners"].([]interface{}) {
			if l.(obj)["name"] == name {
				found = l.(obj)
			}
		}
	}
	if found == nil || found["address"] != listen {
		t.Fatalf("mosnlite.socket: FileDescriptorName=%s ListenStream=%s; the config's listener of that name: %v", name, listen, found)
	}
	// Run the shipped config so, on this machine's test ports.
	e := newUpgradeEnv(t)
	cfg["uds_dir"] = e.uds
	found["address"] = addr(e.httpPort)
	cfg["admin"] = obj{"address": addr(e.p.admin)}
	cfg["metrics"] = obj{"address": addr(e.p.metrics)}
	path := writeJSON(t, e.dir, "mosn.json", cfg)
	_, f := activatedSocket(t, addr(e.httpPort))
	p := startActivated(t, "shipped", path, []string{name}, []*os.File{f})
	waitHTTP(t, e.p.adminURL("/ready"), 200, readyTimeout)
	p.waitLog(`msg="adopted inherited listener" .*listener="server `+name+` tcp://`+addr(e.httpPort), readyTimeout)
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
