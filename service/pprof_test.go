package service

import (
	"bytes"
	"strings"
	"testing"
)

func TestPprofIndexAndProfiles(t *testing.T) {
	h := NewPprofHandler()
	res, body := do(t, h, "GET", "/debug/pprof/")
	if res.StatusCode != 200 || !strings.Contains(body, "heap") || !strings.Contains(body, "goroutine") {
		t.Fatalf("index: %d %q", res.StatusCode, body)
	}
	res, body = do(t, h, "GET", "/debug/pprof/heap?debug=1")
	if res.StatusCode != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("heap?debug=1: %d %.80q", res.StatusCode, body)
	}
	res, body = do(t, h, "GET", "/debug/pprof/goroutine?debug=2")
	if res.StatusCode != 200 || !strings.Contains(body, "goroutine ") {
		t.Errorf("goroutine?debug=2: %d %.80q", res.StatusCode, body)
	}
	res, _ = do(t, h, "GET", "/debug/pprof/cmdline")
	if res.StatusCode != 200 {
		t.Errorf("cmdline: %d", res.StatusCode)
	}
	res, _ = do(t, h, "GET", "/debug/pprof/nosuchprofile")
	if res.StatusCode != 404 {
		t.Errorf("unknown profile: %d, want 404", res.StatusCode)
	}
	res, _ = do(t, h, "GET", "/")
	if res.StatusCode != 302 || res.Header.Get("Location") != "/debug/pprof/" {
		t.Errorf("/: %d %q, want redirect to /debug/pprof/", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestPprofCPUProfileIsGzip(t *testing.T) {
	res, body := do(t, NewPprofHandler(), "GET", "/debug/pprof/profile?seconds=1")
	if res.StatusCode != 200 || !bytes.HasPrefix([]byte(body), []byte{0x1f, 0x8b}) {
		t.Errorf("profile: %d, first bytes %x, want gzip magic 1f8b", res.StatusCode, []byte(body)[:min(4, len(body))])
	}
}
