package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Log messages the bench times (mosnlite's JSON log "msg" values).
const (
	msgReceived = "handoff: received listeners from predecessor"
	msgAcked    = "acked: old process stops accepting"
	msgReady    = "ready"
)

// event is one watched log line and when the bench read it.
type event struct {
	msg    string
	fields map[string]any
	at     time.Time
}

// proc is one mosnlite process whose output the bench reads as it streams.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time // just before exec

	mu     sync.Mutex
	events []event
	tail   []string      // last lines of output
	notify chan struct{} // closed and replaced on every event

	done   chan struct{} // closed once the output is read and Wait returned
	exitAt time.Time     // when Wait returned; valid after done
	err    error         // Wait's result; valid after done
}

const tailLines = 30

func startProc(name, logPath, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", name, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: pipe: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group: a ^C reaches the bench only, which then stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: name, cmd: cmd, logPath: logPath, notify: make(chan struct{}), done: make(chan struct{})}
	p.started = time.Now()
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		logf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	go func() {
		p.read(r, logf)
		r.Close()
		logf.Close()
		p.err = cmd.Wait()
		p.exitAt = time.Now()
		close(p.done)
	}()
	return p, nil
}

// read consumes the process's output until it exits (EOF).
func (p *proc) read(r io.Reader, logf io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	lw := bufio.NewWriter(logf)
	defer lw.Flush()
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			at := time.Now()
			_, _ = lw.Write(line)
			p.record(line, at)
		}
		if err != nil {
			return
		}
	}
}

func (p *proc) record(line []byte, at time.Time) {
	var ev *event
	if msg, ok := watchedMsg(line); ok {
		fields := map[string]any{}
		if json.Unmarshal(line, &fields) == nil {
			ev = &event{msg: msg, fields: fields, at: at}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == tailLines {
		p.tail = p.tail[1:]
	}
	p.tail = append(p.tail, strings.TrimRight(string(line), "\n"))
	if ev != nil {
		p.events = append(p.events, *ev)
		close(p.notify)
		p.notify = make(chan struct{})
	}
}

// watchedMsg returns the watched message a JSON log line carries, if any.
// Only watched lines are decoded and kept; the others only go to the log
// file, so that the bench spends little CPU beside the processes it times.
func watchedMsg(line []byte) (string, bool) {
	for _, m := range [...]string{msgReceived, msgAcked, msgReady} {
		if bytes.Contains(line, []byte(`"msg":"`+m+`"`)) {
			return m, true
		}
	}
	return "", false
}

func (p *proc) find(msg string) (event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e.msg == msg {
			return e, true
		}
	}
	return event{}, false
}

// waitFor returns the first msg line, waiting up to timeout for it.
func (p *proc) waitFor(ctx context.Context, msg string, timeout time.Duration) (event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		if e, ok := p.find(msg); ok {
			return e, nil
		}
		p.mu.Lock()
		ch := p.notify
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.done:
			// Every line is recorded before done closes.
			if e, ok := p.find(msg); ok {
				return e, nil
			}
			return event{}, fmt.Errorf("%s exited (%v) before logging %q; output:\n%s", p.name, p.err, msg, p.logTail())
		case <-t.C:
			return event{}, fmt.Errorf("%s: no %q line after %v; output:\n%s", p.name, msg, timeout, p.logTail())
		case <-ctx.Done():
			return event{}, ctx.Err()
		}
	}
}

// waitExit waits up to timeout for the process to exit and returns Wait's result.
func (p *proc) waitExit(ctx context.Context, timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running %v later; output:\n%s", p.name, timeout, p.logTail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to timeout, then kills the process group.
func (p *proc) stop(timeout time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}
