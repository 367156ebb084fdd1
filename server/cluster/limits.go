package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

// ErrOverflow is wrapped by the error of a connection or request that a
// circuit breaker refused (an *OverflowError).
var ErrOverflow = errors.New("circuit breaker open")

// OverflowError says which limit of a cluster refused a connection or a
// request.
type OverflowError struct {
	Cluster string
	Limit   string // max_connections, max_pending_requests, max_requests
	Max     int64
}

func (e *OverflowError) Error() string {
	return fmt.Sprintf("cluster %s: %s (%d) reached: %v", e.Cluster, e.Limit, e.Max, ErrOverflow)
}

func (e *OverflowError) Unwrap() error { return ErrOverflow }

// The retry budget when circuit_breakers sets no max_retries: retries in
// flight to a cluster may be at most this share of its requests in flight,
// and never fewer than retryBudgetMin (Envoy's retry budget defaults), so
// that retries cannot multiply the load of a failing cluster.
const (
	retryBudgetPercent = 20
	retryBudgetMin     = 3
)

// limits are a cluster's circuit breakers: MOSN's circuit_breakers, the
// first thresholds, each 0 for no limit, over the whole cluster.
//
//   - connections: upstream connections open (pooled, in use, TCP sessions);
//     one more is refused, or waits (pending) when max_pending_requests
//     allows it;
//   - pending: requests waiting for a connection while connections are at
//     their limit (0: none wait, as in MOSN, whose HTTP/1 pool refuses at
//     once);
//   - requests: requests in flight to the cluster;
//   - retries: retries in flight; without max_retries, the retry budget.
type limits struct {
	cluster                                   string
	maxConns, maxPending, maxRequests, maxRet int64

	mu      sync.Mutex
	conns   int64 // open connections
	waiters []chan struct{}

	requests atomic.Int64 // in flight, counted whatever the limit
	retries  atomic.Int64

	cxOverflow, pendingOverflow, rqOverflow, retryTotal, retryOverflow *stats.Counter
}

func newLimits(cfg config.Cluster, reg *stats.Registry) *limits {
	l := &limits{
		cluster: cfg.Name,
		cxOverflow: reg.Counter("cluster.upstream_cx_overflow_total",
			"Times the cluster's max_connections was reached.", "cluster", cfg.Name),
		pendingOverflow: reg.Counter("cluster.upstream_rq_pending_overflow_total",
			"Requests refused (503) because connections were at max_connections and no more may wait.", "cluster", cfg.Name),
		rqOverflow: reg.Counter("cluster.upstream_rq_overflow_total",
			"Requests refused (503) because max_requests were in flight.", "cluster", cfg.Name),
		retryTotal: reg.Counter("cluster.upstream_rq_retry_total",
			"Requests sent again by a route's retry policy.", "cluster", cfg.Name),
		retryOverflow: reg.Counter("cluster.upstream_rq_retry_overflow_total",
			"Retries not made because max_retries (or the retry budget) were in flight.", "cluster", cfg.Name),
	}
	if len(cfg.CircuitBreakers) > 0 {
		t := cfg.CircuitBreakers[0]
		l.maxConns, l.maxPending = int64(t.MaxConnections), int64(t.MaxPendingRequests)
		l.maxRequests, l.maxRet = int64(t.MaxRequests), int64(t.MaxRetries)
	}
	return l
}

// takeConn reserves a connection slot if one is free.
func (l *limits) takeConn() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConns > 0 && l.conns >= l.maxConns {
		return false
	}
	l.conns++
	return true
}

// addConn counts a connection that did not ask for a slot (one adopted from
// a predecessor): it is open here whatever the limit.
func (l *limits) addConn() {
	l.mu.Lock()
	l.conns++
	l.mu.Unlock()
}

// releaseConn gives a slot back and wakes the first waiter.
func (l *limits) releaseConn() {
	l.mu.Lock()
	l.conns--
	l.wakeLocked()
	l.mu.Unlock()
}

// wake tells the first waiter that something changed (a connection went
// back to a pool).
func (l *limits) wake() {
	if l.maxConns == 0 {
		return
	}
	l.mu.Lock()
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *limits) wakeLocked() {
	if len(l.waiters) == 0 {
		return
	}
	ch := l.waiters[0]
	l.waiters = l.waiters[1:]
	ch <- struct{}{} // buffered, never blocks
}

// wait waits for a slot or a pooled connection to come free, as one of at
// most maxPending waiters; it returns an *OverflowError at once if there is
// no room to wait, or ctx's error.
func (l *limits) wait(ctx context.Context) error {
	l.mu.Lock()
	if l.maxConns == 0 || l.conns < l.maxConns {
		l.mu.Unlock()
		return nil
	}
	if int64(len(l.waiters)) >= l.maxPending {
		l.mu.Unlock()
		l.pendingOverflow.Inc()
		return &OverflowError{Cluster: l.cluster, Limit: "max_connections", Max: l.maxConns}
	}
	ch := make(chan struct{}, 1)
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for i, w := range l.waiters {
			if w == ch {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				break
			}
		}
		select {
		case <-ch: // woken as we gave up: pass it on
			l.wakeLocked()
		default:
		}
		l.mu.Unlock()
		return fmt.Errorf("cluster %s: waiting for a connection (max_connections %d): %w", l.cluster, l.maxConns, ctx.Err())
	}
}

// Pending returns the requests waiting for a connection under
// max_connections.
func (c *Cluster) Pending() int {
	c.lim.mu.Lock()
	defer c.lim.mu.Unlock()
	return len(c.lim.waiters)
}

// Requests returns the requests in flight to the cluster.
func (c *Cluster) Requests() int64 { return c.lim.requests.Load() }

// StartRequest counts a request in flight to the cluster, or refuses it
// with an *OverflowError when max_requests are in flight already. A request
// that started must be ended with EndRequest.
func (c *Cluster) StartRequest() error {
	l := c.lim
	n := l.requests.Add(1)
	if l.maxRequests > 0 && n > l.maxRequests {
		l.requests.Add(-1)
		l.rqOverflow.Inc()
		return &OverflowError{Cluster: c.name, Limit: "max_requests", Max: l.maxRequests}
	}
	return nil
}

// EndRequest undoes StartRequest.
func (c *Cluster) EndRequest() { c.lim.requests.Add(-1) }

// StartRetry reserves a retry, or reports false (counting it) when
// max_retries — or, without it, the retry budget: a fifth of the requests in
// flight, at least 3 — are in flight already. A retry that started must be
// ended with EndRetry.
func (c *Cluster) StartRetry() bool {
	l := c.lim
	max := l.maxRet
	if max == 0 {
		max = max64(retryBudgetMin, l.requests.Load()*retryBudgetPercent/100)
	}
	if n := l.retries.Add(1); n > max {
		l.retries.Add(-1)
		l.retryOverflow.Inc()
		return false
	}
	l.retryTotal.Inc()
	return true
}

// EndRetry undoes StartRetry.
func (c *Cluster) EndRetry() { c.lim.retries.Add(-1) }

// OpenConns returns the upstream connections open to the cluster.
func (c *Cluster) OpenConns() int64 {
	c.lim.mu.Lock()
	defer c.lim.mu.Unlock()
	return c.lim.conns
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
