package tlsconf

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service"
	"github.com/mosnlite/mosnlite/service/stats"
)

// ClientOptions are what a cluster's TLS takes besides its config.
type ClientOptions struct {
	Registry *stats.Registry
	Now      func() time.Time // the clock of the certificate expiry series; nil is time.Now
}

// sessionCacheSize is how many upstream sessions a cluster keeps to resume.
const sessionCacheSize = 256

// Client is one cluster's TLS to its hosts.
type Client struct {
	cluster    string
	serverName string // server_name; "" means each host's own name
	mat        *config.TLSMaterial
	base       *tls.Config
	m          *stats.TLSMetrics

	mu      sync.Mutex
	configs map[string]*tls.Config // by server name
}

// NewClient builds cluster c's TLS; nil (and no error) for a cluster
// without one. Its context must have been loaded by config.Parse.
func NewClient(c *config.Cluster, o ClientOptions) (*Client, error) {
	t := c.TLS
	if t == nil {
		return nil, nil
	}
	m := t.Loaded
	if m == nil {
		return nil, fmt.Errorf("tls: cluster %s: TLS context not loaded (a config not read by config.Parse?)", c.Name)
	}
	if o.Registry == nil {
		o.Registry = stats.New()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cl := &Client{
		cluster: c.Name, serverName: t.ServerName, mat: m, configs: map[string]*tls.Config{},
		m: stats.NewTLSClusterMetrics(o.Registry, c.Name),
		base: &tls.Config{
			RootCAs:            pool(m.CAs),
			MinVersion:         m.MinVersion,
			MaxVersion:         m.MaxVersion,
			CipherSuites:       m.CipherSuites,
			CurvePreferences:   m.Curves,
			NextProtos:         m.ALPN,
			InsecureSkipVerify: t.InsecureSkip,
			ClientSessionCache: tls.NewLRUClientSessionCache(sessionCacheSize),
		},
	}
	if m.Certificate != nil {
		cl.base.Certificates = []tls.Certificate{*m.Certificate}
	}
	registerExpiry(o.Registry, "cluster", c.Name, m, o.Now)
	return cl, nil
}

// config returns the client config for a host whose address is address.
func (c *Client) config(address string) *tls.Config {
	name := c.serverName
	if name == "" {
		name = hostName(address)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg, ok := c.configs[name]
	if !ok {
		cfg = c.base.Clone()
		cfg.ServerName = name
		c.configs[name] = cfg
	}
	return cfg
}

// hostName is the name (or IP) of an "host:port" address, what a client
// sends as SNI and verifies the certificate against when server_name is
// not set (as curl does for a URL).
func hostName(address string) string {
	if h, _, err := net.SplitHostPort(address); err == nil {
		return strings.Trim(h, "[]")
	}
	return address
}

// Handshake runs the client handshake on nc, a new connection to the host
// at address, until ctx ends. On failure nc is closed and the error is a
// *HandshakeError.
func (c *Client) Handshake(ctx context.Context, nc net.Conn, address string) (net.Conn, error) {
	tc := tls.Client(nc, c.config(address))
	if err := tc.HandshakeContext(ctx); err != nil {
		reason := Reason(err, true)
		c.m.Failure(reason)
		_ = nc.Close()
		return nil, &HandshakeError{Reason: reason, Err: err}
	}
	c.m.Handshake(tc.ConnectionState().DidResume)
	return tc, nil
}

// Certificates describes the cluster's certificates for admin /certs.
func (c *Client) Certificates() []service.CertificateSet {
	return []service.CertificateSet{certificateSet(c.mat, c.serverName, func(cs *service.CertificateSet) { cs.Cluster = c.cluster })}
}
