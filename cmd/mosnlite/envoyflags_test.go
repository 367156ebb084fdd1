package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/reconfig/envoy"
)

func TestEnvoyFlagsDefaultsAreEnvoys(t *testing.T) {
	f, err := parseEnvoyFlags([]string{"-c", "x.json"})
	if err != nil {
		t.Fatal(err)
	}
	if f.config != "x.json" || f.mode != modeServe || f.localAddressIPVer != "v4" || f.fileFlushInterval != 10*time.Second {
		t.Errorf("defaults: %+v", f)
	}
	if f.logLevel != "" || f.concurrency != 0 || f.logPath != "" || f.enableCoreDump {
		t.Errorf("unset flags look set: %+v", f)
	}
	if f.opts != envoy.DefaultOptions() {
		t.Errorf("hot-restart options %+v, want Envoy's defaults %+v", f.opts, envoy.DefaultOptions())
	}
}

func TestEnvoyFlagsParsed(t *testing.T) {
	f, err := parseEnvoyFlags([]string{
		"--config-path=/etc/m.json", "--mode", "validate", "-l", "debug", "--component-log-level", "upstream:trace,admin:error",
		"--log-path", "/var/log/m.log", "--log-format", "[%Y-%m-%d %T.%e][%t][%l][%n] %v", "--concurrency", "3",
		"--service-cluster", "web", "--service-node", "web-1", "--service-zone", "az1", "--local-address-ip-version", "v6",
		"--file-flush-interval-msec", "250", "--enable-core-dump", "--restart-epoch", "2", "--base-id=7",
		"--base-id-path", "/tmp/id", "--disable-hot-restart", "--hot-restart-version", "--drain-time-s", "3",
		"--parent-shutdown-time-s=4", "--drain-strategy", "immediate", "--socket-path", "/run/hr", "--socket-mode", "644",
		"--admin-address-path", "/tmp/admin",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := envoyFlags{
		config: "/etc/m.json", mode: modeValidate, logLevel: "debug", componentLogLevel: "upstream:trace,admin:error",
		logPath: "/var/log/m.log", logFormat: "[%Y-%m-%d %T.%e][%t][%l][%n] %v", concurrency: 3,
		serviceCluster: "web", serviceNode: "web-1", serviceZone: "az1", localAddressIPVer: "v6",
		fileFlushInterval: 250 * time.Millisecond, enableCoreDump: true,
		opts: envoy.Options{
			RestartEpoch: 2, BaseID: 7, BaseIDPath: "/tmp/id", DisableHotRestart: true, HotRestartVersion: true,
			DrainTime: 3 * time.Second, ParentShutdownTime: 4 * time.Second, DrainStrategy: envoy.DrainImmediate,
			SocketPath: "/run/hr", SocketMode: 0o644, AdminAddressPath: "/tmp/admin",
		},
	}
	if f != want {
		t.Fatalf("parsed %+v\nwant   %+v", f, want)
	}
	if f, err := parseEnvoyFlags([]string{"--use-dynamic-base-id", "--mode=init_only", "--concurrency", "0"}); err != nil ||
		!f.opts.UseDynamicBaseID || f.mode != modeInitOnly || f.concurrency != 1 {
		t.Errorf("--use-dynamic-base-id, init_only, --concurrency 0 (Envoy runs one worker): %v %+v", err, f)
	}
}

func TestEnvoyFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "serve-ish"}, `--mode: unknown mode "serve-ish" (want serve, validate or init_only)`},
		{[]string{"--local-address-ip-version", "v5"}, `unknown IP address version "v5"`},
		{[]string{"-l", "verbose"}, `--log-level: invalid log level "verbose"`},
		{[]string{"--log-level", "DEBUG"}, `invalid log level "DEBUG"`},
		{[]string{"--component-log-level", "upstream"}, `component log level not correctly specified "upstream"`},
		{[]string{"--component-log-level", "nosuch:debug"}, `invalid component specified "nosuch"`},
		{[]string{"--component-log-level", "upstream:loud"}, `invalid log level "loud"`},
		{[]string{"--log-format", "%q %v"}, `unsupported flag %q`},
		{[]string{"--concurrency", "-1"}, `want a whole number`},
		{[]string{"--file-flush-interval-msec", "1.5"}, `want a whole number of milliseconds`},
		{[]string{"--socket-mode", "9"}, `invalid socket-mode "9"`},
		{[]string{"--drain-time-s", "-1"}, `want a whole number of seconds`},
		{[]string{"--config-yaml", "node: {id: x}"}, `for flag --config-yaml: not supported by mosnlite (in Envoy: an inline YAML bootstrap`},
		{[]string{"--cpuset-threads"}, `--cpuset-threads: not supported by mosnlite (in Envoy: sizing workers by the cpuset`},
		{[]string{"--no-such-flag"}, `unknown flag --no-such-flag`},
		{[]string{"-c", "x.json", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		_, err := parseEnvoyFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseEnvoyFlags([]string{"--help"}); !errors.Is(err, errEnvoyHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestEnvoyCommandLineExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"servers": [{"listeners": [{"address": "127.0.0.1:0",
  "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}],
  "routers": [{"router_config_name": "r", "virtual_hosts": [{"domains": ["*"], "routers": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]}]}],
  "tracing": {"enable": true, "driver": "SOFATracer"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"servers": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args             []string
		code             int
		stdout, stderr   string
		noStdout, noWarn bool
	}{
		{args: []string{"--mode", "validate", "-c", good}, code: 0, stdout: "configuration '" + good + "' OK\n",
			stderr: "warning: tracing: ignored by mosnlite"},
		{args: []string{"--mode", "validate", "-c", bad}, code: 1, stderr: "servers: at least one server is required", noStdout: true},
		{args: []string{"--mode", "init_only", "-c", good, "--disable-hot-restart", "--log-path", filepath.Join(dir, "init.log")}, code: 0, noStdout: true},
		{args: []string{"--mode", "validate"}, code: 1, stderr: "-c/--config-path is required", noStdout: true},
		{args: []string{"--no-such-flag", "-c", good}, code: 1, stderr: "unknown flag --no-such-flag", noStdout: true},
		{args: []string{"--stats-tag", "a:b", "-c", good}, code: 1, stderr: "not supported by mosnlite", noStdout: true},
		{args: []string{"--help"}, code: 0, stdout: "--service-cluster"},
		{args: []string{"-c", good, "--version"}, code: 0, stdout: "mosnlite"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d\nstdout %q\nstderr %q", tc.args, code, tc.code, out.String(), errOut.String())
		}
		if tc.stdout != "" && !strings.Contains(out.String(), tc.stdout) {
			t.Errorf("%v: stdout %q, want it to contain %q", tc.args, out.String(), tc.stdout)
		}
		if tc.noStdout && out.Len() != 0 {
			t.Errorf("%v: unexpected stdout %q", tc.args, out.String())
		}
		if tc.stderr != "" && !strings.Contains(errOut.String(), tc.stderr) {
			t.Errorf("%v: stderr %q, want it to contain %q", tc.args, errOut.String(), tc.stderr)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "init.log")); err != nil || !strings.Contains(string(b), "init_only: initialized; exiting") ||
		!strings.Contains(string(b), "config: tracing: ignored by mosnlite") {
		t.Errorf("init_only logs to --log-path: %v\n%s", err, b)
	}
}

func TestCommandLineOptionsForServerInfo(t *testing.T) {
	f, err := parseEnvoyFlags([]string{"-c", "m.json", "--service-cluster", "web", "--service-node", "n1", "--service-zone", "z",
		"--drain-strategy", "immediate", "--file-flush-interval-msec", "1500"})
	if err != nil {
		t.Fatal(err)
	}
	o := f.commandLineOptions("/abs/m.json", 2)
	if o.ServiceCluster != "web" || o.ServiceNode != "n1" || o.ServiceZone != "z" || o.Mode != "Serve" ||
		o.DrainStrategy != "Immediate" || o.LogLevel != "info" || o.Concurrency != 2 || o.ConfigPath != "/abs/m.json" ||
		o.FileFlushInterval != 1500*time.Millisecond || o.DrainTime != 600*time.Second || o.LocalAddressIPVersion != "v4" {
		t.Errorf("options %+v", o)
	}
}

func TestIsEnvoyServe(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-c", "x.json", "--restart-epoch", "1"}, true},
		{[]string{"-c", "x.json", "--mode", "serve"}, true},
		{[]string{"-c", "x.json", "--mode", "validate"}, false},
		{[]string{"-c", "x.json", "--mode=init_only"}, false},
		{[]string{"-c", "x.json", "-mode=validate"}, false},
		{[]string{"-c", "x.json", "--disable-hot-restart"}, false},
		{[]string{"--hot-restart-version"}, false},
		{[]string{"--help"}, false},
		{[]string{"-test.v"}, false},
		{[]string{"start", "-c", "x.json"}, false},
		{nil, false},
	} {
		if got := isEnvoyServe(tc.args); got != tc.want {
			t.Errorf("isEnvoyServe(%v) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
