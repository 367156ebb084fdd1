package test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// gomaxprocs reads go_sched_gomaxprocs_threads from a /metrics scrape.
func gomaxprocs(t *testing.T, url string) int {
	t.Helper()
	f := scrape(t, url)["go_sched_gomaxprocs_threads"]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("/metrics has no go_sched_gomaxprocs_threads")
	}
	return int(f.GetMetric()[0].GetGauge().GetValue())
}

// waitProcs polls /metrics until GOMAXPROCS is one (more: above one), for
// at most timeout.
func waitProcs(t *testing.T, url string, more bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	got := 0
	for time.Now().Before(deadline) {
		if got = gomaxprocs(t, url); (got > 1) == more {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GOMAXPROCS %d after %v, want it %s", got, timeout, map[bool]string{false: "1", true: "above 1"}[more])
}

// The processor governor of a real process: idle, it runs on one processor;
// a load that keeps it busy gets more; idle again, one.
func TestProcessorGovernorFollowsTheLoad(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: nothing to govern")
	}
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set in the environment, which turns the governor off")
	}
	dir := t.TempDir()
	p := newPorts(t)
	httpPort := freePort(t)
	cfg := mosnConfig(filepath.Join(dir, "uds"), p, "5s",
		[]obj{httpListener("web_in", addr(httpPort), "r")},
		[]obj{router("r", "none", directRoute("/", 200, "ok"))}, []obj{cluster("none", "127.0.0.1:1")})
	startMosn(t, "mosnlite", writeJSON(t, dir, "c.json", cfg), p)
	waitProcs(t, p.metricsURL(), false, 15*time.Second)

	// Pipelined keep-alive requests to a direct response: the proxy does
	// nearly all the work, the clients little.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // the load ends with the test whatever happens
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	const depth = 32
	batch := strings.Repeat("GET / HTTP/1.1\r\nHost: x\r\n\r\n", depth)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr(httpPort))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for ctx.Err() == nil {
				if _, err := c.Write([]byte(batch)); err != nil {
					errs <- err
					return
				}
				for range depth {
					if err := readOK(br); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	waitProcs(t, p.metricsURL(), true, 30*time.Second)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("load: %v", err)
	}
	waitProcs(t, p.metricsURL(), false, 15*time.Second)
}

// readOK reads one response with a Content-Length body and checks it is a 200.
func readOK(br *bufio.Reader) error {
	status, headers, err := readHeaders(br)
	if err != nil {
		return err
	}
	if !strings.Contains(status, " 200 ") {
		return fmt.Errorf("status %q", status)
	}
	n := atoi(headers["content-length"])
	if _, err := br.Discard(n); err != nil {
		return err
	}
	return nil
}
