package server

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/server/proxy"
	"github.com/mosnlite/mosnlite/service"
)

// part is one listening socket and what serves it: a proxy (kind server) or
// an HTTP service (kind service).
type part struct {
	spec  listener.Spec
	proxy proxy.Proxy
	svc   *service.Server

	ln      *listener.Listener
	served  chan error // receives Serve's result once
	serving bool
	// noMigration: the listener's connections drain on upgrade instead of
	// moving to the successor (disable_migration).
	noMigration bool
}

func (p *part) String() string { return p.spec.String() }

// serve starts accepting on the part's listener in a goroutine.
func (p *part) serve() {
	p.served = make(chan error, 1)
	p.serving = true
	ln := net.Listener(p.ln)
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
		p.served <- err
	}()
}

// stopAccepting closes this process's copy of the listening socket. The
// socket itself lives on where a successor holds it.
func (p *part) stopAccepting() error {
	if p.ln == nil {
		return nil
	}
	if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("server: stop accepting on %s: %w", p.spec, err)
	}
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
