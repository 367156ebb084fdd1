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
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifyManager plays systemd's side of sd_notify: a datagram socket with
// SO_PASSCRED, as systemd's own, recording every message with the pid the
// kernel says sent it, and closing each BARRIER=1 pipe as systemd does once
// it has processed what came before.
type notifyManager struct {
	t    *testing.T
	path string
	conn *net.UnixConn

	mu   sync.Mutex
	cond *sync.Cond
	msgs []notifyMsg
	done bool
}

type notifyMsg struct {
	pid  int
	text string // the assignments, one line each joined by " "
	at   time.Duration
}

func newNotifyManager(t *testing.T) *notifyManager {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := conn.SyscallConn()
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if serr != nil {
		t.Fatal(serr)
	}
	m := &notifyManager{t: t, path: path, conn: conn}
	m.cond = sync.NewCond(&m.mu)
	go m.read()
	t.Cleanup(func() { conn.Close() })
	return m
}

func (m *notifyManager) read() {
	buf, oob := make([]byte, 8192), make([]byte, 1024)
	for {
		n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			m.mu.Lock()
			m.done = true
			m.cond.Broadcast()
			m.mu.Unlock()
			return
		}
		msg := notifyMsg{text: strings.TrimSpace(strings.ReplaceAll(string(buf[:n]), "\n", " ")), at: monotonic()}
		cmsgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for i := range cmsgs {
			if cred, err := unix.ParseUnixCredentials(&cmsgs[i]); err == nil {
				msg.pid = int(cred.Pid)
			}
			if fds, err := unix.ParseUnixRights(&cmsgs[i]); err == nil {
				for _, fd := range fds {
					unix.Close(fd) // a barrier: everything before it is processed
				}
			}
		}
		m.mu.Lock()
		m.msgs = append(m.msgs, msg)
		m.cond.Broadcast()
		m.mu.Unlock()
	}
}

// all returns every message but watchdog pings, and how many pings each pid sent.
func (m *notifyManager) all() ([]notifyMsg, map[int]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []notifyMsg
	pings := map[int]int{}
	for _, msg := range m.msgs {
		if msg.text == "WATCHDOG=1" {
			pings[msg.pid]++
			continue
		}
		out = append(out, msg)
	}
	return out, pings
}

// waitFor waits until a message other than a ping matches re and returns
// the index of the first such message from index from on.
func (m *notifyManager) waitFor(re string, from int, timeout time.Duration) (int, notifyMsg) {
	m.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { m.mu.Lock(); m.cond.Broadcast(); m.mu.Unlock() })
	defer timer.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		i := 0
		for _, msg := range m.msgs {
			if msg.text == "WATCHDOG=1" {
				continue
			}
			if i >= from && rx.MatchString(msg.text) {
				return i, msg
			}
			i++
		}
		if m.done || time.Now().After(deadline) {
			var got []string
			for _, msg := range m.msgs {
				if msg.text != "WATCHDOG=1" {
					got = append(got, fmt.Sprintf("  pid %d: %s", msg.pid, msg.text))
				}
			}
			m.t.Fatalf("no notification matching %q from message %d on within %s; got:\n%s", re, from, timeout, strings.Join(got, "\n"))
		}
		m.cond.Wait()
	}
}

// pingedBy waits until pid has sent a watchdog ping.
func (m *notifyManager) pingedBy(pid int, timeout time.Duration) {
	m.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, pings := m.all(); pings[pid] > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.t.Fatalf("pid %d sent no WATCHDOG=1 within %s", pid, timeout)
}

func monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// managedEnv is the environment systemd gives a Type=notify service's main
// process (ExecStart): the notification socket and the watchdog. With
// watchdog 0 it is what a control process (ExecReload) gets.
func managedEnv(m *notifyManager, watchdog time.Duration) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "WATCHDOG_") {
			env = append(env, kv)
		}
	}
	env = append(env, "NOTIFY_SOCKET="+m.path)
	if watchdog > 0 {
		env = append(env, fmt.Sprintf("WATCHDOG_USEC=%d", watchdog.Microseconds()))
	}
	return env
}

