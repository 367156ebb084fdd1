package cluster

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

func limitedCluster(t *testing.T, reg *stats.Registry, th config.Thresholds, hosts ...string) *Cluster {
	t.Helper()
	cfg := config.Cluster{Name: "c", CircuitBreakers: []config.Thresholds{th}}
	for _, h := range hosts {
		cfg.Hosts = append(cfg.Hosts, config.Host{Address: h})
	}
	return newTestManager(t, reg, cfg).Get("c")
}

func counter(reg *stats.Registry, name string) float64 {
	return reg.Counter(name, "", "cluster", "c").Value()
}

func TestMaxConnectionsRefusesWithoutPending(t *testing.T) {
	l := acceptingListener(t)
	reg := stats.New()
	c := limitedCluster(t, reg, config.Thresholds{MaxConnections: 2}, l.Addr().String())
	h := c.Hosts()[0]
	a, err := c.Connect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Connect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Connect(context.Background(), h)
	var oe *OverflowError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOverflow) || oe.Limit != "max_connections" {
		t.Fatalf("third connect: %v, want an overflow of max_connections", err)
	}
	if got := counter(reg, "cluster.upstream_cx_overflow_total"); got != 1 {
		t.Fatalf("cx_overflow = %v, want 1", got)
	}
	if got := counter(reg, "cluster.upstream_rq_pending_overflow_total"); got != 1 {
		t.Fatalf("pending_overflow = %v, want 1", got)
	}
	// A closed connection frees its place, once however often it is closed.
	a.Close()
	a.Close()
	if n := c.OpenConns(); n != 1 {
		t.Fatalf("open = %d after a close, want 1", n)
	}
	d, err := c.Connect(context.Background(), h)
	if err != nil {
		t.Fatalf("connect after a close: %v", err)
	}
	// A pooled connection is closed to make room for a new one.
	c.Put(b)
	e, err := c.Connect(context.Background(), h)
	if err != nil {
		t.Fatalf("connect with one pooled: %v", err)
	}
	if h.IdleConns() != 0 || c.OpenConns() != 2 {
		t.Fatalf("idle %d open %d, want the pooled one closed for the new one", h.IdleConns(), c.OpenConns())
	}
	d.Close()
	e.Close()
	if n := c.OpenConns(); n != 0 {
		t.Fatalf("open = %d, want 0", n)
	}
}

func TestPendingRequestWaitsForAConnection(t *testing.T) {
	l := acceptingListener(t)
	reg := stats.New()
	c := limitedCluster(t, reg, config.Thresholds{MaxConnections: 1, MaxPendingRequests: 1}, l.Addr().String())
	h := c.Hosts()[0]
	busy, err := c.Connect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Conn, 1)
	go func() {
		conn, err := c.Connect(context.Background(), h)
		if err != nil {
			t.Errorf("pending connect: %v", err)
		}
		got <- conn
	}()
	// The second waiter finds no room to wait.
	waitFor(t, "the first request to wait", func() bool {
		c.lim.mu.Lock()
		defer c.lim.mu.Unlock()
		return len(c.lim.waiters) == 1
	})
	if _, err := c.Connect(context.Background(), h); !errors.Is(err, ErrOverflow) {
		t.Fatalf("second pending: %v, want an overflow", err)
	}
	// The busy connection goes back to the pool: the waiter takes it.
	c.Put(busy)
	select {
	case conn := <-got:
		if conn != busy {
			t.Fatalf("the waiter got another connection than the one pooled")
		}
		conn.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the pending request was not woken by the pooled connection")
	}
	// A waiter whose deadline passes gives up with the context's error.
	hold, err := c.Connect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Connect(ctx, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pending past its deadline: %v", err)
	}
}

func TestMaxRequestsAndRetryBudget(t *testing.T) {
	reg := stats.New()
	c := limitedCluster(t, reg, config.Thresholds{MaxRequests: 2, MaxRetries: 1}, "127.0.0.1:1")
	for i := 0; i < 2; i++ {
		if err := c.StartRequest(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.StartRequest(); !errors.Is(err, ErrOverflow) {
		t.Fatalf("third request: %v, want an overflow", err)
	}
	if got := counter(reg, "cluster.upstream_rq_overflow_total"); got != 1 {
		t.Fatalf("rq_overflow = %v", got)
	}
	c.EndRequest()
	if err := c.StartRequest(); err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	if !c.StartRetry() || c.StartRetry() {
		t.Fatal("max_retries 1: want one retry then a refusal")
	}
	c.EndRetry()
	if !c.StartRetry() {
		t.Fatal("a retry ended: want room for another")
	}
	if got := counter(reg, "cluster.upstream_rq_retry_total"); got != 2 {
		t.Fatalf("retries = %v, want 2", got)
	}
	if got := counter(reg, "cluster.upstream_rq_retry_overflow_total"); got != 1 {
		t.Fatalf("retry overflow = %v, want 1", got)
	}

	// Without max_retries: at least 3, else a fifth of the requests in flight.
	b := limitedCluster(t, stats.New(), config.Thresholds{}, "127.0.0.1:1")
	for i := 0; i < 3; i++ {
		if !b.StartRetry() {
			t.Fatalf("retry %d refused with the minimum budget of 3", i+1)
		}
	}
	if b.StartRetry() {
		t.Fatal("a fourth retry with no request in flight: want the budget to refuse it")
	}
	for i := 0; i < 25; i++ {
		_ = b.StartRequest()
	}
	if !b.StartRetry() || !b.StartRetry() || b.StartRetry() {
		t.Fatal("25 requests in flight: want a budget of 5 retries")
	}
}

func TestMaxRequestPerConnClosesAfterN(t *testing.T) {
	l, accepted := countingListener(t)
	m := newTestManager(t, stats.New(), config.Cluster{Name: "c", MaxRequestPerConn: 2, Hosts: []config.Host{{Address: l.Addr().String()}}})
	c := m.Get("c")
	h := c.Hosts()[0]
	conn, err := c.Get(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	c.Put(conn) // 1 request: pooled
	if again := c.Idle(h); again != conn {
		t.Fatal("after one request the connection is not pooled")
	}
	c.Put(conn) // 2 requests: closed
	if h.IdleConns() != 0 {
		t.Fatal("after max_request_per_conn requests the connection is still pooled")
	}
	if _, err := conn.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on the retired connection: %v, want closed", err)
	}
	waitFor(t, "the one connection to be accepted", func() bool { return accepted.Load() == 1 })
}
