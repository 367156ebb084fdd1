package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/server/proxy"
	"github.com/mosnlite/mosnlite/server/tlsconf"
	"github.com/mosnlite/mosnlite/service"
)

// part is one listening socket and what serves it: a proxy (kind server) or
// an HTTP service (kind service).
type part struct {
	spec  listener.Spec
	proxy proxy.Proxy
	svc   *service.Server

	ln      *listener.Listener
	view    *acceptView // what the accept loop accepts on
	serving bool
	stopped chan struct{} // closed when the accept loop has returned
	// noMigration: the listener's connections drain on upgrade instead of
	// moving to the successor (disable_migration, or TLS).
	noMigration bool
	// tls is the listener's TLS, nil for a plain one.
	tls *tlsconf.Server
}

func (p *part) String() string { return p.spec.String() }

// acceptLoopStopTimeout bounds the wait for an accept loop to return after
// its listener paused; it returns at once in practice.
const acceptLoopStopTimeout = 5 * time.Second

// acceptView is a part's view of its listener. Closing it — as the proxy or
// service server does when it stops — pauses the socket instead of closing
// it: the socket outlives the part (the successor accepts on it too, and
// after a revert a new plane serves it again). Once another part took the
// listener over, the view is detached and closing it does nothing.
type acceptView struct {
	*listener.Listener
	once     sync.Once
	detached atomic.Bool
}

func (v *acceptView) Close() error {
	var err error
	v.once.Do(func() {
		if !v.detached.Load() {
			err = v.Listener.Pause()
		}
	})
	return err
}

// serve starts accepting on the part's listener in a goroutine. An accept
// loop that ends for any other reason than stopAccepting is logged.
func (p *part) serve(log *logrus.Entry) {
	p.stopped = make(chan struct{})
	p.serving = true
	p.view = &acceptView{Listener: p.ln}
	ln := net.Listener(p.view)
	stopped := p.stopped
	go func() {
		var err error
		if p.proxy != nil {
			err = p.proxy.Serve(ln)
		} else {
			err = p.svc.Serve(ln)
		}
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		if err != nil {
			log.WithError(err).WithField("listener", p.spec.String()).Error("accept loop ended: this listener no longer accepts")
		}
		close(stopped)
	}()
}

// stopAccepting stops this part's accept loop — the socket stays open,
// paused, until the lifecycle closes it — and waits for the loop to return,
// so that every connection it accepted is tracked before anyone waits for
// the part's connections to end.
func (p *part) stopAccepting() error {
	if p.ln == nil || !p.serving {
		return nil
	}
	if err := p.view.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("server: stop accepting on %s: %w", p.spec, err)
	}
	t := time.NewTimer(acceptLoopStopTimeout)
	defer t.Stop()
	select {
	case <-p.stopped:
		return nil
	case <-t.C:
		return fmt.Errorf("server: stop accepting on %s: accept loop still running after %s", p.spec, acceptLoopStopTimeout)
	}
}

// takeOver makes p serve old's listener: old's view is detached, so that
// old, stopping later, leaves the socket alone.
func (p *part) takeOver(old *part) error {
	p.ln = old.ln
	if old.view != nil {
		old.view.detached.Store(true)
	}
	return p.ln.Resume()
}

// rebind makes p serve a fresh socket at the address of old's, which was
// closed.
func (p *part) rebind(s *Server, old *part) error {
	s.mu.Lock()
	set := s.listeners
	s.mu.Unlock()
	spec := old.ln.Spec
	spec.Name, spec.Kind = p.spec.Name, p.spec.Kind
	ln, err := set.Open(spec)
	if err != nil {
		return fmt.Errorf("server: bind %s again: %w", spec, err)
	}
	p.ln = ln
	return nil
}

// drain asks the part's connections to finish.
func (p *part) drain() {
	if p.proxy != nil {
		p.proxy.Drain()
	}
}

// wait returns once the part has no connection left, or ctx ends.
func (p *part) wait(ctx context.Context) error {
	if p.proxy != nil {
		return p.proxy.Wait(ctx)
	}
	return p.svc.Shutdown(ctx)
}

// closeAll cuts whatever the part still holds.
func (p *part) closeAll() {
	if p.proxy != nil {
		p.proxy.CloseAll()
		return
	}
	_ = p.svc.Close()
}

// active counts the part's open connections (proxies only).
func (p *part) active() int {
	if p.proxy != nil {
		return p.proxy.Active()
	}
	return 0
}
