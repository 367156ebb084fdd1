package test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialHelperEnv makes the test binary, re-executed, act as a peer that dials
// a unix socket, reads one byte and prints what happened (see TestMain).
const dialHelperEnv = "MOSNLITE_TEST_DIAL_UNIX"

// runDialHelper is the re-executed test binary's whole job.
func runDialHelper(path string) int {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		return 0
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1)
	n, err := c.Read(b)
	if n == 1 {
		fmt.Printf("byte: %q\n", b[0])
		return 0
	}
	if err == io.EOF {
		fmt.Println("closed without a byte")
		return 0
	}
	fmt.Printf("read: %v\n", err)
	return 0
}

func TestPeerOfAnotherUIDRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a peer as nobody")
	}
	e := newUpgradeEnv(t)
	old := startMosn(t, "root-old", e.config("c1.json", "v1", false, "5s"), e.p)
	// A misconfigured system: the directory and socket modes no longer keep
	// other users out, so only the SO_PEERCRED check stands between them.
	for d := e.uds; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o711)
	}
	sock := filepath.Join(e.uds, "reconfig.sock")
	os.Chmod(sock, 0o666)
	// The test binary, runnable by nobody.
	binDir, err := os.MkdirTemp("", "mosnlite-peer")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	os.Chmod(binDir, 0o755)
	self, _ := os.Executable()
	peerBin := filepath.Join(binDir, "peer")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(peerBin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	mark := old.out.mark()
	cmd := exec.Command(peerBin, "-test.run=^$")
	cmd.Env = append(os.Environ(), dialHelperEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "closed without a byte") {
		t.Fatalf("a peer running as nobody got: %s", out)
	}
	old.waitLogAfter(mark, `refused a connection on reconfig.sock.*uid 65534`, 5*time.Second)
	e.assertServes("v1")
	// The refused peer disturbed nothing: a real upgrade still works.
	e.upgradeOK(old, e.config("c2.json", "v2", false, "5s"), 2)
	e.assertServes("v2")
}

// detached is a mosnlite started with its output to a file: the
// successor it starts on SIGHUP inherits the file and outlives it.
type detached struct {
	cmd     *exec.Cmd
	exited  chan error
	logPath string
}

func startDetached(t *testing.T, cfg, logPath string) *detached {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(binPath, "start", "-c", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &detached{cmd: cmd, exited: make(chan error, 1), logPath: logPath}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return d
}

// sighup sends SIGHUP and waits until admin shows the successor running as
// generation gen; it returns the successor's pid (killed at the end of the
// test).
func (d *detached) sighup(t *testing.T, p ports, gen int) int {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGHUP)
	var info map[string]interface{}
	deadline := time.Now().Add(readyTimeout)
	for {
		getJSON(t, p.adminURL("/server_info"), &info)
		if int(info["generation"].(float64)) == gen && info["state"] == "running" {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(d.logPath)
			t.Fatalf("no generation %d after SIGHUP: %v\n%s", gen, info, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	succ := int(info["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(succ, syscall.SIGKILL) })
	if succ == d.cmd.Process.Pid {
		t.Fatalf("generation %d has the old pid", gen)
	}
	return succ
}

// waitExit waits for the process to exit 0 after handing over.
func (d *detached) waitExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("old process after SIGHUP: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("old process did not exit after SIGHUP")
	}
}

func TestSIGHUPReloadsConfig(t *testing.T) {
	e := newUpgradeEnv(t)
	cfg := e.config("c.json", "v1", false, "5s")
	d := startDetached(t, cfg, filepath.Join(e.dir, "gen1.log"))
	waitHTTP(t, e.p.adminURL("/ready"), 200, readyTimeout)

	l := newLoad()
	l.run("http keep-alive", 2, keepAliveHTTP(addr(e.httpPort), "/"))
	l.run("tcp streams", 2, tcpStreams(addr(e.tcpPort), 20, time.Millisecond))

	// Edit the config file in place, then SIGHUP: a reload with one signal.
	e.config("c.json", "v2", false, "5s")
	succ := d.sighup(t, e.p, 2)
	d.waitExit(t)
	if code, body := get(t, "http://"+addr(e.httpPort)+"/version"); code != 200 || body != "v2" {
		t.Fatalf("after SIGHUP: %d %q", code, body)
	}
	l.finish()
	for _, name := range l.order {
		if tl := l.byName[name]; tl.failed.Load() != 0 || tl.ok.Load() == 0 {
			t.Errorf("%s across SIGHUP: %s", name, tl)
		}
	}
	b, _ := os.ReadFile(d.logPath)
	if !strings.Contains(string(b), "SIGHUP upgrade: successor serves") {
		t.Errorf("old process did not log the SIGHUP result:\n%s", b)
	}
	syscall.Kill(succ, syscall.SIGTERM)
	waitGone(t, succ, 10*time.Second)
}
