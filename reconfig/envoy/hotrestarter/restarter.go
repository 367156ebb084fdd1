// Package hotrestarter is mosnlite's hot-restarter wrapper, with the signal
// semantics of Envoy's restarter/hot-restarter.py, for runit, monit, systemd
// or a pod to supervise:
//
//   - it starts START_SCRIPT with RESTART_EPOCH=0, and again with 1, 2, … on each SIGHUP;
//   - SIGUSR1 is forwarded to every child (log reopen);
//   - SIGTERM or SIGINT: SIGTERM to every child, wait up to TermWait (30s) for
//     all to exit, SIGKILL the rest; exit 0 if all exited within the wait,
//     1 if any had to be killed (Envoy's "all children exited cleanly");
//   - a child exiting with code 0 is normal: it is forgotten, and when none is
//     left the wrapper exits 0;
//   - a child exiting non-zero or by a signal (or one that cannot be started)
//     takes the others down with SIGKILL, and the wrapper exits 1 so that its
//     supervisor restarts everything.
//
// Spawning is behind Spawner so that the state machine runs on fakes in tests.
package hotrestarter

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultTermWait is how long children get to exit after SIGTERM (Envoy's TERM_WAIT_SECONDS).
// A supervisor that escalates to SIGKILL (runit's force-stop) should wait longer than this.
const DefaultTermWait = 30 * time.Second

// DefaultKillWait bounds the wait for SIGKILLed children to be reaped.
const DefaultKillWait = 5 * time.Second

// ExitStatus is how a child ended.
type ExitStatus struct {
	Code   int            // exit code; -1 if killed by a signal
	Signal syscall.Signal // the killing signal, 0 if it exited
}

// Clean reports a normal exit: code 0, no signal.
func (e ExitStatus) Clean() bool { return e.Code == 0 && e.Signal == 0 }

func (e ExitStatus) String() string {
	if e.Signal != 0 {
		return "killed by signal " + e.Signal.String()
	}
	return fmt.Sprintf("exit code %d", e.Code)
}

// Process is one running child.
type Process interface {
	Pid() int
	Signal(os.Signal) error
	// Done is closed once the child has exited and been reaped.
	Done() <-chan struct{}
	// Exit is valid once Done is closed.
	Exit() ExitStatus
}

// Spawner starts the child of an epoch.
type Spawner interface {
	Start(epoch int) (Process, error)
}

// Restarter runs the wrapper. Zero durations mean the defaults.
type Restarter struct {
	Spawner  Spawner
	Log      *logrus.Entry
	TermWait time.Duration // DefaultTermWait when 0
	KillWait time.Duration // DefaultKillWait when 0
	// After is the clock for both waits; time.After when nil.
	After func(time.Duration) <-chan time.Time
}

type child struct {
	epoch int
	proc  Process
}

type exitEvent struct {
	c    *child
	exit ExitStatus
}

// run is the state of one Run.
type run struct {
	r        *Restarter
	log      *logrus.Entry
	children []*child // in epoch order
	exits    chan exitEvent
	stop     chan struct{}
	epoch    int
}

// Run starts epoch 0 and then follows the signals on sigs until the wrapper
// is done, returning its exit code. Cancelling ctx is handled like SIGTERM.
// The caller owns sigs (signal.Notify for SIGHUP, SIGUSR1, SIGTERM, SIGINT).
func (r *Restarter) Run(ctx context.Context, sigs <-chan os.Signal) int {
	log := r.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	st := &run{
		r:     r,
		log:   log.WithField("component", "hot-restarter"),
		exits: make(chan exitEvent),
		stop:  make(chan struct{}),
	}
	defer close(st.stop)
	if !st.start() {
		return 1
	}
	for {
		select {
		case <-ctx.Done():
			st.log.Warn("context done: shutting down")
			return st.shutdown(sigs)
		case sig, ok := <-sigs:
			if !ok {
				sigs = nil
				continue
			}
			switch sig {
			case syscall.SIGHUP:
				st.log.Info("got SIGHUP")
				if !st.start() {
					st.killAll(sigs)
					return 1
				}
			case syscall.SIGUSR1:
				st.signalAll(syscall.SIGUSR1)
			case syscall.SIGTERM, syscall.SIGINT:
				st.log.Warnf("got %v", sig)
				return st.shutdown(sigs)
			default:
				st.log.Debugf("ignoring %v", sig)
			}
		case ev := <-st.exits:
			st.remove(ev.c)
			l := st.log.WithFields(logrus.Fields{"pid": ev.c.proc.Pid(), "epoch": ev.c.epoch})
			if !ev.exit.Clean() {
				l.Warnf("child ended abnormally (%v): killing all children and exiting", ev.exit)
				st.killAll(sigs)
				return 1
			}
			l.Info("child exited with code 0")
			if len(st.children) == 0 {
				st.log.Warn("exiting due to lack of child processes")
				return 0
			}
		}
	}
}

// start launches the next epoch; false if it could not be started.
func (st *run) start() bool {
	epoch := st.epoch
	st.epoch++
	st.log.Infof("starting child process at epoch %d", epoch)
	p, err := st.r.Spawner.Start(epoch)
	if err != nil {
		st.log.WithError(err).Errorf("could not start child at epoch %d", epoch)
		return false
	}
	c := &child{epoch: epoch, proc: p}
	st.children = append(st.children, c)
	st.log.WithFields(logrus.Fields{"pid": p.Pid(), "epoch": epoch}).Info("started child process")
	go func() {
		select {
		case <-p.Done():
		case <-st.stop:
			return
		}
		select {
		case st.exits <- exitEvent{c: c, exit: p.Exit()}:
		case <-st.stop:
		}
	}()
	return true
}

func (st *run) remove(c *child) {
	for i, x := range st.children {
		if x == c {
			st.children = append(st.children[:i], st.children[i+1:]...)
			return
		}
	}
}

func (st *run) signalAll(sig os.Signal) {
	for _, c := range st.children {
		l := st.log.WithFields(logrus.Fields{"pid": c.proc.Pid(), "epoch": c.epoch})
		l.Infof("sending %v", sig)
		if err := c.proc.Signal(sig); err != nil {
			l.WithError(err).Errorf("error sending %v, continuing", sig)
		}
	}
}

// shutdown terminates every child: SIGTERM, the wait, SIGKILL for the rest.
func (st *run) shutdown(sigs <-chan os.Signal) int {
	st.signalAll(syscall.SIGTERM)
	if st.waitAll(st.after(st.r.TermWait, DefaultTermWait), sigs) {
		st.log.Info("all children exited cleanly")
		return 0
	}
	for _, c := range st.children {
		st.log.WithFields(logrus.Fields{"pid": c.proc.Pid(), "epoch": c.epoch}).Warn("child did not exit in time, killing")
	}
	st.killAll(sigs)
	return 1
}

// killAll SIGKILLs every child left and reaps them, within KillWait.
func (st *run) killAll(sigs <-chan os.Signal) {
	if len(st.children) == 0 {
		return
	}
	st.signalAll(syscall.SIGKILL)
	if !st.waitAll(st.after(st.r.KillWait, DefaultKillWait), sigs) {
		st.log.Errorf("%d children not reaped after SIGKILL", len(st.children))
	}
}

// waitAll waits until every child has exited or timeout fires; signals that
// arrive meanwhile are ignored.
func (st *run) waitAll(timeout <-chan time.Time, sigs <-chan os.Signal) bool {
	for len(st.children) > 0 {
		select {
		case ev := <-st.exits:
			st.remove(ev.c)
			st.log.WithFields(logrus.Fields{"pid": ev.c.proc.Pid(), "epoch": ev.c.epoch}).Infof("child ended (%v)", ev.exit)
		case sig, ok := <-sigs:
			if !ok {
				sigs = nil
				continue
			}
			st.log.Debugf("shutting down: ignoring %v", sig)
		case <-timeout:
			return false
		}
	}
	return true
}

func (st *run) after(d, def time.Duration) <-chan time.Time {
	if d <= 0 {
		d = def
	}
	if st.r.After != nil {
		return st.r.After(d)
	}
	return time.After(d)
}
