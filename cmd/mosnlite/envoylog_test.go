package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
)

func entry(level logrus.Level, msg string, fields logrus.Fields) *logrus.Entry {
	e := logrus.NewEntry(logrus.New()).WithFields(fields)
	e.Level, e.Message = level, msg
	e.Time = time.Date(2024, 3, 27, 15, 25, 6, 8789123, time.Local)
	return e
}

func TestSpdlogFormatter(t *testing.T) {
	cases := []struct {
		pattern string
		e       *logrus.Entry
		want    string
	}{
		{"[%Y-%m-%d %T.%e][%P][%l][%n] %v", entry(logrus.InfoLevel, "starting", logrus.Fields{"component": "server", "pid": 42}),
			"[2024-03-27 15:25:06.008][4242][info][server] starting pid=42\n"},
		{"%L %n %v", entry(logrus.WarnLevel, "hello world", nil), "W main hello world\n"},
		{"%l|%-8l|%8l|%=9l|", entry(logrus.ErrorLevel, "x", nil), "error|error   |   error|  error  |\n"},
		{"%H:%M:%S.%f %F %D %C %y%%", nil, ""}, // %y is not a flag: compile error below
		{`{"msg":"%j","level":"%l"}`, entry(logrus.DebugLevel, `say "hi"`, logrus.Fields{"err": errors.New("a b")}),
			`{"msg":"say \"hi\" err=\"a b\"","level":"debug"}` + "\n"},
		{"%a %b %p %R %z %@%%", entry(logrus.TraceLevel, "", nil), "Wed Mar PM 15:25 " + entry(0, "", nil).Time.Format("-07:00") + " -%\n"},
		{"%H:%M:%S.%f %F", entry(logrus.InfoLevel, "", nil), "15:25:06.008789 008789123\n"},
	}
	for _, tc := range cases {
		f, err := newSpdlogFormatter(tc.pattern, 4242)
		if tc.e == nil {
			if err == nil || !strings.Contains(err.Error(), "unsupported flag %y") {
				t.Errorf("%q: error %v, want unsupported flag %%y", tc.pattern, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		b, err := f.Format(tc.e)
		if err != nil || string(b) != tc.want {
			t.Errorf("%q:\ngot  %q, %v\nwant %q", tc.pattern, b, err, tc.want)
		}
	}
	f, err := newSpdlogFormatter("%t", 1)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := f.Format(entry(logrus.InfoLevel, "", nil)); strconv.Itoa(syscall.Gettid())+"\n" != string(b) {
		t.Errorf("%%t = %q, want this thread's id", b)
	}
	for _, bad := range []string{"%", "x %-", "%999l"} {
		if _, err := newSpdlogFormatter(bad, 1); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

func TestComponentLogLevels(t *testing.T) {
	c, err := parseComponentLogLevels("upstream:debug,admin:error,main:trace,lua:off")
	if err != nil {
		t.Fatal(err)
	}
	want := componentLevels{"cluster": logrus.DebugLevel, "admin": logrus.ErrorLevel, "pprof": logrus.ErrorLevel,
		"metrics": logrus.ErrorLevel, "": logrus.TraceLevel, "server": logrus.TraceLevel}
	if len(c) != len(want) {
		t.Fatalf("got %v, want %v", c, want)
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%q: %v, want %v", k, c[k], v)
		}
	}
	if got := c.maxLevel(logrus.InfoLevel); got != logrus.TraceLevel {
		t.Errorf("maxLevel = %v", got)
	}

	// The filter drops what is above the entry's component level.
	var out bytes.Buffer
	lg := logrus.New()
	lg.SetOutput(&out)
	lg.SetFormatter(&levelFilter{next: &logrus.TextFormatter{DisableTimestamp: true}, base: logrus.InfoLevel,
		levels: componentLevels{"cluster": logrus.DebugLevel, "admin": logrus.ErrorLevel}})
	lg.SetLevel(logrus.DebugLevel)
	e := logrus.NewEntry(lg)
	e.WithField("component", "cluster").Debug("cluster debug")
	e.WithField("component", "admin").Warn("admin warn")
	e.WithField("component", "admin").Error("admin error")
	e.WithField("component", "reconfig").Debug("reconfig debug")
	e.WithField("component", "reconfig").Info("reconfig info")
	got := out.String()
	for _, in := range []string{"cluster debug", "admin error", "reconfig info"} {
		if !strings.Contains(got, in) {
			t.Errorf("%q missing from:\n%s", in, got)
		}
	}
	for _, out := range []string{"admin warn", "reconfig debug"} {
		if strings.Contains(got, out) {
			t.Errorf("%q logged though above its level:\n%s", out, got)
		}
	}
}

func TestEnvoyLogLevels(t *testing.T) {
	for name, want := range map[string]logrus.Level{
		"trace": logrus.TraceLevel, "debug": logrus.DebugLevel, "info": logrus.InfoLevel, "warning": logrus.WarnLevel,
		"warn": logrus.WarnLevel, "error": logrus.ErrorLevel, "critical": logrus.ErrorLevel, "off": logrus.PanicLevel,
	} {
		if got, err := envoyLogLevel(name); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", name, got, err, want)
		}
	}
}

func TestLogOverrides(t *testing.T) {
	cfg, err := config.Parse([]byte(`{"servers": [
  {"mosn_server_name": "a", "default_log_level": "ERROR", "listeners": [], "routers": []},
  {"mosn_server_name": "b", "default_log_path": "stdout", "log_format": "json"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	// Without overrides: MOSN's default path is stderr; levels as configured.
	lg, err := newLogs(cfg, 7, &stdout, &stderr, logOverrides{})
	if err != nil {
		t.Fatal(err)
	}
	lg.servers[0].Warn("a warn")
	lg.servers[0].Error("a error")
	lg.servers[1].Info("b info")
	if s := stderr.String(); strings.Contains(s, "a warn") || !strings.Contains(s, "a error") {
		t.Errorf("server a (ERROR, stderr): %q", s)
	}
	if s := stdout.String(); !strings.Contains(s, `"msg":"b info"`) {
		t.Errorf("server b (json, stdout): %q", s)
	}

	// Envoy's flags win: one level, one file, one format.
	stdout.Reset()
	stderr.Reset()
	path := filepath.Join(t.TempDir(), "all.log")
	debug := logrus.DebugLevel
	lg, err = newLogs(cfg, 7, &stdout, &stderr, logOverrides{level: &debug, path: path, pattern: "%l %n %v"})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.close()
	lg.servers[0].WithField("component", "cluster").Debug("a debug")
	lg.servers[1].Info("b info")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, "debug cluster a debug pid=7 server=a\n") || !strings.Contains(s, "info main b info pid=7 server=b\n") {
		t.Errorf("--log-path file:\n%s", s)
	}
	if stdout.Len()+stderr.Len() != 0 {
		t.Errorf("wrote to stdout/stderr despite --log-path: %q %q", stdout.String(), stderr.String())
	}
	if _, err := newLogs(cfg, 7, io.Discard, io.Discard, logOverrides{pattern: "%Q"}); err == nil {
		t.Error("a bad pattern was accepted")
	}
}

func TestSetProcs(t *testing.T) {
	defer func(n int) { setGOMAXPROCS(n) }(setGOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	cfg, err := config.Parse([]byte(`{"servers": [{"processor": 1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, governed := setProcs(cfg, 0); got != 1 || governed {
		t.Errorf("processor 1: GOMAXPROCS %d", got)
	}
	if got, governed := setProcs(cfg, 2); got != 2 || governed {
		t.Errorf("--concurrency 2 over processor 1: GOMAXPROCS %d", got)
	}
	for _, c := range []string{`{"servers": [{"processor": "auto"}]}`, `{"servers": [{}]}`} {
		auto, err := config.Parse([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		if _, governed := setProcs(auto, 0); !governed {
			t.Errorf("%s: not governed", c)
		}
		if _, governed := setProcs(auto, 3); governed {
			t.Errorf("%s with --concurrency 3: governed", c)
		}
	}
	t.Setenv("GOMAXPROCS", "2")
	setGOMAXPROCS(2)
	if got, governed := setProcs(cfg, 0); got != 2 || governed {
		t.Errorf("GOMAXPROCS in the environment wins over processor, as in MOSN: %d", got)
	}
}

func setGOMAXPROCS(n int) int { return runtime.GOMAXPROCS(n) }
