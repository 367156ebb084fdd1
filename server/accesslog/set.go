package accesslog

import (
	"errors"
	"io"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy"
)

// Set is the access logs of one process: one File per path, however many
// listeners log there, opened when a listener first asks for it.
type Set struct {
	stdout, stderr io.Writer
	opts           FileOptions
	log            *logrus.Entry

	mu    sync.Mutex
	files map[string]*File
}

// NewSet makes an empty set; "stdout" and "stderr" as a log_path go to
// stdout and stderr.
func NewSet(stdout, stderr io.Writer, opts FileOptions, log *logrus.Entry) *Set {
	return &Set{stdout: stdout, stderr: stderr, opts: opts, log: log, files: map[string]*File{}}
}

// Observer returns the function that writes a line of cfg for each
// request or session record.
func (s *Set) Observer(cfg config.AccessLog) (func(*proxy.RequestInfo), error) {
	f, err := Compile(cfg.Format)
	if err != nil {
		return nil, err
	}
	w, err := s.file(cfg.Path)
	if err != nil {
		return nil, err
	}
	return func(info *proxy.RequestInfo) {
		w.Line(func(b []byte) []byte { return f.Append(b, info) })
	}, nil
}

func (s *Set) file(path string) (*File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.files[path]; w != nil {
		return w, nil
	}
	var out io.Writer
	switch path {
	case "stdout":
		out = s.stdout
	case "stderr":
		out = s.stderr
	}
	w, err := OpenFile(path, out, s.opts, s.log)
	if err != nil {
		return nil, err
	}
	s.files[path] = w
	return w, nil
}

// Reopen reopens every file (SIGUSR1).
func (s *Set) Reopen() error {
	var errs []error
	for _, w := range s.all() {
		errs = append(errs, w.Reopen())
	}
	return errors.Join(errs...)
}

// Flush writes what every file holds.
func (s *Set) Flush() error {
	var errs []error
	for _, w := range s.all() {
		errs = append(errs, w.Flush())
	}
	return errors.Join(errs...)
}

// Close flushes and closes every file.
func (s *Set) Close() error {
	var errs []error
	for _, w := range s.all() {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}

func (s *Set) all() []*File {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*File, 0, len(s.files))
	for _, w := range s.files {
		out = append(out, w)
	}
	return out
}
