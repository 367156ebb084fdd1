package hotrestarter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recordingSpawner remembers the processes an ExecSpawner started.
type recordingSpawner struct {
	ExecSpawner
	mu    sync.Mutex
	procs []Process
}

func (s *recordingSpawner) Start(epoch int) (Process, error) {
	p, err := s.ExecSpawner.Start(epoch)
	if err == nil {
		s.mu.Lock()
		s.procs = append(s.procs, p)
		s.mu.Unlock()
	}
	return p, err
}

func (s *recordingSpawner) all() []Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Process(nil), s.procs...)
}

// startScript writes START_SCRIPT: it records its epoch and pid in dir, then
// becomes a long sleep, or exits with EXIT_AT_<epoch> if that is set.
func startScript(t *testing.T) (script, dir string) {
	t.Helper()
	dir = t.TempDir()
	script = filepath.Join(dir, "start.sh")
	body := `#!/bin/sh
echo $$ > "$MARK_DIR/epoch_$RESTART_EPOCH.tmp" && mv "$MARK_DIR/epoch_$RESTART_EPOCH.tmp" "$MARK_DIR/epoch_$RESTART_EPOCH"
eval "code=\${EXIT_AT_$RESTART_EPOCH:-}"
if [ -n "$code" ]; then exit "$code"; fi
exec sleep 30
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, dir
}

// waitMark waits until the child of epoch has written its mark.
func waitMark(t *testing.T, dir string, epoch int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("epoch_%d", epoch))); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("epoch %d never started", epoch)
}

func runReal(t *testing.T, env ...string) (sp *recordingSpawner, dir string, sigs chan os.Signal, code chan int) {
	t.Helper()
	script, dir := startScript(t)
	sp = &recordingSpawner{ExecSpawner: ExecSpawner{
		Path: script,
		Env:  append(append(os.Environ(), "MARK_DIR="+dir, "RESTART_EPOCH=stale"), env...),
	}}
	sigs, code = make(chan os.Signal), make(chan int, 1)
	r := &Restarter{Spawner: sp, TermWait: 5 * time.Second, KillWait: 5 * time.Second}
	go func() { code <- r.Run(context.Background(), sigs) }()
	t.Cleanup(func() {
		for _, p := range sp.all() {
			_ = p.Signal(syscall.SIGKILL)
		}
	})
	return sp, dir, sigs, code
}

func waitCode(t *testing.T, code chan int) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("wrapper did not exit")
		return -1
	}
}

func assertReaped(t *testing.T, procs []Process) {
	t.Helper()
	for _, p := range procs {
		select {
		case <-p.Done():
		default:
			t.Fatalf("pid %d not reaped", p.Pid())
		}
		if err := syscall.Kill(p.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("pid %d still exists (zombie?): %v", p.Pid(), err)
		}
	}
}

func TestRealProcessesRestartAndTerm(t *testing.T) {
	sp, dir, sigs, code := runReal(t)
	waitMark(t, dir, 0)
	sigs <- syscall.SIGHUP
	waitMark(t, dir, 1)
	procs := sp.all()
	if len(procs) != 2 {
		t.Fatalf("%d children, want 2", len(procs))
	}
	for i, p := range procs {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("epoch_%d", i)))
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(p.Pid()) {
			t.Fatalf("epoch %d mark %q (pid %d): RESTART_EPOCH not passed right: %v", i, b, p.Pid(), err)
		}
	}
	sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit code %d, want 0", c)
	}
	assertReaped(t, procs)
	for _, p := range procs {
		if st := p.Exit(); st.Signal != syscall.SIGTERM {
			t.Fatalf("pid %d ended %v, want by SIGTERM", p.Pid(), st)
		}
	}
}

func TestRealChildFailureTakesAllDown(t *testing.T) {
	sp, dir, sigs, code := runReal(t, "EXIT_AT_1=3")
	waitMark(t, dir, 0)
	sigs <- syscall.SIGHUP
	if c := waitCode(t, code); c != 1 {
		t.Fatalf("exit code %d, want 1", c)
	}
	procs := sp.all()
	assertReaped(t, procs)
	if st := procs[0].Exit(); st.Signal != syscall.SIGKILL {
		t.Fatalf("epoch 0 ended %v, want SIGKILL", st)
	}
	if st := procs[1].Exit(); st.Code != 3 {
		t.Fatalf("epoch 1 ended %v, want exit code 3", st)
	}
}

func TestExecSpawnerMissingScript(t *testing.T) {
	sp := &ExecSpawner{Path: filepath.Join(t.TempDir(), "nope")}
	if _, err := sp.Start(0); err == nil {
		t.Fatal("started a missing script")
	}
}
