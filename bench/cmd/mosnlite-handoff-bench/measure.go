package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Bounds of the bench's waits. A healthy handoff takes milliseconds.
const (
	gracefulTimeout = 10 * time.Second // the old process's drain bound
	stepTimeout     = 30 * time.Second // start-up, ack, ready
	stopTimeout     = 5 * time.Second
)

// sample is one handoff.
type sample struct {
	startToAck   time.Duration // exec → "acked" line read
	startToReady time.Duration // exec → "ready" line read
	inProcess    time.Duration // the new process's handoff_seconds
	ackToExit    time.Duration // "acked" line read → old process's Wait returned
	fds          int           // sockets in the manifest
}

// measure runs generation 1 with n listeners, then runs handoffs to a new
// process with the same config, each checked, and returns their samples.
func measure(ctx context.Context, bin, dir string, n, runs int, logf func(string, ...any)) ([]sample, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg, err := handoffConfig(n, filepath.Join(dir, "uds"), admin)
	if err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	cfgPath := filepath.Join(dir, "mosnlite.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}

	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop(stopTimeout)
		}
	}()
	start := func(gen int) (*proc, error) {
		p, err := startProc(fmt.Sprintf("generation %d", gen), filepath.Join(dir, fmt.Sprintf("gen%d.log", gen)), bin, "start", "-c", cfgPath)
		if err == nil {
			procs = append(procs, p)
		}
		return p, err
	}

	c := newClient()
	old, err := start(1)
	if err != nil {
		return nil, err
	}
	if _, err := old.waitFor(ctx, msgReady, stepTimeout); err != nil {
		return nil, err
	}
	if err := waitAdminReady(ctx, c, admin, old, stepTimeout); err != nil {
		return nil, err
	}
	ports, err := serverListeners(ctx, c, admin)
	if err != nil {
		return nil, err
	}
	if err := checkPorts(ports, nil, n); err != nil {
		return nil, fmt.Errorf("generation 1: %w", err)
	}
	if err := checkServing(ctx, c, ports); err != nil {
		return nil, fmt.Errorf("generation 1: %w", err)
	}
	logf("%5d listeners: generation 1 (pid %d) serves all of them", n, old.pid())

	var out []sample
	for gen := 2; gen <= runs+1; gen++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		nu, err := start(gen)
		if err != nil {
			return nil, err
		}
		s, err := handoff(ctx, old, nu, gen)
		if err != nil {
			return nil, fmt.Errorf("handoff to generation %d: %w", gen, err)
		}
		if err := verify(ctx, c, admin, nu, gen, ports); err != nil {
			return nil, fmt.Errorf("after handoff to generation %d: %w", gen, err)
		}
		if s.fds != n+1 {
			return nil, fmt.Errorf("handoff to generation %d passed %d fds, want %d (the listeners and admin)", gen, s.fds, n+1)
		}
		logf("%5d listeners: generation %d: start→ack %v, start→ready %v, in-process %v, ack→old exit %v, %d fds",
			n, gen, ms(s.startToAck), ms(s.startToReady), ms(s.inProcess), ms(s.ackToExit), s.fds)
		out = append(out, s)
		old = nu
	}
	return out, nil
}

// handoff times the takeover of old by nu (already started) and waits for
// old to exit.
func handoff(ctx context.Context, old, nu *proc, gen int) (sample, error) {
	var s sample
	ack, err := nu.waitFor(ctx, msgAcked, stepTimeout)
	if err != nil {
		return s, err
	}
	ready, err := nu.waitFor(ctx, msgReady, stepTimeout)
	if err != nil {
		return s, err
	}
	if err := old.waitExit(ctx, gracefulTimeout+stepTimeout); err != nil {
		return s, fmt.Errorf("old process: %w", err)
	}
	s.startToAck = ack.at.Sub(nu.started)
	s.startToReady = ready.at.Sub(nu.started)
	s.ackToExit = old.exitAt.Sub(ack.at)

	hs, ok := ready.fields["handoff_seconds"].(float64)
	if !ok {
		return s, fmt.Errorf("ready line has no handoff_seconds: %v", ready.fields)
	}
	s.inProcess = time.Duration(hs * float64(time.Second))
	if g, _ := ready.fields["generation"].(float64); int(g) != gen {
		return s, fmt.Errorf("ready line says generation %v, want %d", ready.fields["generation"], gen)
	}
	recv, ok := nu.find(msgReceived)
	if !ok {
		return s, fmt.Errorf("no %q line", msgReceived)
	}
	fds, _ := recv.fields["fds"].(float64)
	s.fds = int(fds)
	return s, nil
}

// verify checks the new process after the handoff: it is the one admin
// reports, with the expected generation, on the same ports, and every
// listener answers.
func verify(ctx context.Context, c *http.Client, admin string, nu *proc, gen int, ports map[string]string) error {
	si, err := getServerInfo(ctx, c, admin)
	if err != nil {
		return err
	}
	if si.PID != nu.pid() || si.Generation != gen {
		return fmt.Errorf("admin /server_info: pid %d generation %d, want pid %d generation %d", si.PID, si.Generation, nu.pid(), gen)
	}
	got, err := serverListeners(ctx, c, admin)
	if err != nil {
		return err
	}
	if err := checkPorts(got, ports, len(ports)); err != nil {
		return err
	}
	return checkServing(ctx, c, got)
}

// ms rounds d for the progress lines.
func ms(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
