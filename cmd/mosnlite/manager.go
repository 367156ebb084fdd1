package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/cmd/mosnlite/systemd"
	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/server"
)

// barrierTimeout bounds the wait, before a process that handed over exits,
// for the service manager to have processed its MAINPID= change.
const barrierTimeout = 5 * time.Second

// watchdogCarry is the Manifest.Env entry that hands the watchdog timeout to
// a successor systemd did not start itself (systemctl reload's ExecReload=
// runs `start --daemon`, which gets no WATCHDOG_USEC).
const watchdogCarry = systemd.WatchdogUsecEnv

// manager adapts one `mosnlite start` process to its process manager: it
// turns the lifecycle's turns into sd_notify(3) messages when NOTIFY_SOCKET
// is set (READY=1 with MAINPID=, STATUS= lines, RELOADING=1 with
// MONOTONIC_USEC=, MAINPID= of a successor, STOPPING=1, WATCHDOG=1), and
// keeps the pid file naming the process that serves. Every message and the
// pid file follow the service's main process: this one until a successor
// takes over, this one again if that successor dies in the watch period.
type manager struct {
	log      *logrus.Entry
	n        *systemd.Notifier // nil: no service manager to tell
	pf       pidFile
	pid      int
	mono     func() time.Duration // CLOCK_MONOTONIC
	watchEnv time.Duration        // WATCHDOG_USEC meant for this process (0: none)

	// readyMu orders READY=1 before any STATUS= that follows it: the
	// predecessor's end may be heard while READY=1 is being sent.
	readyMu sync.Mutex
	ready   bool // READY=1 sent (under readyMu)

	mu        sync.Mutex
	srv       *server.Server
	reloading bool // RELOADING=1 sent: READY=1 is owed
	handedTo  int  // MAINPID= of a successor sent: a barrier is owed before exit
	watchdog  time.Duration
	stopWD    context.CancelFunc
}

// newManager reads the process manager's environment through getenv.
func newManager(log *logrus.Entry, getenv func(string) string, pid int, pf pidFile) (*manager, error) {
	n, err := systemd.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	wd, err := systemd.WatchdogTimeout(getenv, pid)
	if err != nil {
		return nil, err
	}
	return &manager{log: log.WithField("component", "systemd"), n: n, pf: pf, pid: pid, mono: systemd.Monotonic, watchEnv: wd}, nil
}

// events are the server's events this adapter listens to.
func (m *manager) events() server.Events {
	return server.Events{
		OnUpgradeRequested:  m.upgradeRequested,
		OnSuccessorTookOver: m.tookOver,
		OnUpgradeFailed:     func(_ int, err error) { m.failed(err) },
		OnServingAgain:      m.servingAgain,
		OnPredecessorDone:   m.predecessorDone,
	}
}

// predecessorDone: nothing drains beside this process any more. Before
// its READY=1 is sent, that READY=1 says so itself; after, a STATUS= line.
func (m *manager) predecessorDone() {
	m.readyMu.Lock()
	defer m.readyMu.Unlock()
	if m.ready {
		m.notify(systemd.Status(m.status("")))
	}
}

// carry is what a successor is handed: the watchdog it must keep feeding.
func (m *manager) carry() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watchdog <= 0 {
		return nil
	}
	return map[string]string{watchdogCarry: strconv.FormatInt(m.watchdog.Microseconds(), 10)}
}

// serving is the start done: the pid file, READY=1 (with MAINPID=: this
// process is the main one now, whoever started it), the watchdog.
func (m *manager) serving(srv *server.Server) {
	m.mu.Lock()
	m.srv = srv
	m.mu.Unlock()
	m.pf.serving(m.log, m.pid)
	m.readyMu.Lock()
	m.notify(systemd.MainPID(m.pid), systemd.Ready, systemd.Status(m.status("")))
	m.ready = true
	m.readyMu.Unlock()
	wd := m.watchEnv
	if wd <= 0 {
		if v := srv.Carried()[watchdogCarry]; v != "" {
			if us, err := strconv.ParseInt(v, 10, 64); err == nil && us > 0 {
				wd = time.Duration(us) * time.Microsecond
			}
		}
	}
	m.startWatchdog(wd)
}

