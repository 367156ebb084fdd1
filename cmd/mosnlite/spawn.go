package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mosnlite/mosnlite/cmd/mosnlite/systemd"
)

// readyFDEnv names the environment variable that tells a started process
// which inherited fd to report readiness on: one line, "ready pid=N" or
// "error: why".
const readyFDEnv = "MOSNLITE_READY_FD"

// readyDeadlineEnv carries, in Unix nanoseconds, when the starter stops
// waiting: the child must be serving (acked) by then or give up.
const readyDeadlineEnv = "MOSNLITE_READY_DEADLINE"

// readyMargin is how much sooner than its starter's timeout a child gives up,
// so that its verdict reaches the starter before the starter's own timer fires.
const readyMargin = time.Second

// readyDeadline reads and clears the deadline set by a starter, if any.
func readyDeadline() time.Time {
	v := os.Getenv(readyDeadlineEnv)
	_ = os.Unsetenv(readyDeadlineEnv)
	n, err := strconv.ParseInt(v, 10, 64)
	if v == "" || err != nil {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// notifyReady reports the start result to whoever started this process with
// a readiness pipe, and closes the pipe. Without one it does nothing.
func notifyReady(startErr error) {
	v := os.Getenv(readyFDEnv)
	if v == "" {
		return
	}
	_ = os.Unsetenv(readyFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	if startErr != nil {
		fmt.Fprintf(f, "error: %s\n", strings.ReplaceAll(startErr.Error(), "\n", "; "))
		return
	}
	fmt.Fprintf(f, "ready pid=%d\n", os.Getpid())
}

// spawnOptions say how to start a child mosnlite.
type spawnOptions struct {
	configPath     string
	pidFile        string // --pid-file, passed on
	stdout, stderr *os.File
	detach         bool // new session, not reaped by us (--daemon)
	timeout        time.Duration
}

// spawn starts `mosnlite start -c FILE` from the current executable with a
// readiness pipe and waits for its verdict. It returns the child's pid once
// the child serves (after its handoff ack), or why it did not.
func spawn(o spawnOptions) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	args := []string{"start"}
	if o.configPath != "" {
		args = append(args, "-c", o.configPath)
	}
	if o.pidFile != "" {
		args = append(args, "--pid-file", o.pidFile)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("readiness pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = o.stdout, o.stderr
	cmd.ExtraFiles = []*os.File{w}
	if o.timeout <= 0 {
		o.timeout = 60 * time.Second
	}
	deadline := time.Now().Add(o.timeout)
	cmd.Env = append(childEnv(os.Environ()), readyFDEnv+"=3",
		fmt.Sprintf("%s=%d", readyDeadlineEnv, deadline.Add(-min(readyMargin, o.timeout/2)).UnixNano()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: o.detach, Setpgid: !o.detach}
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps the child; a daemon outlives us anyway
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case l := <-line:
		switch {
		case strings.HasPrefix(l, "ready"):
			return cmd.Process.Pid, nil
		case strings.HasPrefix(l, "error: "):
			return 0, fmt.Errorf("new process %d: %s", cmd.Process.Pid, strings.TrimPrefix(l, "error: "))
		default:
			werr := <-exited
			return 0, fmt.Errorf("new process %d: %w (%v)", cmd.Process.Pid, errNotReady, werr)
		}
	case <-timer.C:
		return 0, fmt.Errorf("new process %d did not report ready within %s", cmd.Process.Pid, o.timeout)
	}
}

// childEnv is the environment a started mosnlite gets: ours, less what the
// process manager meant for us alone — socket activation's variables (the
// successor takes those sockets over in the handoff) and the watchdog's
// (WATCHDOG_PID names us; the timeout travels in the manifest). The
// notification socket stays: the successor tells the manager it serves.
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case systemd.ListenPIDEnv, systemd.ListenFDsEnv, systemd.ListenFDNamesEnv,
			systemd.WatchdogUsecEnv, systemd.WatchdogPIDEnv, readyFDEnv, readyDeadlineEnv:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// spawnSuccessor is SIGHUP: the same binary path and config, output to ours.
func spawnSuccessor(f startFlags) (int, error) {
	return spawn(spawnOptions{configPath: f.config, pidFile: f.pidFile, stdout: os.Stdout, stderr: os.Stderr, timeout: 2 * time.Minute})
}

// startDaemon is `start --daemon`: start in the background, wait for the verdict.
func startDaemon(f startFlags, stdout, stderr io.Writer) int {
	wait, err := time.ParseDuration(f.wait)
	if err != nil || wait <= 0 {
		fmt.Fprintf(stderr, "mosnlite: --wait-timeout %q: want a positive duration\n", f.wait)
		return 2
	}
	o := spawnOptions{configPath: f.config, pidFile: f.pidFile, detach: true, timeout: wait}
	switch f.logFile {
	case "-":
		// Ours, handed down: under systemd, the journal (ExecReload=).
		o.stdout, o.stderr = os.Stdout, os.Stderr
	default:
		out := f.logFile
		if out == "" {
			out = os.DevNull
		}
		lf, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "mosnlite: --log-file: %v\n", err)
			return 1
		}
		defer lf.Close()
		o.stdout, o.stderr = lf, lf
	}
	pid, err := spawn(o)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "mosnlite: pid %d serves\n", pid)
	return 0
}
