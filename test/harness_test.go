// Package test holds black-box tests: they build the real mosnlite binary and
// drive real processes on 127.0.0.1.
package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/internal/freeport"
)

func buildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "mosnlite")
	cmd := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, "./cmd/mosnlite")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

func TestMain(m *testing.M) {
	if path := os.Getenv(dialHelperEnv); path != "" {
		os.Exit(runDialHelper(path))
	}
	dir, err := os.MkdirTemp("", "mosnlite-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err := buildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = bin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binPath is set once by TestMain before any test runs and never changed.
var binPath string

// logBuf collects a process's output line by line and lets tests wait for a line.
type logBuf struct {
	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
	done  bool
}

func newLogBuf() *logBuf {
	b := &logBuf{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *logBuf) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b.mu.Lock()
		b.lines = append(b.lines, sc.Text())
		b.cond.Broadcast()
		b.mu.Unlock()
	}
	b.mu.Lock()
	b.done = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// mark returns the number of lines so far: waitFor(re, timeout, mark) looks only after them.
func (b *logBuf) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}

// waitFor returns the first line from index from on matching re, or an error at the deadline.
func (b *logBuf) waitFor(re *regexp.Regexp, timeout time.Duration, from int) (string, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer timer.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := from; ; {
		for ; i < len(b.lines); i++ {
			if re.MatchString(b.lines[i]) {
				return b.lines[i], nil
			}
		}
		if b.done {
			return "", fmt.Errorf("output ended without a line matching %q", re)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no line matching %q within %s", re, timeout)
		}
		b.cond.Wait()
	}
}

// proc is one running mosnlite (or other) process.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	out    *logBuf
	exited chan struct{}
	err    error
}

// startProc starts the mosnlite binary with args. The process is killed at test end if still running.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, exec.Command(binPath, args...))
}

func startCmd(t testing.TB, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: cmd, out: newLogBuf(), exited: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", name, err)
	}
	go p.out.consume(pr)
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("--- output of %s (pid %d) ---\n%s", name, p.pid(), p.out.String())
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// waitLog waits for a line matching pattern anywhere in the output so far or to come.
func (p *proc) waitLog(pattern string, timeout time.Duration) string {
	p.t.Helper()
	return p.waitLogAfter(0, pattern, timeout)
}

// waitLogAfter waits for a matching line after the first mark lines (see logBuf.mark).
func (p *proc) waitLogAfter(mark int, pattern string, timeout time.Duration) string {
	p.t.Helper()
	line, err := p.out.waitFor(regexp.MustCompile(pattern), timeout, mark)
	if err != nil {
		p.t.Fatalf("%s: %v\noutput:\n%s", p.name, err, p.out.String())
	}
	return line
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("%s (pid %d) did not exit within %s\noutput:\n%s", p.name, p.pid(), timeout, p.out.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// freePort returns a 127.0.0.1 port that was free a moment ago, outside the
// kernel's ephemeral range (no outgoing connection takes it before the
// process binds it), and never one it returned before in this test binary.
func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p, err := freeport.Port() // below the ephemeral range: see the package
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := handedOut.LoadOrStore(p, true); !dup {
			return p
		}
	}
	t.Fatal("no fresh free port in 100 tries")
	return 0
}

// handedOut holds every port freePort returned (written only by freePort).
var handedOut sync.Map

// freePorts returns n distinct free ports (see freePort).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		out[i] = freePort(t)
	}
	return out
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// writeJSON writes v as JSON into dir/name and returns the path.
func writeJSON(t testing.TB, dir, name string, v interface{}) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitHTTP polls url until it answers with want, within timeout.
func waitHTTP(t testing.TB, url string, want int, timeout time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %d within %s (last: %s)", url, want, timeout, last)
}

// get fetches url over a new connection and returns status and body.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func getJSON(t testing.TB, url string, v interface{}) {
	t.Helper()
	code, body := get(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %q", url, err, body)
	}
}

func post(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Post(url, "text/plain", bytes.NewReader(nil))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
