package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

// healthCheckDefaultInterval and friends stand in for zero config values.
const (
	healthCheckDefaultInterval = 10 * time.Second
	healthCheckDefaultTimeout  = time.Second
)

// runHealthCheck probes h now and then every interval until ctx ends,
// flipping its health after the configured number of consecutive results.
func (c *Cluster) runHealthCheck(ctx context.Context, h *Host) {
	hc := c.health
	interval := hc.Interval.Duration
	if interval <= 0 {
		interval = healthCheckDefaultInterval
	}
	healthyAfter := max(1, hc.HealthyThreshold)
	unhealthyAfter := max(1, hc.UnhealthyThreshold)

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	successes, failures := 0, 0
	for {
		err := c.probe(ctx, h)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			successes++
			if successes >= healthyAfter {
				c.setHealthy(h, true)
			}
		} else {
			successes = 0
			failures++
			c.log.WithError(err).WithField("host", h.address).Debug("health check failed")
			if failures >= unhealthyAfter {
				c.setHealthy(h, false)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// probe connects to h, and if a path is configured sends GET path and wants a 2xx.
func (c *Cluster) probe(ctx context.Context, h *Host) error {
	timeout := c.health.Timeout.Duration
	if timeout <= 0 {
		timeout = healthCheckDefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := c.dial(ctx, h.network, h.address)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if c.health.Path == "" {
		return nil
	}
	return httpProbe(ctx, conn, h, c.health)
}

func httpProbe(ctx context.Context, conn net.Conn, h *Host, hc *config.HealthCheck) error {
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
	}
	hostHeader := h.address
	if h.network == "unix" {
		hostHeader = "localhost"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostHeader+hc.Path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Close = true
	req.Header.Set("User-Agent", "mosnlite-healthcheck")
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