func (m *manager) startWatchdog(wd time.Duration) {
	if wd <= 0 || !m.n.Enabled() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.mu.Lock()
	m.watchdog, m.stopWD = wd, cancel
	m.mu.Unlock()
	w := &systemd.Watchdog{Notifier: m.n, Timeout: wd, OnError: func(err error) { m.log.WithError(err).Warn("watchdog ping") }}
	m.log.WithFields(logrus.Fields{"timeout": wd, "interval": w.Interval()}).Info("watchdog: pinging")
	go w.Run(ctx)
}

// reload is an upgrade starting: RELOADING=1, once per upgrade, with the
// monotonic time Type=notify-reload requires.
func (m *manager) reload(why string) {
	m.mu.Lock()
	already := m.reloading
	m.reloading = true
	m.mu.Unlock()
	if !already {
		m.notify(systemd.Reloading, systemd.MonotonicUsec(m.mono()), systemd.Status(m.status("upgrading: "+why)))
	}
}

// upgradeRequested is a successor asking on reconfig.sock. A process that
// is PID 1 of its PID namespace refuses one that shares the namespace: when
// it exits after the handover the kernel kills every process of the
// namespace, the successor too. One in another namespace (the other
// container of a pod) is seen as pid 0, and welcome.
func (m *manager) upgradeRequested(newPID int) error {
	if err := pid1Refusal(m.pid, newPID); err != nil {
		return err
	}
	who := "a new process asked on reconfig.sock"
	if newPID > 0 {
		who = fmt.Sprintf("pid %d asked on reconfig.sock", newPID)
	}
	m.reload(who)
	return nil
}

// pid1Refusal says why a process that is PID 1 refuses a successor of its
// own namespace (newPID as it sees it: 0 for another namespace).
func pid1Refusal(ourPID, newPID int) error {
	if ourPID != 1 || newPID <= 0 {
		return nil
	}
	return fmt.Errorf("this process is PID 1 of its PID namespace and pid %d shares it: the kernel ends every process "+
		"of the namespace when PID 1 exits after the handover, the successor too; run mosnlite under an init "+
		"(tini, docker run --init, shareProcessNamespace) or upgrade from another container", newPID)
}

// tookOver is the successor's ack: it is the main process now. MAINPID= is
// sent at once, before the successor can send its READY=1 (it waits for
// what this process sends after this returns); a barrier before exit makes
// sure systemd has processed it.
func (m *manager) tookOver(newPID int) {
	m.mu.Lock()
	m.reloading = false // the successor's READY=1 ends the reload
	if newPID > 0 {
		m.handedTo = newPID
	}
	m.mu.Unlock()
	if newPID <= 0 {
		// Another PID namespace: no pid of ours names it. It says
		// MAINPID= itself with its READY=1.
		m.notify(systemd.Status(m.status("handed over to a process in another PID namespace; draining")))
		return
	}
	m.notify(systemd.MainPID(newPID), systemd.Status(m.status(fmt.Sprintf("handed over to pid %d; draining", newPID))))
}

// failed is an upgrade that did not happen: this process serves on. A
// reload under way ends with READY=1, and no MAINPID= change.
func (m *manager) failed(err error) {
	m.mu.Lock()
	was := m.reloading
	m.reloading = false
	m.mu.Unlock()
	st := systemd.Status(m.status("upgrade failed, still serving: " + err.Error()))
	if was {
		m.notify(systemd.Ready, st)
		return
	}
	m.notify(st)
}

// servingAgain: the successor died within the watch period and this
// process serves again — the main process again, for systemd and in the
// pid file.
func (m *manager) servingAgain(deadPID int) {
	m.mu.Lock()
	m.handedTo = 0
	m.reloading = false
	m.mu.Unlock()
	m.pf.serving(m.log, m.pid)
	m.notify(systemd.MainPID(m.pid), systemd.Ready, systemd.Status(m.status(fmt.Sprintf("successor pid %d died after taking over; serving again", deadPID))))
}

