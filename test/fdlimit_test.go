package test

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A process out of file descriptors can still be upgraded — the usual cure
// for a misconfigured limit: it keeps a spare descriptor for the upgrade
// request and the handoff, and warns about failing accepts rate-limited.
func TestUpgradeAtTheFileLimit(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("no prlimit (util-linux)")
	}
	e := newUpgradeEnv(t)
	cfg := e.config("c.json", "v1", false, "5s")
	gen1 := startMosn(t, "gen1", cfg, e.p)
	if out, err := exec.Command("prlimit", "--pid", fmt.Sprint(gen1.pid()), "--nofile=256:256").CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v %s", err, out)
	}
	// 400 clients: gen1 holds what its limit lets it, the rest wait in the
	// accept queue.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 400; i++ {
		c, err := net.DialTimeout("tcp", addr(e.httpPort), 2*time.Second)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		conns = append(conns, c)
	}
	gen1.waitLog(`accept failed`, 10*time.Second) // at the limit
	gen2 := startProc(t, "gen2", "start", "-c", cfg)
	waitReady(gen2, 2)
	if code, body := get(t, "http://"+addr(e.httpPort)+"/version"); code != 200 || body != "v1" {
		t.Fatalf("after the upgrade: %d %q", code, body)
	}
	if code := gen1.wait(20 * time.Second); code != 0 {
		t.Fatalf("gen1 exit %d", code)
	}
	if n := strings.Count(gen1.out.String(), `msg="accept on reconfig.sock"`); n > 1 {
		t.Errorf("the reconfig.sock accept warning was logged %d times", n)
	}
}
