package hotrestarter

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// EnvRestartEpoch is the variable that tells START_SCRIPT its epoch.
const EnvRestartEpoch = "RESTART_EPOCH"

// ExecSpawner runs Path (START_SCRIPT) with Args, in an environment of Env
// (os.Environ() when nil) plus RESTART_EPOCH. Each child gets SIGTERM if the
// wrapper dies (Pdeathsig), which an exec'd mosnlite inherits.
type ExecSpawner struct {
	Path   string
	Args   []string
	Env    []string
	Stdout io.Writer // os.Stdout when nil
	Stderr io.Writer // os.Stderr when nil
}

// Start launches one child.
func (s *ExecSpawner) Start(epoch int) (Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	env := s.Env
	if env == nil {
		env = os.Environ()
	}
	// exec keeps the last of duplicate keys, so this wins over an inherited value.
	cmd.Env = append(append([]string(nil), env...), EnvRestartEpoch+"="+strconv.Itoa(epoch))
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	// Pdeathsig follows the thread that forks; Go's threads outlive the
	// children here (nothing locks and ends the spawning thread).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	// A grandchild holding a non-file Stdout pipe must not keep Wait from reaping.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("hotrestarter: start %s at epoch %d: %w", s.Path, epoch, err)
	}
	p := &execProcess{cmd: cmd, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

type execProcess struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu   sync.Mutex
	exit ExitStatus
}

// wait reaps the child and records how it ended.
func (p *execProcess) wait() {
	_ = p.cmd.Wait() // the status below says all that matters
	st := ExitStatus{Code: -1}
	if ps := p.cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.Signal = ws.Signal()
		} else {
			st.Code = ps.ExitCode()
		}
	}
	p.mu.Lock()
	p.exit = st
	p.mu.Unlock()
	close(p.done)
}

func (p *execProcess) Pid() int { return p.cmd.Process.Pid }

func (p *execProcess) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.cmd.Process.Signal(sig)
}

func (p *execProcess) Done() <-chan struct{} { return p.done }

func (p *execProcess) Exit() ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}
