package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
)

// reopenFile is a log file that SIGUSR1 reopens, so that logrotate can move it.
type reopenFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openReopenFile(path string) (*reopenFile, error) {
	r := &reopenFile{path: path}
	if err := r.Reopen(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

// Reopen opens the path again and swaps it in; the old file is closed.
func (r *reopenFile) Reopen() error {
	if err := os.MkdirAll(filepath.Dir(r.path), 0o755); err != nil {
		return fmt.Errorf("log file %s: %w", r.path, err)
	}
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file %s: %w", r.path, err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

// logs are the process's loggers: one per servers[] entry, the first serving
// as the process logger.
type logs struct {
	process *logrus.Entry
	servers []*logrus.Entry
	files   map[string]*reopenFile
}

// logOverrides are what Envoy's command line says about logging; they win
// over the config. The zero value changes nothing.
type logOverrides struct {
	level      *logrus.Level   // -l/--log-level, for every server
	path       string          // --log-path: every server logs there
	pattern    string          // --log-format (spdlog syntax)
	components componentLevels // --component-log-level
}

// newLogs builds loggers from the config: one per server, to its
// default_log_path ("stdout", "stderr" — the default, as in MOSN — or a
// file). stdout and stderr are where "stdout" and "stderr" go.
func newLogs(cfg *config.Config, pid int, stdout, stderr io.Writer, ov logOverrides) (*logs, error) {
	l := &logs{files: map[string]*reopenFile{}}
	var spd *spdlogFormatter
	if ov.pattern != "" {
		var err error
		if spd, err = newSpdlogFormatter(ov.pattern, pid); err != nil {
			return nil, fmt.Errorf("--log-format: %w", err)
		}
	}
	output := func(p, what string) (io.Writer, error) {
		switch p {
		case "stdout":
			return stdout, nil
		case "", "stderr":
			return stderr, nil
		}
		f := l.files[p]
		if f == nil {
			var err error
			if f, err = openReopenFile(p); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			l.files[p] = f
		}
		return f, nil
	}
	servers := cfg.Servers
	if len(servers) == 0 {
		servers = []config.Server{{}}
	}
	for i, sv := range servers {
		lg := logrus.New()
		lvl, err := logrus.ParseLevel(orDefault(sv.DefaultLogLevel, config.DefaultLogLevel))
		if err != nil {
			return nil, fmt.Errorf("servers[%d].default_log_level: %w", i, err)
		}
		if ov.level != nil {
			lvl = *ov.level
		}
		var fm logrus.Formatter = &logrus.TextFormatter{FullTimestamp: true, DisableColors: true}
		switch {
		case spd != nil:
			fm = spd
		case strings.EqualFold(sv.LogFormat, "json"):
			fm = &logrus.JSONFormatter{}
		}
		if len(ov.components) > 0 {
			fm = &levelFilter{next: fm, base: lvl, levels: ov.components}
			lvl = ov.components.maxLevel(lvl)
		}
		lg.SetLevel(lvl)
		lg.SetFormatter(fm)
		path, what := sv.DefaultLogPath, fmt.Sprintf("servers[%d].default_log_path", i)
		if ov.path != "" {
			path, what = ov.path, "--log-path"
		}
		out, err := output(path, what)
		if err != nil {
			return nil, err
		}
		lg.SetOutput(out)
		e := logrus.NewEntry(lg).WithField("pid", pid)
		if len(cfg.Servers) > 0 {
			e = e.WithField("server", orDefault(sv.Name, fmt.Sprint(i)))
		}
		l.servers = append(l.servers, e)
	}
	l.process = logrus.NewEntry(l.servers[0].Logger).WithField("pid", pid)
	return l, nil
}

// warn logs the config's warnings, one line each.
func (l *logs) warn(cfg *config.Config) {
	for _, w := range cfg.Warnings {
		l.process.Warn("config: " + w.String())
	}
}

// startFailed reports a failed start once: in the process log, and on
// stderr too only if that log goes to a file (where whoever ran the command
// would not see it).
func (l *logs) startFailed(err error, stderr io.Writer) {
	l.process.WithError(err).Error("start failed")
	if _, toFile := l.process.Logger.Out.(*reopenFile); toFile {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
	}
}

// reopen reopens every log file (SIGUSR1).
func (l *logs) reopen() error {
	for _, f := range l.files {
		if err := f.Reopen(); err != nil {
			return err
		}
	}
	return nil
}

func (l *logs) close() {
	for _, f := range l.files {
		_ = f.Close()
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
