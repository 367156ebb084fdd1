package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// newClient is an HTTP client that keeps no connection open: an idle
// keep-alive connection would keep the old process from exiting at once.
func newClient() *http.Client {
	return &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
}

// get fetches url and returns the body of a 200 answer.
func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return body, nil
}

// waitAdminReady polls admin /ready until it says 200, p exits or timeout passes.
func waitAdminReady(ctx context.Context, c *http.Client, admin string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited (%v); output:\n%s", p.name, p.err, p.logTail())
		}
		if _, last = get(ctx, c, "http://"+admin+"/ready"); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("admin /ready not 200 after %v: %v", timeout, last)
}

// serverListeners returns name → bound address of the proxy listeners that
// admin /listeners reports.
func serverListeners(ctx context.Context, c *http.Client, admin string) (map[string]string, error) {
	body, err := get(ctx, c, "http://"+admin+"/listeners")
	if err != nil {
		return nil, err
	}
	var ls []struct{ Name, Kind, Network, Address string }
	if err := json.Unmarshal(body, &ls); err != nil {
		return nil, fmt.Errorf("admin /listeners: %w", err)
	}
	out := map[string]string{}
	for _, l := range ls {
		if l.Kind == "server" {
			out[l.Name] = l.Address
		}
	}
	return out, nil
}

// checkPorts says whether got lists exactly the n bench listeners, each on
// the port want gives it (want nil: any non-zero port).
func checkPorts(got, want map[string]string, n int) error {
	var problems []string
	for i := range n {
		name := listenerName(i)
		addr, ok := got[name]
		switch {
		case !ok:
			problems = append(problems, name+" missing")
		case want != nil && addr != want[name]:
			problems = append(problems, fmt.Sprintf("%s on %s, was %s", name, addr, want[name]))
		case want == nil && strings.HasSuffix(addr, ":0"):
			problems = append(problems, name+" has no port")
		}
	}
	if len(got) != n {
		problems = append(problems, fmt.Sprintf("%d proxy listeners, want %d", len(got), n))
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	if len(problems) > 5 {
		problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
	}
	return errors.New("admin /listeners: " + strings.Join(problems, "; "))
}

// checkServing sends one HTTP request to every address and wants the bench
// body back from each; a few run at a time.
func checkServing(ctx context.Context, c *http.Client, addrs map[string]string) error {
	const workers = 8
	names := make(chan string)
	errs := make(chan error, len(addrs))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				body, err := get(ctx, c, "http://"+addrs[name]+"/")
				if err == nil && string(body) != respBody {
					err = fmt.Errorf("body %q, want %q", body, respBody)
				}
				if err != nil {
					errs <- fmt.Errorf("listener %s (%s): %w", name, addrs[name], err)
				}
			}
		}()
	}
	for name := range addrs {
		names <- name
	}
	close(names)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		return fmt.Errorf("%d of %d listeners do not serve: %w", len(all), len(addrs), errors.Join(all[:min(len(all), 3)]...))
	}
	return nil
}

// serverInfo is what the bench reads of admin /server_info.
type serverInfo struct {
	PID        int `json:"pid"`
	Generation int `json:"generation"`
}

func getServerInfo(ctx context.Context, c *http.Client, admin string) (serverInfo, error) {
	var si serverInfo
	body, err := get(ctx, c, "http://"+admin+"/server_info")
	if err != nil {
		return si, err
	}
	if err := json.Unmarshal(body, &si); err != nil {
		return si, fmt.Errorf("admin /server_info: %w", err)
	}
	return si, nil
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}
