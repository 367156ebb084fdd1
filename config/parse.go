package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"syscall"
	"time"
)

// MaxFileSize is the largest config file Load reads. A real config is a few
// kilobytes; 16 MiB leaves room for thousands of listeners and clusters.
const MaxFileSize = 16 << 20

// Parse decodes a JSON config, resolves MOSN's shapes and mosnlite's
// aliases, applies defaults and validates it. Any problem — malformed JSON
// (reported with its line and column, and nothing else), an unknown field, a
// value of the wrong type, a refused MOSN feature, a semantic error — yields
// a *ValidationError listing every problem found, each with its JSON path.
// Inert fields that are set are listed in the config's Warnings.
func Parse(data []byte) (*Config, error) { return parse(data, time.Now()) }

// parse is Parse at time now (a certificate's validity is checked against it).
func parse(data []byte, now time.Time) (*Config, error) {
	root, err := parseTree(data)
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{{Msg: err.Error()}}}
	}
	ps, ws := &problems{}, &problems{}
	c := &Config{}
	(&decoder{ps: ps, ws: ws}).object(root, reflect.ValueOf(c).Elem(), "")
	decodeProblems := len(ps.list)
	moved := c.resolve(ps, ws)
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		// A value that failed to decode was left at zero; what Validate says
		// about it, or about what it contains, would only repeat the problem.
	next:
		for _, p := range err.(*ValidationError).Problems {
			p.Path = movedPath(p.Path, moved)
			for _, d := range ps.list[:decodeProblems] {
				if covers(d.Path, p.Path) {
					continue next
				}
			}
			ps.list = append(ps.list, p)
		}
	}
	c.loadTLS(ps, ws, now, ps.list)
	if err := ps.err(); err != nil {
		return nil, err
	}
	c.Warnings = ws.list
	return c, nil
}

// movedPath gives a problem inside a route table that Parse moved (MOSN's
// connection_manager filter) the path it was written at.
func movedPath(p string, moved map[string]string) string {
	for now, was := range moved {
		if covers(now, p) {
			return was + strings.TrimPrefix(p, now)
		}
	}
	return p
}

// Load reads and parses the config file at path. It reads only a regular
// file of at most MaxFileSize bytes (a FIFO, a device or a directory is
// refused without blocking). Errors name the file and wrap a
// *ValidationError when the content is at fault.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

// ErrNotRegular is wrapped by Load's error for a path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by Load's error for a file over MaxFileSize.
var ErrTooLarge = fmt.Errorf("larger than %d MiB", MaxFileSize>>20)

// readFile reads a regular file of at most MaxFileSize bytes (see readFileLimit).
func readFile(path string) ([]byte, error) { return readFileLimit(path, MaxFileSize, ErrTooLarge) }

// readFileLimit reads a regular file of at most limit bytes, failing with
// tooLarge (wrapped) past it. It opens without blocking (O_NONBLOCK: a FIFO
// with no writer would block an open for reading) and checks the type on the
// open file, so that nothing can be swapped in between.
func readFileLimit(path string, limit int64, tooLarge error) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in our message already
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: %w (%s)", path, ErrNotRegular, fileKind(st.Mode()))
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("read %s: %w (%d bytes)", path, tooLarge, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit { // it grew while we read
		return nil, fmt.Errorf("read %s: %w", path, tooLarge)
	}
	return data, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	default:
		return "not a regular file"
	}
}
