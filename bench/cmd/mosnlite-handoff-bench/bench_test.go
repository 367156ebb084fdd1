package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

func TestHandoffConfigParses(t *testing.T) {
	for _, n := range []int{1, 3, 1000} {
		b, err := handoffConfig(n, "/tmp/uds", "127.0.0.1:34999")
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(b)
		if err != nil {
			t.Fatalf("%d listeners: config.Parse: %v", n, err)
		}
		if len(cfg.Servers) != 1 || len(cfg.Servers[0].Listeners) != n {
			t.Fatalf("%d listeners: got %d servers", n, len(cfg.Servers))
		}
		sv := cfg.Servers[0]
		seen := map[string]bool{}
		for i, l := range sv.Listeners {
			if l.Name != listenerName(i) || l.Address != "127.0.0.1:0" || seen[l.Name] {
				t.Fatalf("listener %d: name %q address %q (dup %v)", i, l.Name, l.Address, seen[l.Name])
			}
			seen[l.Name] = true
		}
		if cfg.Admin == nil || cfg.Admin.Address != "127.0.0.1:34999" || cfg.UDSDir != "/tmp/uds" {
			t.Errorf("admin %+v uds_dir %q", cfg.Admin, cfg.UDSDir)
		}
		if sv.LogFormat != "json" || sv.GracefulTimeout.Duration != gracefulTimeout {
			t.Errorf("log_format %q graceful_timeout %v", sv.LogFormat, sv.GracefulTimeout)
		}
	}
}

func ds(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{ds(7), 7 * time.Millisecond},
		{ds(9, 1, 5), 5 * time.Millisecond},
		{ds(4, 1, 3, 2), 2500 * time.Microsecond},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestPercentileNearestRank(t *testing.T) {
	tenth := ds(10, 9, 8, 7, 6, 5, 4, 3, 2, 1) // unsorted on purpose
	for _, c := range []struct {
		in   []time.Duration
		p    float64
		want int
	}{
		{tenth, 90, 9},
		{tenth, 91, 10},
		{tenth, 100, 10},
		{tenth, 10, 1},
		{tenth, 50, 5},
		{ds(3, 1, 2, 5, 4), 90, 5}, // 5 samples: p90 is the max
		{ds(3, 1, 2, 5, 4), 60, 3},
		{ds(42), 1, 42},
	} {
		if got := percentile(c.in, c.p); got != time.Duration(c.want)*time.Millisecond {
			t.Errorf("percentile(%v, %v) = %v, want %dms", c.in, c.p, got, c.want)
		}
	}
	if got := percentile(nil, 90); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
}

func TestParseCounts(t *testing.T) {
	got, err := parseCounts("1, 100,1000")
	if err != nil || len(got) != 3 || got[0] != 1 || got[1] != 100 || got[2] != 1000 {
		t.Fatalf("parseCounts = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "-1", "1,,2", "x", "100001"} {
		if _, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q): no error", bad)
		}
	}
}

func TestWatchedMsg(t *testing.T) {
	for line, want := range map[string]string{
		`{"generation":2,"handoff_seconds":0.0019,"level":"info","msg":"ready","pid":1}`:     msgReady,
		`{"level":"info","msg":"acked: old process stops accepting","new_pid":2}`:            msgAcked,
		`{"fds":3,"msg":"handoff: received listeners from predecessor","generation":2}`:      msgReceived,
		`{"level":"info","msg":"ready to go","pid":1}`:                                       "",
		`{"level":"info","msg":"serving","listener":"ready"}`:                                "",
		`{"level":"info","msg":"upgrade acked: stopped accepting on reconfig.sock","pid":1}`: "",
	} {
		got, ok := watchedMsg([]byte(line))
		if got != want || ok != (want != "") {
			t.Errorf("watchedMsg(%s) = %q, %v; want %q", line, got, ok, want)
		}
	}
}

func TestCheckPorts(t *testing.T) {
	want := map[string]string{listenerName(0): "127.0.0.1:4000", listenerName(1): "127.0.0.1:4001"}
	same := map[string]string{listenerName(0): "127.0.0.1:4000", listenerName(1): "127.0.0.1:4001"}
	if err := checkPorts(same, want, 2); err != nil {
		t.Errorf("same ports: %v", err)
	}
	if err := checkPorts(same, nil, 2); err != nil {
		t.Errorf("first generation: %v", err)
	}
	moved := map[string]string{listenerName(0): "127.0.0.1:4000", listenerName(1): "127.0.0.1:5001"}
	if err := checkPorts(moved, want, 2); err == nil || !strings.Contains(err.Error(), "http_0001 on 127.0.0.1:5001, was 127.0.0.1:4001") {
		t.Errorf("moved port: %v", err)
	}
	missing := map[string]string{listenerName(0): "127.0.0.1:4000"}
	if err := checkPorts(missing, want, 2); err == nil || !strings.Contains(err.Error(), "http_0001 missing") {
		t.Errorf("missing listener: %v", err)
	}
	unbound := map[string]string{listenerName(0): "127.0.0.1:0"}
	if err := checkPorts(unbound, nil, 1); err == nil {
		t.Error("port 0 accepted")
	}
	extra := map[string]string{listenerName(0): "127.0.0.1:4000", listenerName(1): "127.0.0.1:4001", "other": "127.0.0.1:9"}
	if err := checkPorts(extra, want, 2); err == nil {
		t.Error("extra listener accepted")
	}
}

// TestProcEvents runs a shell that prints mosnlite-like JSON lines: the
// watched ones come back as events with their fields, the others do not.
func TestProcEvents(t *testing.T) {
	script := `echo '{"msg":"serving","listener":"x"}'; ` +
		`echo '{"msg":"acked: old process stops accepting","new_pid":7}'; ` +
		`echo '{"generation":2,"handoff_seconds":0.25,"msg":"ready"}' >&2`
	p, err := startProc("sh", filepath.Join(t.TempDir(), "sh.log"), "/bin/sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(time.Second)
	ctx := context.Background()
	ack, err := p.waitFor(ctx, msgAcked, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ready, err := p.waitFor(ctx, msgReady, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ready.fields["handoff_seconds"] != 0.25 || ack.fields["new_pid"] != 7.0 {
		t.Errorf("fields: ready %v ack %v", ready.fields, ack.fields)
	}
	if ack.at.Before(p.started) || ready.at.Before(ack.at) {
		t.Errorf("times: started %v ack %v ready %v", p.started, ack.at, ready.at)
	}
	if err := p.waitExit(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.waitFor(ctx, msgReceived, 5*time.Second); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("missing line after exit: %v", err)
	}
	if !strings.Contains(p.logTail(), `"listener":"x"`) {
		t.Errorf("tail lacks the unwatched line:\n%s", p.logTail())
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	rows := []row{summarize(100, []sample{
		{startToAck: 20 * time.Millisecond, startToReady: 30 * time.Millisecond, inProcess: 25 * time.Millisecond, ackToExit: 15 * time.Millisecond, fds: 101},
		{startToAck: 22 * time.Millisecond, startToReady: 34 * time.Millisecond, inProcess: 27 * time.Millisecond, ackToExit: 17 * time.Millisecond, fds: 101},
	})}
	if err := writeTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"start→ready", "21.0 ms", "32.0 ms", "34.0 ms / 34.0 ms", "26.0 ms", "16.0 ms", " 101"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
