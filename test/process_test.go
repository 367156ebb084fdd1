package test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDefaultConfig runs `mosnlite start` with no -c: the embedded default
// answers on 127.0.0.1:2046 at once. It uses the fixed default ports, so it
// is skipped when something else holds them.
func TestDefaultConfig(t *testing.T) {
	for _, a := range []string{"127.0.0.1:2046", "127.0.0.1:34901", "127.0.0.1:34902", "127.0.0.1:34903"} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Skipf("default port %s is taken: %v", a, err)
		}
		l.Close()
	}
	p := startProc(t, "default", "start")
	waitHTTP(t, "http://127.0.0.1:34901/ready", 200, readyTimeout)
	if code, body := get(t, "http://127.0.0.1:2046/"); code != 200 || !strings.Contains(body, "mosnlite") {
		t.Fatalf("default listener: %d %q", code, body)
	}
	if code, _ := get(t, "http://127.0.0.1:34903/metrics"); code != 200 {
		t.Fatalf("default metrics: %d", code)
	}
	if code, _ := get(t, "http://127.0.0.1:34902/debug/pprof/"); code != 200 {
		t.Fatalf("default pprof: %d", code)
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT", code)
	}
}

// TestLogFileReopenedOnSIGUSR1 moves the log file away as logrotate does;
// after SIGUSR1 the process writes to a new file at the configured path.
func TestLogFileReopenedOnSIGUSR1(t *testing.T) {
	e := newUpgradeEnv(t)
	logPath := filepath.Join(e.dir, "logs", "mosnlite.log")
	cfg := mosnConfig(e.uds, e.p, "5s", []obj{httpListener("web", addr(e.httpPort), "r")},
		[]obj{router("r", "web", directRoute("/version", 200, "v1"))}, []obj{cluster("web", e.web.addr())})
	srv := cfg["servers"].([]obj)[0]
	srv["default_log_path"] = logPath
	srv["log_format"] = "json"
	srv["default_log_level"] = "debug"
	p := startMosn(t, "logger", writeJSON(t, e.dir, "c.json", cfg), e.p)
	first, err := os.ReadFile(logPath)
	if err != nil || !strings.Contains(string(first), `"msg":"ready"`) {
		t.Fatalf("log file before rotation: %v\n%s", err, first)
	}
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGUSR1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "log files reopened") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new log file after SIGUSR1 (rotated file:\n%s)", mustRead(rotated))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(mustRead(rotated), "log files reopened") {
		t.Fatal("the process kept writing to the rotated file")
	}
	p.signal(syscall.SIGTERM)
	p.wait(10 * time.Second)
}

func mustRead(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
