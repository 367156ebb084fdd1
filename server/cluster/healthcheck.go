package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

// healthCheckDefaultInterval and friends stand in for zero config values
// (config.ApplyDefaults puts MOSN's there; a Cluster built in Go may not).
const (
	healthCheckDefaultInterval = 10 * time.Second
	healthCheckDefaultTimeout  = time.Second
	// healthCheckDefaultJitter is MOSN's interval_jitter when 0.
	healthCheckDefaultJitter = 5 * time.Millisecond
)

// runHealthCheck probes h after the initial delay (initial_delay_seconds;
// at once without), then every interval plus a random part of the jitter
// (as MOSN: [0, interval_jitter)), until ctx ends, flipping its health
// after the configured number of consecutive results.
func (c *Cluster) runHealthCheck(ctx context.Context, h *Host) {
	hc := c.health
	interval := hc.Interval.Duration
	if interval <= 0 {
		interval = healthCheckDefaultInterval
	}
	jitter := hc.IntervalJitter.Duration
	if jitter <= 0 {
		jitter = healthCheckDefaultJitter
	}
	healthyAfter := max(1, hc.HealthyThreshold)
	unhealthyAfter := max(1, hc.UnhealthyThreshold)

	if d := hc.InitialDelaySeconds.Duration; d > 0 {
		select {
		case <-ctx.Done():
			return
		case <-c.after(d):
		}
	}
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
		case <-c.after(interval + time.Duration(c.jitter(int64(jitter)))):
		}
	}
}

// probe checks h once within the timeout: a TCP connect; then, with
// MOSN's http_check_config (protocol Http1), its request and status
// ranges, or with mosnlite's path, GET path and a 2xx.
func (c *Cluster) probe(ctx context.Context, h *Host) error {
	timeout := c.health.Timeout.Duration
	if timeout <= 0 {
		timeout = healthCheckDefaultTimeout
	}
	hcc := c.health.HTTPCheck
	if hcc != nil && hcc.Timeout.Duration > 0 && hcc.Timeout.Duration < timeout {
		timeout = hcc.Timeout.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	network, address := h.network, h.address
	if hcc != nil && hcc.Port > 0 && network == config.NetworkTCP {
		if host, _, err := net.SplitHostPort(address); err == nil {
			address = net.JoinHostPort(host, strconv.Itoa(hcc.Port))
		}
	}
	var conn net.Conn
	var err error
	if hcc != nil && hcc.Scheme == "https" {
		conn, err = c.dial(ctx, network, address) // the check's own TLS (run)
	} else {
		conn, err = c.connect(ctx, h, network, address) // with the cluster's TLS, as requests go
	}
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	var p httpProbe
	switch {
	case hcc != nil:
		p = mosnProbe(hcc, address, network)
	case c.health.Path != "":
		p = httpProbe{method: http.MethodGet, path: c.health.Path, host: hostHeader(address, network), ok: is2xx}
	default:
		return nil
	}
	p.roots = c.tlsRoots
	return p.run(ctx, conn)
}

// httpProbe is one HTTP health check request and what answers are healthy.
type httpProbe struct {
	method, path, host string
	tlsName            string         // scheme https: the server name to verify
	roots              *x509.CertPool // the CAs it is verified with (nil: the system's)
	ok                 func(status int) bool
}

// mosnProbe is MOSN's HTTP check: method (default GET), path with its
// query, Host domain (default the address checked), healthy codes (default
// 200 only, as MOSN), over TLS for scheme https.
func mosnProbe(h *config.HTTPCheckConfig, address, network string) httpProbe {
	p := httpProbe{method: h.Method, path: h.Path, host: h.Domain}
	if p.method == "" {
		p.method = http.MethodGet
	}
	if p.path == "" {
		p.path = "/"
	}
	if p.host == "" {
		p.host = hostHeader(address, network)
	}
	if h.Scheme == "https" {
		p.tlsName = p.host
		if hp, _, err := net.SplitHostPort(p.host); err == nil {
			p.tlsName = hp
		}
	}
	codes := h.Codes
	p.ok = func(status int) bool {
		if len(codes) == 0 {
			return status == http.StatusOK
		}
		for _, r := range codes {
			if status >= r.Start && status <= r.End {
				return true
			}
		}
		return false
	}
	return p
}

func is2xx(status int) bool { return status >= 200 && status <= 299 }

// hostHeader is what a check sends as Host for a host address.
func hostHeader(address, network string) string {
	if network == config.NetworkUnix {
		return "localhost"
	}
	return address
}

func (p httpProbe) run(ctx context.Context, conn net.Conn) error {
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
	}
	if p.tlsName != "" {
		tc := tls.Client(conn, &tls.Config{ServerName: p.tlsName, RootCAs: p.roots, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	scheme := "http"
	if p.tlsName != "" {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, p.method, scheme+"://"+p.host+p.path, nil)
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
	if !p.ok(resp.StatusCode) {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
