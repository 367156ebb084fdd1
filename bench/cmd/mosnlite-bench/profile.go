package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// profileFetch is a CPU profile being taken from mosnlite's pprof port while
// a load runs.
type profileFetch struct {
	done chan error
}

// startProfile asks pprof at addr for a CPU profile of length d and writes
// it to path when it arrives; wait returns the outcome.
func startProfile(ctx context.Context, addr string, d time.Duration, path string) *profileFetch {
	f := &profileFetch{done: make(chan error, 1)}
	secs := max(1, int(d/time.Second))
	go func() {
		f.done <- fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), path)
	}()
	return f
}

func (f *profileFetch) wait() error { return <-f.done }

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("%s: %s %s", url, res.Status, b)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, res.Body); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return out.Close()
}
