package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The files of deploy/systemd, relative to this package.
const systemdDir = "../deploy/systemd"

// installedBinary is the path the units name; the tests substitute the binary they built.
const installedBinary = "/usr/local/bin/mosnlite"

// systemdAnalyze returns the systemd-analyze command and systemd's version.
// CI installs Debian's systemd package; without it these tests cannot check
// anything, so they fail rather than skip.
func systemdAnalyze(t *testing.T) (string, int) {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (apt-get install -y systemd): %v", err)
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		t.Fatalf("systemd-analyze --version: %v", err)
	}
	m := regexp.MustCompile(`^systemd (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze --version printed %q", out)
	}
	v, _ := strconv.Atoi(string(m[1]))
	return path, v
}

// stageUnits copies the shipped units (and the drop-ins named) into a fresh
// directory, changing only the binary's path to the one this test built, so
// that verify can check the commands exist. It returns the directory.
func stageUnits(t *testing.T, dropins ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"mosnlite.service", "mosnlite.socket"} {
		b, err := os.ReadFile(filepath.Join(systemdDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "mosnlite.service" && !bytes.Contains(b, []byte(installedBinary)) {
			t.Fatalf("%s does not run %s", name, installedBinary)
		}
		b = bytes.ReplaceAll(b, []byte(installedBinary), []byte(binPath))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(dropins) > 0 {
		d := filepath.Join(dir, "mosnlite.service.d")
		os.Mkdir(d, 0o755)
		for _, name := range dropins {
			b, err := os.ReadFile(filepath.Join(systemdDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// verify runs systemd-analyze verify and returns what it printed; any line
// is a problem (verify exits 0 on unknown keys and bad values, it only warns).
func verify(t *testing.T, analyze, dir string, units ...string) (string, error) {
	t.Helper()
	args := []string{"verify", "--man=no"}
	for _, u := range units {
		args = append(args, filepath.Join(dir, u))
	}
	out, err := exec.Command(analyze, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestSystemdUnitsVerify(t *testing.T) {
	analyze, version := systemdAnalyze(t)
	t.Logf("systemd %d", version)

	t.Run("service and socket", func(t *testing.T) {
		dir := stageUnits(t, "privileged-ports.conf")
		if out, err := verify(t, analyze, dir, "mosnlite.service", "mosnlite.socket"); err != nil || out != "" {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("the check fails on a wrong unit", func(t *testing.T) {
		dir := stageUnits(t)
		p := filepath.Join(dir, "mosnlite.service")
		b, _ := os.ReadFile(p)
		b = bytes.Replace(b, []byte("KillMode=mixed"), []byte("KillMode=mixd\nNotifyAcess=all"), 1)
		os.WriteFile(p, b, 0o644)
		out, _ := verify(t, analyze, dir, "mosnlite.service")
		if !strings.Contains(out, "kill mode specification, ignoring: mixd") || !strings.Contains(out, "Unknown key 'NotifyAcess'") {
			t.Fatalf("verify of a broken unit printed %q; want both mistakes named", out)
		}
	})

	t.Run("notify-reload variant", func(t *testing.T) {
		dir := stageUnits(t, "notify-reload.conf")
		out, err := verify(t, analyze, dir, "mosnlite.service")
		if err != nil {
			t.Fatalf("verify: %v\n%s", err, out)
		}
		if version >= 253 {
			if out != "" {
				t.Fatalf("systemd %d: verify printed %q", version, out)
			}
			return
		}
		// Debian 12's 252 predates the type: exactly this one warning, which is
		// why the shipped unit says Type=notify.
		if !regexp.MustCompile(`^\S+notify-reload\.conf:\d+: Failed to parse service type, ignoring: notify-reload$`).MatchString(out) {
			t.Fatalf("systemd %d: verify printed %q; want only the unknown-type warning", version, out)
		}
	})

	t.Run("hardening", func(t *testing.T) {
		dir := stageUnits(t)
		out, err := exec.Command(analyze, "security", "--offline=yes", filepath.Join(dir, "mosnlite.service")).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for mosnlite\.service: (\d+\.\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security: %v\n%s", err, out)
		}
		level, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("exposure level %.1f", level)
		if level > 3.0 {
			t.Errorf("exposure level %.1f, want at most 3.0 (systemd's \"OK\" band)\n%s", level, out)
		}
	})
}

// unitSettings reads KEY=VALUE lines of a unit file (last one wins).
func unitSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// The unit and the example config agree: the uds_dir is the runtime
// directory, the stop timeout outlasts the drain, a reload outlasts its wait.
func TestSystemdUnitFitsConfig(t *testing.T) {
	u := unitSettings(t, filepath.Join(systemdDir, "mosnlite.service"))
	cfgPath := filepath.Join(systemdDir, "mosn.json")
	if out, err := exec.Command(binPath, "validate", "-c", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("mosnlite validate %s: %v\n%s", cfgPath, err, out)
	}
	var cfg struct {
		UDSDir  string `json:"uds_dir"`
		Servers []struct {
			Graceful string `json:"graceful_timeout"`
		} `json:"servers"`
	}
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"Type": "notify", "NotifyAccess": "all", "KillMode": "mixed", "ExitType": "cgroup",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "CapabilityBoundingSet": "",
	} {
		if got, ok := u[k]; !ok || got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if dir := "/run/" + u["RuntimeDirectory"]; cfg.UDSDir != dir {
		t.Errorf("config uds_dir %q is not the unit's RuntimeDirectory %s", cfg.UDSDir, dir)
	}
	if u["RuntimeDirectoryMode"] != "0700" {
		t.Errorf("RuntimeDirectoryMode=%q, want 0700 (mosnlite refuses a wider uds_dir)", u["RuntimeDirectoryMode"])
	}
	graceful, _ := time.ParseDuration(cfg.Servers[0].Graceful)
	stop, _ := time.ParseDuration(strings.TrimSpace(u["TimeoutStopSec"]))
	if stop < graceful+5*time.Second {
		t.Errorf("TimeoutStopSec=%s leaves no margin over graceful_timeout %s", stop, graceful)
	}
	start := strings.Fields(u["ExecStart"])
	reload := strings.Fields(u["ExecReload"])
	if len(start) < 4 || start[1] != "start" || start[2] != "-c" {
		t.Fatalf("ExecStart=%q", u["ExecStart"])
	}
	wantReload := regexp.MustCompile(`^` + regexp.QuoteMeta(start[0]) + ` start --daemon -c ` + regexp.QuoteMeta(start[3]) + ` --wait-timeout (\S+) --log-file -$`)
	m := wantReload.FindStringSubmatch(u["ExecReload"])
	if m == nil {
		t.Fatalf("ExecReload=%q: want the ExecStart command with --daemon, which waits for the result", strings.Join(reload, " "))
	}
	wait, _ := time.ParseDuration(m[1])
	if ts, _ := time.ParseDuration(u["TimeoutStartSec"]); ts <= wait {
		t.Errorf("TimeoutStartSec=%s (which bounds a reload) is not above --wait-timeout %s", ts, wait)
	}
}

// ExecReload's `--log-file -` hands the reload command's stdout (the
// journal, under systemd) to the new process: its log lines land there.
func TestDaemonLogFileDashInheritsOutput(t *testing.T) {
	e := newUpgradeEnv(t)
	out, err := os.Create(filepath.Join(e.dir, "journal.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(binPath, "start", "--daemon", "--log-file", "-", "-c", e.config("c1.json", "v1", false, "5s"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		t.Fatalf("start --daemon --log-file -: %v", err)
	}
	b, _ := os.ReadFile(out.Name())
	m := regexp.MustCompile(`mosnlite: pid (\d+) serves`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("output %q", b)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	defer func() { syscallKill(pid); waitGone(t, pid, 10*time.Second) }()
	if !regexp.MustCompile(fmt.Sprintf(`(?m)msg=ready .*pid=%d\b`, pid)).Match(b) {
		t.Fatalf("the new process's log is not in the inherited output:\n%s", b)
	}
}