// stopping is a stop for good: STOPPING=1 (from systemd 259 on it is
// final, so it is never sent for an upgrade).
func (m *manager) stopping(why string) {
	m.notify(systemd.Stopping, systemd.Status(m.status("stopping: "+why)))
}

// exit runs as the process ends: the watchdog stops and, if a successor
// took over, the process waits (bounded) until systemd has processed the
// MAINPID= change, so that the main process never seems to exit.
func (m *manager) exit() {
	m.mu.Lock()
	stop, handed := m.stopWD, m.handedTo
	m.mu.Unlock()
	if stop != nil {
		stop()
	}
	if handed == 0 || !m.n.Enabled() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), barrierTimeout)
	defer cancel()
	if err := m.n.Barrier(ctx); err != nil {
		m.log.WithError(err).Warn("exiting without knowing that the service manager follows the successor")
	}
}

func (m *manager) notify(assignments ...string) {
	if err := m.n.Notify(assignments...); err != nil {
		m.log.WithError(err).Warn("notify the service manager")
	}
}

// status is a STATUS= line a person reads in `systemctl status`: the
// generation, the listeners, the predecessor still draining, and what is
// happening (note).
func (m *manager) status(note string) string {
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	if srv == nil {
		return note
	}
	info := srv.ServerInfo()
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d", info.Generation)
	ls := srv.Listeners()
	if len(ls) > 0 {
		fmt.Fprintf(&b, ", %d listener", len(ls))
		if len(ls) > 1 {
			b.WriteString("s")
		}
		for i, l := range ls {
			if i == 6 {
				fmt.Fprintf(&b, " and %d more", len(ls)-i)
				break
			}
			sep := ", "
			if i == 0 {
				sep = " ("
			}
			fmt.Fprintf(&b, "%s%s %s", sep, l.Name, l.Address)
		}
		if len(ls) <= 6 {
			b.WriteString(")")
		}
	}
	if info.DrainingPID != 0 {
		fmt.Fprintf(&b, "; pid %d draining", info.DrainingPID)
		if info.DrainingPIDElsewhere {
			b.WriteString(" (in another PID namespace)")
		}
	}
	if note != "" {
		b.WriteString("; " + note)
	}
	return b.String()
}

// activatedSockets takes socket activation's descriptors (LISTEN_FDS) for
// this process and clears its variables, so that no child mistakes them
// for its own. Variables meant for another process are logged and left out.
func activatedSockets(log *logrus.Entry, getenv func(string) string, unsetenv func(string) error, pid int) ([]listener.Activated, error) {
	a, err := systemd.ParseListenFDs(getenv, pid)
	for _, k := range []string{systemd.ListenPIDEnv, systemd.ListenFDsEnv, systemd.ListenFDNamesEnv} {
		_ = unsetenv(k)
	}
	if err != nil {
		return nil, err
	}
	if a.Ignored != "" {
		log.Warn("socket activation: " + a.Ignored)
	}
	out := make([]listener.Activated, 0, len(a.FDs))
	for _, fd := range a.FDs {
		if err := closeOnExec(fd.FD); err != nil {
			for _, o := range out {
				o.File.Close()
			}
			return nil, fmt.Errorf("socket activation: fd %d (%s): %w", fd.FD, fd.Name, err)
		}
		out = append(out, listener.Activated{Name: fd.Name, File: os.NewFile(uintptr(fd.FD), fmt.Sprintf("LISTEN_FDS fd %d", fd.FD))})
	}
	return out, nil
}

// closeOnExec marks a passed descriptor close-on-exec (as sd_listen_fds
// does), failing if it is not open.
func closeOnExec(fd int) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		return fmt.Errorf("not an open descriptor: %w", err)
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC)
	return err
}
