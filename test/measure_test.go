package test

import (
	"fmt"
	"os"
	"sort"
	"testing"
	"time"
)

// TestMeasureServicePortHandover prints, for upgrades under 32 closed-loop
// keep-alive clients and with one admin connection open but idle, how long after the successor's ack its admin port
// answers with its pid (and how long after its exec). A measurement, not an
// assertion: run it with MOSNLITE_MEASURE=1 on a quiet machine.
//
//	MOSNLITE_MEASURE=1 go test -count=1 -run TestMeasureServicePortHandover -v ./test/
func TestMeasureServicePortHandover(t *testing.T) {
	if os.Getenv("MOSNLITE_MEASURE") == "" {
		t.Skip("a measurement: set MOSNLITE_MEASURE=1")
	}
	e := newUpgradeEnv(t)
	cfg := e.config("c.json", "v1", false, "10s")
	cur := startMosn(t, "gen1", cfg, e.p)
	l := newLoad()
	l.run("http keep-alive", 32, keepAliveHTTP(addr(e.httpPort), "/"))
	defer l.finish()
	waitOK(t, l.byName["http keep-alive"], 500, 10*time.Second)
	var sinceAck, sinceExec []time.Duration
	for i := 2; i <= 10; i++ {
		// A client that connected to admin and has not sent its request yet
		// (a load balancer's pre-opened connection, a slow scraper).
		idle, err := dialQuick(addr(e.p.admin))
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		next := startProc(t, fmt.Sprintf("gen%d", i), "start", "-c", cfg)
		acked := make(chan time.Time, 1)
		go func() {
			if _, err := next.out.waitFor(ackedRE, readyTimeout, 0); err == nil {
				acked <- time.Now()
			}
			close(acked)
		}()
		for {
			var info map[string]interface{}
			code, body := getQuiet(e.p.adminURL("/server_info"))
			if code == 200 && jsonInto(body, &info) == nil && int(info["pid"].(float64)) == next.pid() {
				break
			}
			if time.Since(t0) > readyTimeout {
				t.Fatalf("generation %d never answered on admin", i)
			}
			time.Sleep(time.Millisecond)
		}
		t1 := time.Now()
		idle.Close()
		ta, ok := <-acked
		if !ok {
			t.Fatal("no ack line")
		}
		sinceAck = append(sinceAck, t1.Sub(ta))
		sinceExec = append(sinceExec, t1.Sub(t0))
		if code := cur.wait(20 * time.Second); code != 0 {
			t.Fatalf("generation %d exit %d", i-1, code)
		}
		cur = next
	}
	l.finish()
	med := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	t.Logf("admin answers with the new pid, after the ack: %v (median %v)", sinceAck, med(sinceAck))
	t.Logf("admin answers with the new pid, after the exec: %v (median %v)", sinceExec, med(sinceExec))
	t.Logf("load: %s", l.byName["http keep-alive"])
}

var ackedRE = regexpMust(`acked: old process stops accepting`)
