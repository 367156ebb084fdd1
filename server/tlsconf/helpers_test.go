package tlsconf

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/tlsconf/tlstest"
	"github.com/mosnlite/mosnlite/service/stats"
)

type obj = map[string]any

// parseConfig parses a config with one HTTP listener whose filter chain
// gets chain's members (tls_context or tls_context_set), and one cluster
// "c" with cluster's members; it fails the test on any problem.
func parseConfig(t *testing.T, listener obj, chain obj, cluster obj) *config.Config {
	t.Helper()
	return parseConfigProxy(t, listener, chain, cluster, obj{})
}

// parseConfigProxy is parseConfig with proxy's members in the HTTP proxy
// filter's config (downstream_protocol).
func parseConfigProxy(t *testing.T, listener, chain, cluster, proxy obj) *config.Config {
	t.Helper()
	pc := obj{"router_config_name": "r"}
	for k, v := range proxy {
		pc[k] = v
	}
	fc := obj{"filters": []obj{{"type": "proxy", "config": pc}}}
	for k, v := range chain {
		fc[k] = v
	}
	l := obj{"name": "web", "address": "127.0.0.1:0", "filter_chains": []obj{fc}}
	for k, v := range listener {
		l[k] = v
	}
	cl := obj{"name": "c", "hosts": []obj{{"address": "127.0.0.1:1"}}}
	for k, v := range cluster {
		cl[k] = v
	}
	doc := obj{
		"servers": []obj{{"listeners": []obj{l}, "routers": []obj{{"router_config_name": "r",
			"virtual_hosts": []obj{{"name": "v", "domains": []string{"*"},
				"routers": []obj{{"match": obj{"prefix": "/"}, "route": obj{"cluster_name": "c"}}}}}}}}},
		"cluster_manager": obj{"clusters": []obj{cl}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(b)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func listenerOf(c *config.Config) *config.Listener { return &c.Servers[0].Listeners[0] }

// leafContext is a tls_context presenting leaf, with extra members.
func leafContext(t *testing.T, dir, name string, leaf *tlstest.Leaf, extra obj) obj {
	t.Helper()
	cert, key := leaf.Write(t, dir, name)
	ctx := obj{"status": true, "cert_chain": cert, "private_key": key}
	for k, v := range extra {
		ctx[k] = v
	}
	return ctx
}

// tlsServer serves s's handshakes on a loopback listener and records what
// each ended in.
type tlsServer struct {
	s    *Server
	ln   net.Listener
	mu   sync.Mutex
	errs []error
	done chan result
	wg   sync.WaitGroup
}

type result struct {
	conn  net.Conn
	proto string
	err   error
}

func serveTLS(t *testing.T, s *Server) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &tlsServer{s: s, ln: ln, done: make(chan result, 64)}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				c, proto, err := s.Handshake(nc)
				if err == nil {
					// Answer one line so that a TLS 1.3 client sees the
					// server's verdict on its certificate.
					go func() {
						buf := make([]byte, 64)
						n, _ := c.Read(buf)
						c.Write(buf[:n])
						c.Close()
					}()
				}
				ts.done <- result{c, proto, err}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ts.wg.Wait()
	})
	return ts
}

func (ts *tlsServer) addr() string { return ts.ln.Addr().String() }

// next returns how the next handshake the server ran ended.
func (ts *tlsServer) next(t *testing.T) result {
	t.Helper()
	select {
	case r := <-ts.done:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no handshake ended within 20s")
		return result{}
	}
}

// reasonOf is the reason of a server-side handshake error.
func reasonOf(err error) string {
	var he *HandshakeError
	if errors.As(err, &he) {
		return he.Reason
	}
	return ""
}

// dialTLS connects as a client with cfg, and exchanges one line when the
// handshake succeeds: the error is the handshake's or the exchange's.
func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		c.Close()
		return nil, err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

// counter reads a counter series of reg.
func counter(reg *stats.Registry, name string, labels ...string) float64 {
	for _, s := range reg.Snapshot() {
		if s.Name != name || len(s.Labels) != len(labels) {
			continue
		}
		if strings.Join(s.Labels, "\x00") == strings.Join(labels, "\x00") {
			return s.Value
		}
	}
	return -1
}
