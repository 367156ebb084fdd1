package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

// BenchmarkIdleConnMemory measures what one idle keep-alive connection
// costs the proxy in Go memory (heap and goroutine stacks; the kernel's
// socket buffers are not the process's): after one request each, while its
// goroutine waits for the next (goroutine), and once the idle poller holds
// it (poller). The 2 KiB goal is for the second; the first is about what
// every idle connection cost before the poller. The clients run in a child
// process so that only the proxy's side is counted.
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 2000
	be := startBenchBackend(b)
	for _, mode := range []string{"goroutine", "poller"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				perConn := measureIdle(b, be, conns, mode == "poller")
				b.ReportMetric(perConn, "bytes/conn")
			}
		})
	}
}

func startBenchBackend(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func goMemory() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

func measureIdle(b *testing.B, backend string, n int, parked bool) float64 {
	b.Helper()
	p, err := newHTTP(httpListener(config.HTTPProxyConfig{}), singleRoute(0), newBenchManager(b, backend), nil, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	if !parked {
		p.handoff = time.Hour
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(l)
	defer func() {
		l.Close()
		p.CloseAll()
		p.Wait(waitBenchCtx(b))
	}()
	// Warm up: pools, the poller, one upstream connection.
	warm := dialBench(b, l.Addr().String())
	warm.Close()
	before := goMemory()
	child := exec.Command(os.Args[0], "-test.run=^TestIdleClients$")
	child.Env = append(os.Environ(), "IDLE_CLIENTS_ADDR="+l.Addr().String(), "IDLE_CLIENTS_N="+strconv.Itoa(n))
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child closes its connections and exits
		child.Wait()
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("client process: %q %v", line, err)
	}
	if parked {
		deadline := time.Now().Add(p.handoff + 10*time.Second)
		for p.idle.idleCount() < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d connections parked", p.idle.idleCount(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	} else if got := p.idle.idleCount(); got != 0 {
		b.Fatalf("%d connections parked within the handoff already", got)
	}
	return float64(goMemory()-before) / float64(n)
}

// TestIdleClients is the client process of BenchmarkIdleConnMemory: it
// opens the connections, completes a request on each, says ready, and holds
// them until its stdin closes.
func TestIdleClients(t *testing.T) {
	addr := os.Getenv("IDLE_CLIENTS_ADDR")
	if addr == "" {
		t.Skip("only run by BenchmarkIdleConnMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("IDLE_CLIENTS_N"))
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, dialBench(t, addr))
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// dialBench opens a connection and completes one request on it.
func dialBench(b testing.TB, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	return c
}
