package accesslog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Defaults of a File.
const (
	// DefaultFlushInterval is how long a line may wait in memory.
	DefaultFlushInterval = time.Second
	// DefaultLimit is the most bytes of lines a File holds unwritten; a
	// line past it is dropped (and counted), never waited for.
	DefaultLimit = 4 << 20
	// flushAt wakes the writer before the interval.
	flushAt = 64 << 10
)

// FileOptions tune a File; the zero value is the defaults.
type FileOptions struct {
	FlushInterval time.Duration
	Limit         int
}

// File is one access log destination, shared by every log of a process
// writing to its path. Lines are appended to a bounded memory buffer under
// a mutex (the request's goroutine never waits for the disk); one writer
// goroutine writes whole buffers of complete lines with O_APPEND, so that
// two processes of an upgrade appending to the same file never interleave
// within a line. Reopen (SIGUSR1, after logrotate moved the file) flushes
// to the old file, then opens the path again.
type File struct {
	path  string
	out   io.Writer // stdout or stderr instead of a file; nil for a file
	log   *logrus.Entry
	every time.Duration
	limit int

	mu      sync.Mutex
	buf     []byte // complete lines not yet written
	dropped uint64 // lines dropped since the last report
	closed  bool

	f     *os.File // the writer goroutine's, and Close's once it is gone
	kick  chan struct{}
	reqs  chan request
	quit  chan struct{}
	ended chan struct{}
}

type request struct {
	reopen bool
	done   chan error
}

// OpenFile opens path for appending (its directory created) and starts
// its writer. out, if not nil, is written instead of a file (stdout).
func OpenFile(path string, out io.Writer, opts FileOptions, log *logrus.Entry) (*File, error) {
	w := &File{path: path, out: out, log: log, every: opts.FlushInterval, limit: opts.Limit,
		kick: make(chan struct{}, 1), reqs: make(chan request), quit: make(chan struct{}), ended: make(chan struct{})}
	if w.every <= 0 {
		w.every = DefaultFlushInterval
	}
	if w.limit <= 0 {
		w.limit = DefaultLimit
	}
	if out == nil {
		f, err := openAppend(path)
		if err != nil {
			return nil, err
		}
		w.f = f
	}
	go w.run()
	return w, nil
}

func openAppend(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("accesslog: %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	return f, nil
}

// Line appends one line, rendered by render into the buffer (render
// appends to b and returns it; the newline is added here). A line that
// would take the buffer past its limit is dropped; after Close, every
// line is.
func (w *File) Line(render func(b []byte) []byte) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	start := len(w.buf)
	w.buf = append(render(w.buf), '\n')
	if len(w.buf) > w.limit {
		w.buf = w.buf[:start]
		w.dropped++
	}
	big := len(w.buf) >= flushAt
	w.mu.Unlock()
	if big {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// Flush writes what is buffered now, and returns once it is written.
func (w *File) Flush() error { return w.ask(false) }

// Reopen writes what is buffered to the file, then opens its path again
// (a rotated file is left to its rotator). Standard streams are only
// flushed.
func (w *File) Reopen() error { return w.ask(true) }

var errClosed = errors.New("accesslog: closed")

func (w *File) ask(reopen bool) error {
	r := request{reopen: reopen, done: make(chan error, 1)}
	select {
	case w.reqs <- r:
		return <-r.done
	case <-w.ended:
		return errClosed
	}
}

// Close writes what is buffered and closes the file; lines after it are
// dropped. Safe to call more than once.
func (w *File) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.ended
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.quit)
	<-w.ended
	err := w.write(w.take())
	if w.f != nil {
		err = errors.Join(err, w.f.Close())
	}
	return err
}

// run is the writer goroutine.
func (w *File) run() {
	defer close(w.ended)
	t := time.NewTicker(w.every)
	defer t.Stop()
	var spare []byte
	failing := false
	flush := func() error {
		b := w.swap(spare)
		err := w.write(b)
		spare = b[:0]
		if cap(spare) > 2*flushAt {
			spare = nil // a burst's buffer is not kept
		}
		if err != nil && !failing {
			w.log.WithError(err).Error("access log write failed; lines are lost until it works again")
		}
		failing = err != nil
		return err
	}
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
			_ = flush()
		case <-w.kick:
			_ = flush()
		case r := <-w.reqs:
			err := flush()
			if r.reopen && w.out == nil {
				if f, oerr := openAppend(w.path); oerr != nil {
					err = oerr // the old file is kept
				} else {
					old := w.f
					w.f = f
					err = errors.Join(err, old.Close())
				}
			}
			r.done <- err
		}
	}
}

// swap takes the buffered lines, leaving spare (emptied) in their place,
// and reports lines dropped since the last swap.
func (w *File) swap(spare []byte) []byte {
	w.mu.Lock()
	b, dropped := w.buf, w.dropped
	w.buf, w.dropped = spare[:0], 0
	w.mu.Unlock()
	if dropped > 0 {
		w.log.WithField("lines", dropped).WithField("path", w.path).Warn("access log lines dropped: the disk did not keep up")
	}
	return b
}

// take is swap for Close, once the writer is gone.
func (w *File) take() []byte { return w.swap(nil) }

func (w *File) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var err error
	if w.out != nil {
		_, err = w.out.Write(b)
	} else {
		_, err = w.f.Write(b)
	}
	if err != nil {
		return fmt.Errorf("accesslog: %s: %w", w.path, err)
	}
	return nil
}
