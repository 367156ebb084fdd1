package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMOSNServicePortsAcrossUpgrade: a config in MOSN's shape — admin as
// address.socket_address (port 0: any), pprof as debug/port_value/endpoint,
// metrics as a prometheus sink with its endpoint — serves all three ports,
// and they stay (same addresses, counters carried) across an upgrade. The
// pid file names whichever generation serves and goes away on the final stop.
func TestMOSNServicePortsAcrossUpgrade(t *testing.T) {
	dir := t.TempDir()
	web := newHTTPBackend(t, "web")
	httpPort, pprofPort, metricsPort := freePort(t), freePort(t), freePort(t)
	pidPath := filepath.Join(dir, "run", "mosn.pid")
	cfg := obj{
		"uds_dir": filepath.Join(dir, "uds"),
		"pid":     pidPath,
		"servers": []obj{{
			"mosn_server_name": "edge", "default_log_level": "INFO",
			"listeners": []obj{{
				"name": "web", "type": "ingress", "address": addr(httpPort), "bind_port": true,
				"filter_chains": []obj{{"tls_context": obj{}, "filters": []obj{{"type": "proxy", "config": obj{
					"downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "r"}}}}},
			}},
			"routers": []obj{router("r", "web")},
		}},
		"cluster_manager": obj{"clusters": []obj{{"Name": "web", "type": "SIMPLE", "lb_type": "LB_RANDOM", "hosts": []obj{{"address": web.addr()}}}}},
		"admin":           obj{"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}}},
		"pprof":           obj{"debug": true, "port_value": pprofPort, "endpoint": "127.0.0.1"},
		"metrics": obj{
			"sinks":         []obj{{"type": "prometheus", "config": obj{"port": metricsPort, "endpoint": "/stats/prometheus"}}},
			"shm_zone":      "mosn_zone",
			"stats_matcher": obj{"exclusion_labels": []string{"host"}},
		},
	}
	path := writeJSON(t, dir, "mosn.json", cfg)
	pprofURL := "http://" + addr(pprofPort) + "/debug/pprof/"
	metricsURL := "http://" + addr(metricsPort) + "/stats/prometheus"

	gen1 := startProc(t, "gen1", "start", "-c", path)
	waitReady(gen1, 1)
	gen1.waitLog(`msg="pid file written"`, readyTimeout)
	// Port 0: the admin address is in the log line that says it serves.
	m := regexp.MustCompile(`msg=serving address="?([^"\s]+)"? .*listener=admin`).FindStringSubmatch(gen1.waitLog(`msg=serving .*listener=admin`, readyTimeout))
	adminURL := "http://" + m[1]
	for _, w := range []string{"config: metrics.shm_zone: ignored by mosnlite", "config: metrics.stats_matcher: ignored by mosnlite"} {
		if n := strings.Count(gen1.out.String(), w); n != 1 {
			t.Errorf("%d warning lines %q, want one", n, w)
		}
	}
	checkPorts := func(gen int, pid int) {
		t.Helper()
		var info map[string]interface{}
		getJSON(t, adminURL+"/server_info", &info)
		if int(info["generation"].(float64)) != gen || int(info["pid"].(float64)) != pid {
			t.Fatalf("admin: generation %v pid %v, want %d and %d", info["generation"], info["pid"], gen, pid)
		}
		if code, body := get(t, pprofURL); code != 200 || !strings.Contains(body, "goroutine") {
			t.Fatalf("pprof: %d", code)
		}
		if code, body := get(t, "http://"+addr(metricsPort)+"/metrics"); code != 404 {
			t.Errorf("metrics at /metrics though the endpoint is /stats/prometheus: %d %.80q", code, body)
		}
		if b, err := os.ReadFile(pidPath); err != nil || string(b) != strconv.Itoa(pid)+"\n" {
			t.Errorf("pid file: %q, %v; want generation %d's pid %d", b, err, gen, pid)
		}
	}
	checkPorts(1, gen1.pid())
	// The admin config dump is MOSN's shape, as written.
	if code, body := get(t, adminURL+"/config_dump"); code != 200 || !strings.Contains(body, `"mosn_server_name": "edge"`) ||
		!strings.Contains(body, `"socket_address"`) || !strings.Contains(body, `"endpoint": "/stats/prometheus"`) {
		t.Errorf("config_dump: %d\n%s", code, body)
	}
	for i := 0; i < 3; i++ {
		if code, _ := get(t, "http://"+addr(httpPort)+"/x"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	requests := func() int {
		_, body := get(t, metricsURL)
		n := 0
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "mosnlite_http_downstream_rq_total{") && strings.Contains(line, `status_class="2xx"`) {
				v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				n += int(v)
			}
		}
		return n
	}
	if n := requests(); n != 3 {
		t.Fatalf("generation 1 counted %d requests, want 3", n)
	}

	gen2 := startProc(t, "gen2", "start", "-c", path)
	waitReady(gen2, 2)
	gen2.waitLog(`msg="pid file written"`, readyTimeout)
	if code := gen1.wait(15 * time.Second); code != 0 {
		t.Fatalf("generation 1 exited %d after handing over", code)
	}
	checkPorts(2, gen2.pid()) // the same three addresses, now the successor's
	if n := requests(); n != 3 {
		t.Errorf("after the upgrade the metrics port counts %d requests, want the 3 of generation 1", n)
	}

	gen2.signal(syscall.SIGTERM)
	if code := gen2.wait(15 * time.Second); code != 0 {
		t.Fatalf("generation 2 exited %d on SIGTERM", code)
	}
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		t.Errorf("pid file after the final stop: %v", err)
	}
	if strings.Contains(gen1.out.String(), "pid file removed") || !strings.Contains(gen2.out.String(), "pid file removed") {
		t.Error("the generation that handed over removed the pid file, or the last one did not")
	}
}

// TestEnvoyCommonFlags: an Envoy start script's flags work with Envoy's
// meaning — service cluster/node/zone in /server_info, the log level, path
// and format — and a flag mosnlite lacks exits 1 with Envoy's convention.
func TestEnvoyCommonFlags(t *testing.T) {
	e := &envoyEnv{upgradeEnv: newUpgradeEnv(t)}
	e.cfg = e.config("c.json", "v1", false, "5s")
	logPath := filepath.Join(e.dir, "envoy.log")
	p := startProc(t, "epoch0", "-c", e.cfg, "--use-dynamic-base-id", "--service-cluster", "web", "--service-node", "web-1", "--service-zone", "az-1",
		"-l", "debug", "--log-path", logPath, "--log-format", "[%Y-%m-%d %T.%e][%P][%l][%n] %v",
		"--concurrency", "1", "--local-address-ip-version", "v4", "--file-flush-interval-msec", "500", "--enable-core-dump")
	info := e.waitGeneration(1)
	opts, _ := info["command_line_options"].(map[string]interface{})
	node, _ := info["node"].(map[string]interface{})
	loc, _ := node["locality"].(map[string]interface{})
	if opts["service_cluster"] != "web" || opts["service_node"] != "web-1" || opts["service_zone"] != "az-1" ||
		opts["log_level"] != "debug" || opts["concurrency"] != 1.0 || opts["mode"] != "Serve" || opts["file_flush_interval"] != "0.500s" {
		t.Errorf("command_line_options: %v", opts)
	}
	if node["id"] != "web-1" || node["cluster"] != "web" || loc["zone"] != "az-1" {
		t.Errorf("node: %v", node)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := string(b)
	pidField := "][" + strconv.Itoa(p.pid()) + "]["
	if !regexp.MustCompile(`(?m)^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[\d+\]\[info\]\[server\] ready generation=1 `).MatchString(logs) ||
		!strings.Contains(logs, pidField) || !strings.Contains(logs, "[warning][main] --enable-core-dump: ignored by mosnlite") {
		t.Errorf("--log-path/--log-format/-l debug:\n%.2000s", logs)
	}
	if s := p.out.String(); strings.Contains(s, "level=") {
		t.Errorf("logged to stderr despite --log-path:\n%.500s", s)
	}

	bad := startProc(t, "bad", "-c", e.cfg, "--cpuset-threads")
	if code := bad.wait(10 * time.Second); code != 1 {
		t.Errorf("a flag mosnlite lacks: exit %d, want 1 (Envoy's)", code)
	}
	if !strings.Contains(bad.out.String(), "--cpuset-threads: not supported by mosnlite") {
		t.Errorf("message: %s", bad.out.String())
	}
}
