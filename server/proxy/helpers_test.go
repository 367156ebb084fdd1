package proxy

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/service/stats"
)

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func newManager(t *testing.T, reg *stats.Registry, cfgs ...config.Cluster) *cluster.Manager {
	t.Helper()
	m, err := cluster.NewManager(cfgs, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// acceptEach runs each on every connection l accepts, on the accepting
// goroutine, until l is closed.
func acceptEach(l net.Listener, each func(net.Conn)) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			each(c)
		}
	}()
}

// serve runs p on a fresh listener and, at cleanup, stops accepting, closes
// every connection and checks that Serve returned nil and Wait returns.
func serve(t *testing.T, p Proxy) string {
	t.Helper()
	l := listen(t)
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after the listener closed, want nil", err)
		}
		p.CloseAll()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Wait(ctx); err != nil {
			t.Errorf("Wait after CloseAll: %v", err)
		}
	})
	return l.Addr().String()
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	l := listen(t)
	addr := l.Addr().String()
	l.Close()
	return addr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// payload returns n deterministic pseudo-random bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func newBenchManager(b *testing.B, hosts ...string) *cluster.Manager {
	b.Helper()
	m, err := cluster.NewManager([]config.Cluster{appCluster(hosts...)}, nil, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	return m
}

func waitBenchCtx(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	b.Cleanup(cancel)
	return ctx
}