// reload is `systemctl reload` with the shipped unit's ExecReload=: a
// control process that starts the successor and returns its verdict.
func reload(t *testing.T, m *notifyManager, cfg, logFile string) (int, string) {
	t.Helper()
	cmd := exec.Command(binPath, "start", "--daemon", "-c", cfg, "--wait-timeout", "30s", "--log-file", logFile)
	cmd.Env = managedEnv(m, 0)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, string(out)
	}
	mm := regexp.MustCompile(`mosnlite: pid (\d+) serves`).FindSubmatch(out)
	if mm == nil {
		t.Fatalf("start --daemon printed %q", out)
	}
	pid, _ := strconv.Atoi(string(mm[1]))
	return pid, string(out)
}

// killAtEnd stops, at the end of the test, a process the test did not start itself.
func killAtEnd(t *testing.T, pid int) {
	t.Cleanup(func() {
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
			waitGone(t, pid, 10*time.Second)
		}
	})
}

// The exact sd_notify conversation of a service through 5 upgrades — by
// SIGHUP (Type=notify-reload) and by ExecReload's `start --daemon`
// (Type=notify) in turn — a failed upgrade of each kind, and a final stop.
func TestSystemdNotifySequence(t *testing.T) {
	m := newNotifyManager(t)
	e := newUpgradeEnv(t)
	cfg := e.config("c.json", "v1", false, "5s")
	const watchdog = 600 * time.Millisecond
	first := exec.Command(binPath, "start", "-c", cfg)
	first.Env = managedEnv(m, watchdog)
	mainPID := startCmd(t, "gen1", first).pid()
	pids := []int{mainPID}

	i, msg := m.waitFor(`READY=1`, 0, readyTimeout)
	if want := fmt.Sprintf(`^MAINPID=%d READY=1 STATUS=generation 1, 5 listeners \(admin 127\.0\.0\.1:\d+, pprof \S+, metrics \S+, web \S+, tcp \S+\)$`, mainPID); msg.pid != mainPID || !regexp.MustCompile(want).MatchString(msg.text) {
		t.Fatalf("first message: pid %d %q, want %q", msg.pid, msg.text, want)
	}
	m.pingedBy(mainPID, 5*watchdog)
	from := i + 1

	logFile := filepath.Join(e.dir, "daemon.log")
	for gen := 2; gen <= 6; gen++ {
		before := monotonic()
		var newPID int
		how := "SIGHUP"
		if gen%2 == 1 {
			how = "reload"
			pid, out := reload(t, m, cfg, logFile)
			if pid == 0 {
				t.Fatalf("generation %d: start --daemon failed:\n%s", gen, out)
			}
			newPID = pid
			killAtEnd(t, newPID)
		} else {
			syscall.Kill(mainPID, syscall.SIGHUP)
		}
		// The old main process: RELOADING=1 with the time, then the new one
		// named as main process once it acked.
		i, msg = m.waitFor(`^RELOADING=1`, from, readyTimeout)
		if msg.pid != mainPID {
			t.Fatalf("gen %d (%s): RELOADING=1 from pid %d, want the main process %d", gen, how, msg.pid, mainPID)
		}
		mm := regexp.MustCompile(`^RELOADING=1 MONOTONIC_USEC=(\d+) STATUS=generation \d+, .*; upgrading: (.*)$`).FindStringSubmatch(msg.text)
		if mm == nil {
			t.Fatalf("gen %d: %q", gen, msg.text)
		}
		if us, _ := strconv.ParseInt(mm[1], 10, 64); time.Duration(us)*time.Microsecond < before-time.Millisecond || time.Duration(us)*time.Microsecond > msg.at {
			t.Fatalf("gen %d: MONOTONIC_USEC=%s is not between the signal (%d) and its arrival (%d)", gen, mm[1], before.Microseconds(), msg.at.Microseconds())
		}
		wantWhy := "SIGHUP"
		if how == "reload" {
			wantWhy = fmt.Sprintf("pid %d asked on reconfig.sock", newPID)
		}
		if mm[2] != wantWhy {
			t.Fatalf("gen %d: upgrading because %q, want %q", gen, mm[2], wantWhy)
		}
		relIdx := i
		i, msg = m.waitFor(`^MAINPID=\d+ STATUS=`, relIdx+1, readyTimeout)
		mp, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(msg.text)[0], "MAINPID="))
		if newPID == 0 {
			newPID = mp
			killAtEnd(t, newPID)
		}
		if msg.pid != mainPID || mp != newPID || !strings.HasSuffix(msg.text, fmt.Sprintf("; handed over to pid %d; draining", newPID)) {
			t.Fatalf("gen %d: %q from pid %d, want MAINPID=%d from %d", gen, msg.text, msg.pid, newPID, mainPID)
		}
		mainIdx := i
		// The new one: READY=1 (naming itself too), after the MAINPID= change;
		// its STATUS names the old one if it still drains (here it has little
		// to drain, and may be gone already).
		i, msg = m.waitFor(fmt.Sprintf(`^MAINPID=%d READY=1 `, newPID), relIdx+1, readyTimeout)
		if msg.pid != newPID || i < mainIdx || !regexp.MustCompile(fmt.Sprintf(`STATUS=generation %d, 5 listeners \(.*\)(; pid %d draining)?$`, gen, mainPID)).MatchString(msg.text) {
			t.Fatalf("gen %d: %q from pid %d at %d (MAINPID= at %d)", gen, msg.text, msg.pid, i, mainIdx)
		}
		// The old one waits on a barrier before it exits, so that systemd
		// follows the new main process before the old one is gone.
		i, msg = m.waitFor(`^BARRIER=1$`, mainIdx+1, readyTimeout)
		if msg.pid != mainPID {
			t.Fatalf("gen %d: barrier from %d", gen, msg.pid)
		}
		waitGone(t, mainPID, 15*time.Second)
		// The new one's watchdog: its own WATCHDOG_USEC after SIGHUP is
		// cleared (it named the old pid); after a reload it never had one.
		// Both carry on with the manifest's.
		m.pingedBy(newPID, 5*watchdog)
		mainPID, from = newPID, i+1
		pids = append(pids, newPID)
	}
	var info struct{ PID, Generation int }
	getJSON(t, e.p.adminURL("/server_info"), &info)
	if info.PID != mainPID || info.Generation != 6 {
		t.Fatalf("serving: pid %d generation %d, want %d and 6", info.PID, info.Generation, mainPID)
	}

	// A reload that fails after the handshake (a port taken): RELOADING=1,
	// then READY=1 with why, and no MAINPID= from anyone.
	taken, err := net.Listen("tcp", addr(e.extra))
	if err != nil {
		t.Fatal(err)
	}
	bad := e.config("bad.json", "v1", true, "5s")
	if pid, out := reload(t, m, bad, logFile); pid != 0 || !strings.Contains(out, "address already in use") {
		t.Fatalf("reload with a taken port: pid %d, %q", pid, out)
	}
	taken.Close()
	i, msg = m.waitFor(`^RELOADING=1 `, from, readyTimeout)
	failFrom := i
	i, msg = m.waitFor(`^READY=1 STATUS=generation 6, .*; upgrade failed, still serving: .*address already in use`, i+1, readyTimeout)
	if msg.pid != mainPID {
		t.Fatalf("failed reload: READY=1 from %d", msg.pid)
	}
	// A SIGHUP whose successor cannot start (the config on disk broken):
	// the same, and the main process serves on.
	good, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(`{"servers": [`), 0o644)
	syscall.Kill(mainPID, syscall.SIGHUP)
	i, msg = m.waitFor(`^RELOADING=1 `, i+1, readyTimeout)
	i, msg = m.waitFor(`^READY=1 STATUS=generation 6, .*; upgrade failed, still serving: `, i+1, readyTimeout)
	os.WriteFile(cfg, good, 0o644)
	msgs, _ := m.all()
	for _, x := range msgs[failFrom:] {
		if strings.Contains(x.text, "MAINPID=") {
			t.Fatalf("a failed upgrade changed the main pid: pid %d %q", x.pid, x.text)
		}
	}
	if code, _ := get(t, "http://"+addr(e.httpPort)+"/version"); code != 200 {
		t.Fatal("not serving after the failed upgrades")
	}

	// The final stop: STOPPING=1, and the process exits 0.
	syscall.Kill(mainPID, syscall.SIGTERM)
	_, msg = m.waitFor(`^STOPPING=1 STATUS=generation 6, .*; stopping: terminated$`, i+1, readyTimeout)
	if msg.pid != mainPID {
		t.Fatalf("STOPPING=1 from %d", msg.pid)
	}
	waitGone(t, mainPID, 15*time.Second)

	// Each process's whole conversation, exactly (watchdog pings aside): it
	// is ready as main process; possibly says its predecessor is done; on an
	// upgrade reloads, names its successor main process, and waits on a
	// barrier before it exits. The last one also refuses two failed
	// upgrades (READY=1 again, no MAINPID=) and stops.
	msgs, pings := m.all()
	for g, pid := range pids {
		var seq []string
		for _, x := range msgs {
			if x.pid == pid {
				f := strings.Fields(x.text)
				seq = append(seq, strings.Join(f[:min(2, len(f))], " "))
			}
		}
		got := strings.Join(seq, " | ")
		want := fmt.Sprintf(`^MAINPID=%d READY=1 \| (STATUS=generation \d+, \| )?`, pid)
		if g < len(pids)-1 {
			want += fmt.Sprintf(`RELOADING=1 MONOTONIC_USEC=\d+ \| MAINPID=%d STATUS=generation \| BARRIER=1$`, pids[g+1])
		} else {
			want += `(RELOADING=1 MONOTONIC_USEC=\d+ \| READY=1 STATUS=generation \| ){2}STOPPING=1 STATUS=generation$`
		}
		if !regexp.MustCompile(want).MatchString(got) {
			t.Errorf("generation %d (pid %d) sent %q, want %q", g+1, pid, got, want)
		}
		if pings[pid] == 0 {
			t.Errorf("generation %d (pid %d) sent no watchdog ping", g+1, pid)
		}
	}
}

