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

// newLogs builds loggers from the config. stdout and stderr are where
// "stdout"/"" and "stderr" go.
func newLogs(cfg *config.Config, pid int, stdout, stderr io.Writer) (*logs, error) {
	l := &logs{files: map[string]*reopenFile{}}
	for i, sv := range cfg.Servers {
		lg := logrus.New()
		lvl, err := logrus.ParseLevel(orDefault(sv.DefaultLogLevel, config.DefaultLogLevel))
		if err != nil {
			return nil, fmt.Errorf("servers[%d].default_log_level: %w", i, err)
		}
		lg.SetLevel(lvl)
		if strings.EqualFold(sv.LogFormat, "json") {
			lg.SetFormatter(&logrus.JSONFormatter{})
		} else {
			lg.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
		}
		switch p := sv.DefaultLogPath; p {
		case "", "stdout":
			lg.SetOutput(stdout)
		case "stderr":
			lg.SetOutput(stderr)
		default:
			f := l.files[p]
			if f == nil {
				if f, err = openReopenFile(p); err != nil {
					return nil, fmt.Errorf("servers[%d].default_log_path: %w", i, err)
				}
				l.files[p] = f
			}
			lg.SetOutput(f)
		}
		l.servers = append(l.servers, logrus.NewEntry(lg).WithFields(logrus.Fields{"pid": pid, "server": orDefault(sv.Name, fmt.Sprint(i))}))
	}
	if len(l.servers) == 0 {
		lg := logrus.New()
		lg.SetOutput(stdout)
		l.servers = append(l.servers, logrus.NewEntry(lg).WithField("pid", pid))
	}
	l.process = logrus.NewEntry(l.servers[0].Logger).WithField("pid", pid)
	return l, nil
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
