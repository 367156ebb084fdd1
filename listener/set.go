package listener

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener/ident"
)

// slot is an inherited socket and whether a configured listener took it.
type slot struct {
	Inherited
	claimed bool
}

// Set is one process's listening sockets: inherited ones it may adopt and
// the ones it has opened. It is safe for concurrent use.
//
// Unix listeners never unlink their path on Close, so a process that stops
// accepting cannot delete the socket its successor serves on. The path is
// removed only by RemoveUnixPaths, at a final shutdown with no successor.
type Set struct {
	log *logrus.Entry

	mu        sync.Mutex
	inherited []*slot
	open      []*Listener
}

// NewSet returns a set that will adopt the given inherited sockets. The set
// owns their files from now on: Open closes the ones it adopts (keeping a
// duplicate), CloseUnclaimed or CloseAll close the rest.
func NewSet(inherited []Inherited, log *logrus.Entry) *Set {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	s := &Set{log: log}
	for _, in := range inherited {
		s.inherited = append(s.inherited, &slot{Inherited: in})
	}
	return s
}

// Open returns a listener for spec (built by ident.New, so normalised): the
// inherited socket with the same network and address if there is one (for a
// port-0 spec: the inherited socket with the same kind, name, network and
// host), else a freshly bound one. An inherited socket is taken only if the
// address it is really bound to (getsockname) is the one its entry and spec
// name. An inherited socket whose name matches but whose address differs is
// not taken; CloseUnclaimed closes it.
func (s *Set) Open(spec Spec) (*Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !spec.AnyPort() {
		for _, l := range s.open {
			if !l.Closed() && sameSocket(l.Spec, spec) {
				return nil, fmt.Errorf("listener: open %s: address already open as %s", spec, l.Spec)
			}
		}
	}

	if sl := s.match(spec); sl != nil {
		sl.claimed = true
		ln, err := adopt(sl.File, sl.Spec, spec)
		if err != nil {
			return nil, fmt.Errorf("listener: adopt inherited %s for %s: %w", sl.Spec, spec, err)
		}
		if spec.AnyPort() {
			spec.Address = sl.Spec.Address
		}
		l := &Listener{Spec: spec, Listener: ln, Inherited: true}
		s.recordPath(l)
		s.open = append(s.open, l)
		s.log.WithField("listener", spec.String()).Info("adopted inherited listener")
		return l, nil
	}

	ln, bound, err := bind(spec)
	if err != nil {
		return nil, fmt.Errorf("listener: open %s: %w", spec, err)
	}
	l := &Listener{Spec: bound, Listener: ln}
	s.recordPath(l)
	s.open = append(s.open, l)
	s.log.WithField("listener", bound.String()).Info("bound listener")
	return l, nil
}

// match finds the unclaimed inherited socket for a normalised spec.
func (s *Set) match(spec Spec) *slot {
	anyPort := spec.AnyPort()
	for _, sl := range s.inherited {
		if sl.claimed {
			continue
		}
		if anyPort && sameAnyPortSlot(spec, sl.Spec) {
			return sl
		}
		if !anyPort && sameSocket(spec, sl.Spec) {
			return sl
		}
	}
	return nil
}

func (s *Set) recordPath(l *Listener) {
	if l.Spec.Network != "unix" {
		return
	}
	l.path, _ = ident.StatPath(l.Spec.Address)
}

// CloseUnclaimed closes every inherited socket that no Open took and returns
// their specs. Their paths (for unix sockets) are left alone: until the
// handoff is acked the previous process still serves on them.
func (s *Set) CloseUnclaimed() []Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Spec
	for _, sl := range s.inherited {
		if sl.claimed {
			continue
		}
		sl.claimed = true
		sl.File.Close()
		out = append(out, sl.Spec)
		s.log.WithField("listener", sl.Spec.String()).Info("closed inherited listener that the config no longer has")
	}
	return out
}

// CloseAll stops accepting on every listener and closes unclaimed inherited
// sockets. No unix path is removed.
func (s *Set) CloseAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, l := range s.open {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("listener: close %s: %w", l.Spec, err))
		}
	}
	for _, sl := range s.inherited {
		if !sl.claimed {
			sl.claimed = true
			sl.File.Close()
		}
	}
	return errors.Join(errs...)
}

// RemoveUnixPaths removes the socket file of every unix listener whose path
// still names the socket this set opened or adopted. Call it only when the
// proxy stops for good with no successor; a path re-bound by someone else
// is left alone.
func (s *Set) RemoveUnixPaths() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, l := range s.open {
		if l.Spec.Network != "unix" || l.path == (ident.PathID{}) {
			continue
		}
		now, ok := ident.StatPath(l.Spec.Address)
		if !ok {
			continue
		}
		if now != l.path {
			s.log.WithField("listener", l.Spec.String()).Info("unix path re-bound by someone else, left in place")
			continue
		}
		if err := os.Remove(l.Spec.Address); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("listener: remove %s: %w", l.Spec.Address, err))
		}
	}
	return errors.Join(errs...)
}