// The successor dies within the watch period: the old process serves
// again, and both systemd's main pid and the pid file follow back to it.
func TestSystemdNotifyWatchRevert(t *testing.T) {
	m := newNotifyManager(t)
	e := newUpgradeEnv(t)
	pidPath := filepath.Join(e.dir, "run", "mosnlite.pid")
	write := func(name string) string {
		p := e.config(name, "v1", false, "5s")
		b, _ := os.ReadFile(p)
		var cfg obj
		jsonInto(string(b), &cfg)
		cfg["upgrade_watch_period"] = "30s"
		cfg["pid"] = pidPath
		return writeJSON(t, e.dir, name, cfg)
	}
	cfg := write("c.json")
	first := exec.Command(binPath, "start", "-c", cfg)
	first.Env = managedEnv(m, 0)
	old := startCmd(t, "gen1", first)
	m.waitFor(`^MAINPID=\d+ READY=1`, 0, readyTimeout)
	newPID, out := reload(t, m, cfg, filepath.Join(e.dir, "daemon.log"))
	if newPID == 0 {
		t.Fatalf("reload: %s", out)
	}
	killAtEnd(t, newPID)
	i, _ := m.waitFor(fmt.Sprintf(`^MAINPID=%d READY=1 `, newPID), 0, readyTimeout)
	if b, _ := os.ReadFile(pidPath); strings.TrimSpace(string(b)) != strconv.Itoa(newPID) {
		t.Fatalf("pid file %q, want the successor %d", b, newPID)
	}
	syscall.Kill(newPID, syscall.SIGKILL) // a crash just after taking over
	_, msg := m.waitFor(fmt.Sprintf(`^MAINPID=%d READY=1 STATUS=generation 1, .*; successor pid %d died after taking over; serving again$`, old.pid(), newPID), i+1, readyTimeout)
	if msg.pid != old.pid() {
		t.Fatalf("revert announced by pid %d", msg.pid)
	}
	if b, _ := os.ReadFile(pidPath); strings.TrimSpace(string(b)) != strconv.Itoa(old.pid()) {
		t.Fatalf("pid file %q after the revert, want the old process %d", b, old.pid())
	}
	if code, _ := get(t, "http://"+addr(e.httpPort)+"/version"); code != 200 {
		t.Fatal("not serving after the revert")
	}
	// Upgradable again, as main process: the next reload moves MAINPID= again.
	next, out := reload(t, m, cfg, filepath.Join(e.dir, "daemon.log"))
	if next == 0 {
		t.Fatalf("reload after the revert: %s", out)
	}
	killAtEnd(t, next)
	m.waitFor(fmt.Sprintf(`^MAINPID=%d STATUS=`, next), i+1, readyTimeout)
	m.waitFor(fmt.Sprintf(`^MAINPID=%d READY=1 `, next), i+1, readyTimeout)
}
