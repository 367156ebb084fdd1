package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

// echoServer echoes each connection and half-closes it after the client's EOF.
type echoServer struct {
	addr string
	eofs atomic.Int32 // connections whose client half-close reached the backend
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	l := listen(t)
	t.Cleanup(func() { l.Close() })
	e := &echoServer{addr: l.Addr().String()}
	acceptEach(l, func(c net.Conn) {
		go func() {
			defer c.Close()
			if _, err := io.Copy(c, c); err == nil {
				e.eofs.Add(1)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}
		}()
	})
	return e
}

func tcpListener(cluster string, idle time.Duration) config.Listener {
	return config.Listener{Name: "tcp-l", FilterChains: []config.FilterChain{{Filters: []config.Filter{{
		Type: config.FilterTCPProxy,
		TCP:  &config.TCPProxyConfig{Cluster: cluster, IdleTimeout: config.Duration{Duration: idle}},
	}}}}}
}

func startTCP(t *testing.T, reg *stats.Registry, idle time.Duration, hosts ...string) (*tcpProxy, string) {
	t.Helper()
	var hs []config.Host
	for _, h := range hosts {
		hs = append(hs, config.Host{Address: h})
	}
	m := newManager(t, reg, config.Cluster{Name: "echo", Hosts: hs})
	p, err := newTCP(tcpListener("echo", idle), m, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return p, serve(t, p)
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

func TestTCPBigPayloadAndHalfClose(t *testing.T) {
	echo := startEcho(t)
	reg := stats.New()
	// The first host refuses: the session must retry on the echo host.
	_, addr := startTCP(t, reg, 0, closedAddr(t), echo.addr)
	c := dial(t, addr)

	data := payload(4 << 20)
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c) // ends only if the backend's half-close came back
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(data))
	}
	if echo.eofs.Load() != 1 {
		t.Fatal("backend did not see the client's half-close")
	}
	for name, want := range map[string]float64{
		"listener.downstream_cx_rx_bytes_total": float64(len(data)),
		"listener.downstream_cx_tx_bytes_total": float64(len(data)),
	} {
		if v := reg.Counter(name, "", "listener", "tcp-l").Value(); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := reg.Counter("tcp.downstream_sessions_total", "", "listener", "tcp-l", "cluster", "echo").Value(); v != 1 {
		t.Errorf("sessions = %v, want 1", v)
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

func TestTCPSessionSurvivesDrain(t *testing.T) {
	echo := startEcho(t)
	p, addr := startTCP(t, stats.New(), 0, echo.addr)
	c := dial(t, addr)
	roundTrip(t, c, "before")
	p.Drain()
	roundTrip(t, c, "after drain")
	if p.Active() != 1 {
		t.Fatalf("Active = %d, want 1", p.Active())
	}
	c.CloseWrite()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("read to EOF: %v", err)
	}
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatalf("Wait after the session ended: %v", err)
	}
}

func TestTCPCloseAllCutsSession(t *testing.T) {
	echo := startEcho(t)
	p, addr := startTCP(t, stats.New(), 0, echo.addr)
	c := dial(t, addr)
	roundTrip(t, c, "hello")
	p.CloseAll()
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("read after CloseAll: %v", err)
	}
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatalf("Wait after CloseAll: %v", err)
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	echo := startEcho(t)
	p, addr := startTCP(t, stats.New(), 100*time.Millisecond, echo.addr)
	c := dial(t, addr)
	roundTrip(t, c, "x")
	start := time.Now()
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("session closed after %v, before the idle timeout", d)
	}
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestTCPNoHostClosesClient(t *testing.T) {
	p, addr := startTCP(t, stats.New(), 0, closedAddr(t))
	c := dial(t, addr)
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestNewTCPErrors(t *testing.T) {
	m := newManager(t, stats.New(), config.Cluster{Name: "a"})
	if _, err := NewTCP(tcpListener("missing", 0), m, stats.New(), quietLog()); err == nil {
		t.Error("unknown cluster accepted")
	}
	if _, err := NewTCP(config.Listener{Name: "x"}, m, stats.New(), quietLog()); err == nil {
		t.Error("listener without tcp_proxy filter accepted")
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
